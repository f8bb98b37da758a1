"""``calibrate`` command line. Each subcommand lives in its own module exposing
``register(subparsers)``; add new ones to ``_COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys

from solver.errors import InputError

_COMMANDS = [
    "calibrate.cmd_init",
    "calibrate.cmd_import_nccl",
    "calibrate.cmd_fit",
    "calibrate.cmd_predict",
    "calibrate.cmd_report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calibrate",
        description="Measure GPUs and interconnects, fit the constants, and write profiles/<gpu>.json "
                    "(the file `solver` reads). Measuring needs torch (pip install '.[calibrate]').")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in _COMMANDS:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"calibrate: error: {e.line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
