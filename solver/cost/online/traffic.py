"""Online traffic: who sends requests, how fast, and how long they are.

Two load shapes, as ``vllm bench serve`` drives a server:
- ``concurrency`` C: a closed loop; C clients each send the next request when the last one
  finished (``--max-concurrency C --request-rate inf``);
- ``rate_per_s`` lambda: an open loop of Poisson arrivals (``--request-rate lambda``,
  burstiness 1).
Lengths are fixed (``prompt_len``/``output_len``) or drawn from a histogram of
(prompt_len, output_len, weight) rows.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from solver.errors import InputError
from solver.inputs.fields import read_text


@dataclass(frozen=True)
class Traffic:
    prompt_len: int = 1024
    output_len: int = 128
    concurrency: int | None = None
    rate_per_s: float | None = None
    histogram: tuple[tuple[int, int, float], ...] = ()  # (prompt, output, weight); empty: fixed lengths

    def __post_init__(self):
        if (self.concurrency is None) == (self.rate_per_s is None):
            raise InputError("", "--concurrency/--request-rate", "give exactly one of them")
        if self.concurrency is not None and (isinstance(self.concurrency, bool) or self.concurrency < 1):
            raise InputError("", "--concurrency", f"must be an integer >= 1, got {self.concurrency!r}")
        if self.rate_per_s is not None and not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise InputError("", "--request-rate", f"must be a finite number > 0 requests/s, got {self.rate_per_s!r}")
        if self.prompt_len < 1:
            raise InputError("", "--prompt-len", f"must be >= 1, got {self.prompt_len}")
        if self.output_len < 1:
            raise InputError("", "--output-len", f"must be >= 1 for online serving, got {self.output_len}")

    @property
    def closed_loop(self) -> bool:
        return self.concurrency is not None

    def mean_lengths(self) -> tuple[float, float]:
        """(mean prompt, mean output) tokens: the histogram's weighted means, else the fixed lengths."""
        if not self.histogram:
            return float(self.prompt_len), float(self.output_len)
        w = sum(r[2] for r in self.histogram)
        return (sum(p * x for p, _, x in self.histogram) / w, sum(o * x for _, o, x in self.histogram) / w)

    def max_context(self) -> int:
        if not self.histogram:
            return self.prompt_len + self.output_len
        return max(p + o for p, o, _ in self.histogram)

    def with_rate(self, rate_per_s: float) -> "Traffic":
        return Traffic(self.prompt_len, self.output_len, None, rate_per_s, self.histogram)


def read_histogram(path: str) -> tuple[tuple[int, int, float], ...]:
    """CSV with columns prompt_len, output_len and weight (or count): one row per length pair."""
    text = read_text(path, newline="")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    wcol = "weight" if "weight" in header else "count"
    for col in ("prompt_len", "output_len", wcol):
        if col not in header:
            raise InputError(path, "header", f"missing column {col} (need prompt_len, output_len, weight or count)")
    rows = []
    for i, r in enumerate(reader, 1):
        try:
            p, o, w = int(r["prompt_len"]), int(r["output_len"]), float(r[wcol])
        except (TypeError, ValueError):
            raise InputError(path, f"row {i}", "prompt_len and output_len must be integers, weight a number") from None
        if p < 1 or o < 1 or not (math.isfinite(w) and w >= 0):
            raise InputError(path, f"row {i}", f"need prompt_len >= 1, output_len >= 1, weight >= 0; got {p}, {o}, {w:g}")
        rows.append((p, o, w))
    if not rows or sum(r[2] for r in rows) <= 0:
        raise InputError(path, "", "no rows with a positive weight")
    return tuple(rows)
