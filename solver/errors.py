"""One error type for every bad input, printed as one line and exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: names the file, the field and the reason.

    ``str(err)`` is the single line the CLI prints, e.g.
    ``cluster.yaml: node_groups[0].count: must be an integer >= 1, got 0``.
    """

    def __init__(self, where: str, field: str, reason: str):
        self.where = where
        self.field = field
        self.reason = reason
        super().__init__(self.line())

    def line(self) -> str:
        parts = [p for p in (self.where, self.field) if p]
        return one_line(": ".join(parts + [self.reason]))


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\r``, ``\\x1b``):
    a value echoed from bad input can never split the one-line error.

    >>> one_line("size '0\\r0'")
    "size '0\\\\r0'"
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class InfeasibleError(Exception):
    """A well-formed request that no plan can satisfy; the message says why in one line."""
