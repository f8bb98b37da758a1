"""The subcommand dispatcher shared by the ``solver`` and ``calibrate`` programs: each
subcommand module exposes ``register(subparsers)`` and sets ``func``; errors about the
user's input become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from solver.errors import InfeasibleError, InputError, one_line


class OneLineParser(argparse.ArgumentParser):
    """A bad flag (``type=`` helper refusal, unknown choice, missing option) is an
    InputError -- one line, exit 2 -- like any other bad input; no usage dump."""

    def error(self, message: str):
        raise InputError("", "", message)


def build_parser(prog: str, description: str, modules: list[str]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in modules:
        importlib.import_module(mod).register(sub)
    return parser


def dispatch(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except (InputError, InfeasibleError) as e:
        msg = e.line() if isinstance(e, InputError) else one_line(str(e))
        print(f"{parser.prog}: error: {msg}", file=sys.stderr)
        return 2
