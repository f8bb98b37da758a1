"""``solver`` command line. Each subcommand lives in its own module exposing
``register(subparsers)``; add new ones to ``_COMMANDS``."""

from __future__ import annotations

import sys

from solver.clikit import build_parser as build_parser_for
from solver.clikit import dispatch

_COMMANDS = [
    "solver.cmd_estimate",
    "solver.cmd_plan",
    "solver.cmd_validate",
]


def build_parser():
    return build_parser_for(
        "solver", "Plan LLM inference placement on GPU clusters from calibrated profiles. "
                  "Units: memory GiB, time ms/s, bandwidth GB/s per direction, throughput tokens/s.",
        _COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
