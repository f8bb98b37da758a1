"""Measured online serving runs for ``solver validate``: one CSV row per `vllm bench serve` run.

Required columns: ``model, gpu, tp, input_len, output_len`` and the load -- ``concurrency``
(closed loop, ``--max-concurrency`` with an unlimited rate) or ``request_rate`` (Poisson,
requests/s); a row with both is an open loop capped at ``concurrency`` in flight.
Measured values: any of ``METRICS`` (ms, or tokens/s for ``output_tok_s``); blank cells are
not compared. Optional settings: ``pp`` (1), ``dtype`` (fp16), ``kv_dtype`` (the activation
dtype), ``gpu_memory_utilization``, ``max_num_seqs``, ``max_num_batched_tokens``,
``num_prompts`` (requests simulated; default 20 x concurrency), ``kv_cache_tokens`` (the KV
capacity vLLM logged at start-up, "GPU KV cache size: N tokens": used instead of the memory
model, so the row tests the latency model alone), ``split`` (``fit`` or
``held-out``: which rows any fit may use). Other columns (``source``, ``note``) are kept.
A file is an online file when its header has ``concurrency`` or ``request_rate``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from solver.errors import InputError
from solver.inputs.fields import read_text
from solver.inputs.validation_csv import _Row, where_row
from solver.inputs.workload import KV_DTYPES, WEIGHT_DTYPES

REQUIRED = ("model", "gpu", "tp", "input_len", "output_len")
LOAD_COLUMNS = ("concurrency", "request_rate")
# metric column -> (simulation array, percentile or "mean"); output_tok_s is a rate
METRICS = {f"{m}_{q}_ms": (m, q) for m in ("ttft", "itl", "tpot") for q in ("p50", "p90", "p95", "p99", "mean")}
METRICS["output_tok_s"] = ("output_tok_s", None)
SPLITS = ("fit", "held-out")


@dataclass(frozen=True)
class OnlineRow:
    row: int
    line: int
    model: str
    gpu: str
    tp: int
    pp: int
    input_len: int
    output_len: int
    concurrency: int | None
    request_rate: float | None
    measured: dict                 # metric column -> value
    dtype: str = "fp16"
    kv_dtype: str = ""
    gpu_memory_utilization: float | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    num_prompts: int | None = None
    kv_cache_tokens: int | None = None
    split: str = "held-out"
    columns: dict = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return self.columns.get("id") or f"row {self.row}"


def is_online_csv(path: str | Path) -> bool:
    """Whether the CSV's header names a load column (an online file)."""
    first = read_text(path, newline="").splitlines()[:1]
    header = {h.strip() for h in next(csv.reader(first), [])} if first else set()
    return bool(header & set(LOAD_COLUMNS))


def _parse(path: str, index: int, line: int, data: dict) -> OnlineRow:
    r = _Row(path, index, line, data)
    conc = r.number("concurrency", int, 1, blank_ok=True) if "concurrency" in data else None
    rate = r.number("request_rate", float, 1e-9, blank_ok=True) if "request_rate" in data else None
    if conc is None and rate is None:
        raise r.error("concurrency", "give a concurrency or a request_rate")
    measured = {c: r.number(c, float, 1e-9, blank_ok=True) for c in METRICS if c in data}
    measured = {c: v for c, v in measured.items() if v is not None}
    if not measured:
        raise r.error("output_tok_s", f"no measured value: fill at least one of {', '.join(METRICS)}")
    split = (r.text("split", required=False) or "held-out").lower()
    if split not in SPLITS:
        raise r.error("split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
    dtype = (r.text("dtype", required=False) or "fp16").lower()
    if dtype not in WEIGHT_DTYPES:
        raise r.error("dtype", f"must be one of {', '.join(WEIGHT_DTYPES)}, got {dtype!r}")
    kv = (r.text("kv_dtype", required=False) or "").lower()
    if kv and kv not in KV_DTYPES:
        raise r.error("kv_dtype", f"must be one of {', '.join(KV_DTYPES)}, got {kv!r}")
    util = r.number("gpu_memory_utilization", float, 1e-3, blank_ok=True)
    if util is not None and util > 1:
        raise r.error("gpu_memory_utilization", f"must be <= 1, got {util:g}")
    return OnlineRow(
        row=index, line=line, model=r.text("model"), gpu=r.text("gpu"), tp=r.number("tp", int, 1),
        pp=r.number("pp", int, 1, blank_ok=True) or 1, input_len=r.number("input_len", int, 1),
        output_len=r.number("output_len", int, 1), concurrency=conc, request_rate=rate, measured=measured,
        dtype=dtype, kv_dtype=kv, gpu_memory_utilization=util,
        max_num_seqs=r.number("max_num_seqs", int, 1, blank_ok=True),
        max_num_batched_tokens=r.number("max_num_batched_tokens", int, 1, blank_ok=True),
        num_prompts=r.number("num_prompts", int, 1, blank_ok=True),
        kv_cache_tokens=r.number("kv_cache_tokens", int, 16, blank_ok=True), split=split,
        columns={k: (v or "").strip() for k, v in data.items() if k is not None})


def read_online(path: str | Path) -> list[OnlineRow]:
    """All rows of an online measurements CSV; InputError on the first bad cell."""
    p = str(path)
    reader = csv.DictReader(io.StringIO(read_text(path, newline="")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(p, "header", f"missing column(s): {', '.join(missing)}")
    if not set(header) & set(LOAD_COLUMNS):
        raise InputError(p, "header", "needs a concurrency or a request_rate column")
    reader.fieldnames = header
    rows = []
    for data in reader:
        if not any((v or "").strip() for v in data.values() if isinstance(v, str)):
            continue
        if None in data:
            raise InputError(p, where_row(len(rows) + 1, reader.line_num),
                             f"{len(header) + len(data[None])} cells, header has {len(header)}")
        rows.append(_parse(p, len(rows) + 1, reader.line_num, data))
    if not rows:
        raise InputError(p, "", "no data rows")
    return rows
