"""``calibrate`` command line. Each subcommand lives in its own module exposing
``register(subparsers)``; add new ones to ``_COMMANDS``."""

from __future__ import annotations

import sys

from solver.clikit import build_parser as build_parser_for
from solver.clikit import dispatch

_COMMANDS = [
    "calibrate.cli.init",
    "calibrate.cli.memory",
    "calibrate.cli.import_nccl",
    "calibrate.cli.fit",
    "calibrate.cli.predict",
    "calibrate.cli.report",
    "calibrate.cli.fit_serving",
    "calibrate.cli.vllm_log",
    "calibrate.cli.import_aiconfigurator",
    "calibrate.cli.fit_step_overhead",
    "calibrate.cli.fit_ops",
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
