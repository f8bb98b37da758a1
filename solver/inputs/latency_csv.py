"""Measured engine latencies (``data/step_times/*.csv``): one row per run of a fixed batch.

Columns: ``id, split, gpu, model, tp, pp, runtime, dtype, batch, input_len, output_len,
latency_s, source, note``. ``latency_s`` is the time to generate ``output_len`` tokens for
``batch`` prompts of ``input_len`` tokens at once (vLLM ``benchmark_latency.py``): one prefill
then ``output_len - 1`` decode steps. ``split`` is ``fit`` (a fit may use the row) or
``held-out`` (never fitted on). Every problem is one InputError naming file, row and column.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from solver.errors import InputError
from solver.inputs.fields import read_text
from solver.inputs.validation_csv import _Row

COLUMNS = ("id", "split", "gpu", "model", "tp", "pp", "runtime", "dtype", "batch", "input_len", "output_len",
           "latency_s", "source")
SPLITS = ("fit", "held-out")


@dataclass(frozen=True)
class LatencyRow:
    id: str
    split: str
    gpu: str
    model: str
    tp: int
    pp: int
    runtime: str
    dtype: str
    batch: int
    input_len: int
    output_len: int
    latency_s: float
    source: str


def read_latency_rows(path: str) -> list[LatencyRow]:
    reader = csv.DictReader(io.StringIO(read_text(path, newline="")))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(path, missing[0], "required column is missing")
    out = []
    for i, data in enumerate(reader, start=1):
        r = _Row(path, i, reader.line_num, data)
        split = r.text("split")
        if split not in SPLITS:
            raise r.error("split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
        out.append(LatencyRow(r.text("id", False), split, r.text("gpu"), r.text("model"), r.number("tp", int, 1),
                              r.number("pp", int, 1), r.text("runtime", False), r.text("dtype", False) or "bf16",
                              r.number("batch", int, 1), r.number("input_len", int, 1),
                              r.number("output_len", int, 1), r.number("latency_s", float, 1e-9),
                              r.text("source", False)))
    return out
