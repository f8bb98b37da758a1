"""Out-of-range notices from the cost model.

The cost functions stay pure: they report "this number is extrapolated / uncalibrated"
through Python's ``warnings`` with one category, which the CLI collects, deduplicates and
prints (or, with ``--strict``, turns into an error).
"""

from __future__ import annotations

import warnings


class CalibrationWarning(UserWarning):
    """A prediction outside what the profile measured, or from an uncalibrated default."""


def note(message: str) -> None:
    warnings.warn(message, CalibrationWarning, stacklevel=3)
