"""Measured deployments for ``solver validate``: one CSV row per run of a serving engine.

Required columns (any order; other columns are kept as text for selections, e.g. ``source``):
``model, gpu, nodes, gpus_used_per_node, interconnect, nic_gbps, tp, pp, input_len,
output_len, num_requests, measured_tok_s``. Optional: ``dtype`` (default fp16),
``gpu_memory_utilization``, ``max_num_seqs``. ``nic_gbps`` is GB/s per direction (a NIC sold
as 400 Gb/s is 50). Blank ``num_requests`` (the offline batch) and blank ``nic_gbps`` are
allowed: the caller supplies an assumed value and the row says so. ``gpus_used_per_node`` is
tp x pp / nodes (an average when stages do not divide evenly over the nodes).

Every problem is one :class:`InputError` line: file, row (1 = first data row) with its
line in the file, column, reason.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from solver.errors import InputError
from solver.inputs.fields import read_text
from solver.inputs.workload import WEIGHT_DTYPES

REQUIRED = ("model", "gpu", "nodes", "gpus_used_per_node", "interconnect", "nic_gbps", "tp", "pp",
            "input_len", "output_len", "num_requests", "measured_tok_s")
INTERCONNECTS = ("pcie", "nvlink")


@dataclass(frozen=True)
class MeasuredRow:
    row: int                 # 1-based data row
    line: int                # its line in the file
    model: str
    gpu: str
    nodes: int
    gpus_used_per_node: int
    interconnect: str
    nic_gbps: float | None   # None: blank
    tp: int
    pp: int
    input_len: int
    output_len: int
    num_requests: int | None  # None: blank
    measured_tok_s: float
    dtype: str = "fp16"
    gpu_memory_utilization: float | None = None
    max_num_seqs: int | None = None
    columns: dict = field(default_factory=dict, repr=False)  # every column as read


class _Row:
    """Typed access to one CSV row; errors name file, row and column."""

    def __init__(self, path: str, index: int, line: int, data: dict):
        self.path, self.index, self.line, self.data = path, index, line, data

    def error(self, column: str, reason: str) -> InputError:
        return InputError(self.path, f"{where_row(self.index, self.line)}, column {column}", reason)

    def text(self, column: str, required: bool = True) -> str:
        v = (self.data.get(column) or "").strip()
        if required and not v:
            raise self.error(column, "is blank")
        return v

    def number(self, column: str, kind: type, min_value: float, blank_ok: bool = False):
        v = self.text(column, required=not blank_ok)
        if not v:
            return None
        try:
            x = float(v)
        except ValueError:
            raise self.error(column, f"not a number: {v!r}") from None
        if not math.isfinite(x):
            raise self.error(column, f"must be a finite number, got {v!r}")
        if kind is int:
            if not x.is_integer():
                raise self.error(column, f"must be a whole number, got {v!r}")
            x = int(x)
        if not x >= min_value:
            raise self.error(column, f"must be >= {min_value:g}, got {v!r}")
        return x


def where_row(index: int, line: int) -> str:
    return f"row {index} (line {line})"


def _parse_row(path: str, index: int, line: int, data: dict) -> MeasuredRow:
    r = _Row(path, index, line, data)
    m = MeasuredRow(
        row=index, line=line, model=r.text("model"), gpu=r.text("gpu"),
        nodes=r.number("nodes", int, 1), gpus_used_per_node=r.number("gpus_used_per_node", int, 1),
        interconnect=r.text("interconnect").lower(), nic_gbps=r.number("nic_gbps", float, 1e-9, blank_ok=True),
        tp=r.number("tp", int, 1), pp=r.number("pp", int, 1),
        input_len=r.number("input_len", int, 1), output_len=r.number("output_len", int, 0),
        num_requests=r.number("num_requests", int, 1, blank_ok=True),
        measured_tok_s=r.number("measured_tok_s", float, 1e-9),
        dtype=(r.text("dtype", required=False) or "fp16").lower(),
        gpu_memory_utilization=r.number("gpu_memory_utilization", float, 1e-3, blank_ok=True),
        max_num_seqs=r.number("max_num_seqs", int, 1, blank_ok=True),
        columns={k: (v or "").strip() for k, v in data.items() if k is not None},
    )
    if m.interconnect not in INTERCONNECTS:
        raise r.error("interconnect", f"must be one of {', '.join(INTERCONNECTS)}, got {m.interconnect!r}")
    if m.dtype not in WEIGHT_DTYPES:
        raise r.error("dtype", f"must be one of {', '.join(WEIGHT_DTYPES)}, got {m.dtype!r}")
    if m.gpu_memory_utilization is not None and m.gpu_memory_utilization > 1:
        raise r.error("gpu_memory_utilization", f"must be <= 1, got {m.gpu_memory_utilization:g}")
    if m.pp < m.nodes:
        raise r.error("pp", f"{m.nodes} nodes need at least one pipeline stage each, got pp {m.pp}")
    if m.tp * m.pp != m.nodes * m.gpus_used_per_node:
        raise r.error("pp", f"tp x pp = {m.tp * m.pp} GPUs but nodes x gpus_used_per_node = "
                            f"{m.nodes * m.gpus_used_per_node}")
    return m


def read_measurements(path: str | Path) -> list[MeasuredRow]:
    """All rows of a measurements CSV; raises InputError on the first bad cell."""
    try:
        return _read_measurements(str(path), read_text(path, newline=""))
    except csv.Error as e:  # e.g. a bare carriage return inside a field
        raise InputError(str(path), "", f"not a readable CSV ({e})") from None


def _read_measurements(p: str, text: str) -> list[MeasuredRow]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(p, "header", f"missing column(s): {', '.join(missing)}")
    reader.fieldnames = header
    rows = []
    for data in reader:  # DictReader skips empty lines; line_num is the file line just read
        if not any((v or "").strip() for v in data.values() if isinstance(v, str)):
            continue  # a line of empty cells
        where = where_row(len(rows) + 1, reader.line_num)
        if None in data:
            raise InputError(p, where, f"{len(header) + len(data[None])} cells, header has {len(header)}")
        rows.append(_parse_row(p, len(rows) + 1, reader.line_num, data))
    if not rows:
        raise InputError(p, "", "no data rows")
    return rows


def matches(row: MeasuredRow, selection: str) -> bool:
    """``selection`` is ``col=value`` terms joined by ``,`` (all must hold); ``col>value``
    and ``col<value`` compare numbers. Empty selects every row."""
    for term in filter(None, (t.strip() for t in selection.split(","))):
        for op in ("=", ">", "<"):
            if op in term:
                col, want = (s.strip() for s in term.split(op, 1))
                break
        else:
            raise InputError("selection", term, "use col=value, col>value or col<value")
        have = row.columns.get(col)
        if have is None:
            raise InputError("selection", term, f"no column {col!r} in the CSV")
        if op == "=" and have != want:
            return False
        if op != "=":
            try:
                a, b = float(have), float(want)
            except ValueError:
                return False
            if (op == ">" and not a > b) or (op == "<" and not a < b):
                return False
    return True
