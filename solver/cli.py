"""``solver`` command line. Each subcommand lives in its own module exposing
``register(subparsers)``; add new ones to ``_COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys

from solver.errors import InfeasibleError, InputError

_COMMANDS = [
    "solver.cmd_estimate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="solver",
        description="Plan LLM inference placement on GPU clusters from calibrated profiles. "
                    "Units: memory GiB, time ms/s, bandwidth GB/s per direction, throughput tokens/s.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in _COMMANDS:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, InfeasibleError) as e:
        msg = e.line() if isinstance(e, InputError) else str(e)
        print(f"solver: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
