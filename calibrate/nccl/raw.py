"""Raw collective measurements: one CSV schema for torch sweeps and imported nccl-tests logs.

A raw file keeps every point with its provenance on each row, so a profile can be refitted
without hardware (design.md section 6) and files can be concatenated. Columns (units in
names, nccl-tests conventions of design.md section 4):

- ``collective``, ``ranks``, ``nodes``, ``scope`` (intra_node | inter_node)
- ``size_bytes``: the buffer size S nccl-tests prints (all_gather: the gathered output;
  reduce_scatter: the full input; all_reduce / broadcast / send_recv: the buffer)
- ``time_us``: the timing statistic named in ``stat``: ``median_max_ranks`` (our sweep: the
  median over iterations, max over ranks) or ``nccl_tests_mean`` (nccl-tests: mean over
  iterations, averaged over ranks), out-of-place
- ``time_min_us``, ``time_max_us``: spread over iterations (sweep) or empty (logs);
  ``time_inplace_us``: nccl-tests' in-place column where present
- ``algbw_gbps``, ``busbw_gbps``: recomputed from size and time (GB/s = 1e9 B/s)
- ``dtype``, ``iters``, ``warmup``, ``backend`` (nccl | gloo | nccl-tests), ``source``
  (measured | published | synthetic), ``ref``, ``gpu``, ``hosts``, ``driver``, ``cuda``,
  ``nccl``, ``torch``, ``runtime``
- ``flag``: empty, or why the point is kept out of every fit (an anomaly flagged by
  calibrate/nccl/outliers.py, or a reason written by hand); the point stays in the file
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from calibrate.profile_io import atomic_write_text
from solver.cost.collectives import algbw_gbps, busbw_gbps
from solver.errors import InputError
from solver.inputs.fields import read_text
from solver.inputs.profile import COLLECTIVES, SCOPES, SOURCES

STATS = ("median_max_ranks", "nccl_tests_mean")


@dataclass
class RawPoint:
    collective: str
    ranks: int
    nodes: int
    scope: str
    size_bytes: int
    time_us: float
    stat: str = "median_max_ranks"
    time_min_us: float | None = None
    time_max_us: float | None = None
    time_inplace_us: float | None = None
    algbw_gbps: float | None = None
    busbw_gbps: float | None = None
    dtype: str = ""
    iters: int | None = None
    warmup: int | None = None
    backend: str = ""
    source: str = "measured"
    ref: str = ""
    gpu: str = ""
    hosts: str = ""
    driver: str = ""
    cuda: str = ""
    nccl: str = ""
    torch: str = ""
    runtime: str = ""
    flag: str = ""  # why the point is left out of fits (calibrate/nccl/outliers.py or by hand); "" = used

    def __post_init__(self):
        if self.algbw_gbps is None and self.time_us > 0:
            self.algbw_gbps = algbw_gbps(self.size_bytes, self.time_us)
        if self.busbw_gbps is None and self.time_us > 0:
            self.busbw_gbps = busbw_gbps(self.collective, self.ranks, self.size_bytes, self.time_us)


COLUMNS = [f.name for f in fields(RawPoint)]
_INT = {"ranks", "nodes", "size_bytes", "iters", "warmup"}
_FLOAT = {"time_us", "time_min_us", "time_max_us", "time_inplace_us", "algbw_gbps", "busbw_gbps"}
_REQUIRED = ("collective", "ranks", "nodes", "scope", "size_bytes", "time_us")


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def to_csv_text(points: list[RawPoint]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for p in points:
        d = asdict(p)
        w.writerow([_fmt(d[c]) for c in COLUMNS])
    return buf.getvalue()


def write_raw(path: str | Path, points: list[RawPoint]) -> None:
    """Write ``points`` atomically (temp file + rename)."""
    atomic_write_text(path, to_csv_text(points))


def _parse_row(row: dict, where: str, line: int) -> RawPoint:
    kw = {}
    for c in COLUMNS:
        text = (row.get(c) or "").strip()
        if c in _REQUIRED and not text:
            raise InputError(where, f"line {line}: {c}", "required value is empty")
        if not text:
            continue
        try:
            if c in _INT:
                kw[c] = int(float(text))
            elif c in _FLOAT:
                kw[c] = float(text)
                if not math.isfinite(kw[c]):
                    raise ValueError
            else:
                kw[c] = text
        except (ValueError, OverflowError):
            raise InputError(where, f"line {line}: {c}", f"not a finite number: {text!r}") from None
    p = RawPoint(**kw)
    checks = (("collective", p.collective in COLLECTIVES, f"one of {', '.join(COLLECTIVES)}"),
              ("scope", p.scope in SCOPES, f"one of {', '.join(SCOPES)}"),
              ("source", p.source in SOURCES, f"one of {', '.join(SOURCES)}"),
              ("stat", p.stat in STATS, f"one of {', '.join(STATS)}"),
              ("ranks", p.ranks >= 2, "must be >= 2"),
              ("size_bytes", p.size_bytes >= 0, "must be >= 0"),
              ("time_us", p.time_us > 0, "must be > 0"))
    for name, ok, why in checks:
        if not ok:
            raise InputError(where, f"line {line}: {name}", f"{why}, got {getattr(p, name)!r}")
    return p


def read_raw(path: str | Path) -> list[RawPoint]:
    """Read a raw CSV; one-line :class:`InputError` naming file, line and column on bad input."""
    where = str(path)
    text = read_text(path, newline="")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(where, "header", f"missing column(s) {', '.join(missing)}; "
                                          f"expected the raw schema of calibrate/nccl/raw.py")
    try:
        points = [_parse_row(row, where, i) for i, row in enumerate(reader, start=2)]
    except csv.Error as e:
        raise InputError(where, "", f"not a readable CSV ({e})") from None
    if not points:
        raise InputError(where, "", "no data rows")
    return points


def group_key(p: RawPoint) -> tuple[str, int, str]:
    return (p.collective, p.ranks, p.scope)


def groups(points: list[RawPoint]) -> dict[tuple[str, int, str], list[RawPoint]]:
    """Points by (collective, ranks, scope), each list sorted by size."""
    out: dict[tuple[str, int, str], list[RawPoint]] = {}
    for p in points:
        out.setdefault(group_key(p), []).append(p)
    return {k: sorted(v, key=lambda p: p.size_bytes) for k, v in sorted(out.items())}
