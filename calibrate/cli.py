"""``calibrate`` command line. Each subcommand lives in its own module exposing
``register(subparsers)``; add new ones to ``_COMMANDS``."""

from __future__ import annotations

import sys

from solver.clikit import build_parser as build_parser_for
from solver.clikit import dispatch

_COMMANDS = [
    "calibrate.cmd_init",
    "calibrate.cmd_mem",
    "calibrate.cmd_import_nccl",
    "calibrate.cmd_fit",
    "calibrate.cmd_predict",
    "calibrate.cmd_report",
    "calibrate.cmd_fit_serving",
]


def build_parser():
    return build_parser_for(
        "calibrate", "Measure GPUs and interconnects, fit the constants, and write profiles/<gpu>.json "
                     "(the file `solver` reads). Measuring needs torch (pip install '.[calibrate]').",
        _COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
