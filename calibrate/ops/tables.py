"""Raw op measurements (``scripts/profile_ops.py`` CSV) -> a profile's op tables (schema 2).

Grids are the measured axes; a point the sweep skipped (tensors over its memory cap) is
filled by log-log extrapolation along the last axis within its row (``fill_row``), and the
table's ``note`` counts them. Elementwise bandwidth is the slope between the two largest
passes, its latency the smallest pass; launch costs go in the runtime's ``note``.
"""

from __future__ import annotations

import math
from collections import defaultdict


def fill_row(xs: list[float], row: dict, to_out=lambda v: v) -> tuple[list[float], int]:
    """Values at every x of ``xs`` from ``row`` (x -> value); a missing x extends the log-log
    line of its two nearest measured points below (above when none below). (values, filled)."""
    have = sorted(row)
    out, filled = [], 0
    for x in xs:
        if x in row:
            out.append(to_out(row[x]))
            continue
        lo = [h for h in have if h < x]
        a, b = (lo[-2], lo[-1]) if len(lo) >= 2 else (have[0], have[1])
        slope = math.log(row[b] / row[a]) / math.log(b / a)
        out.append(to_out(row[b] * (x / b) ** slope))
        filled += 1
    return out, filled


def _r(v: float) -> float:
    return float(f"{v:.4g}")


def _num(r: dict, k: str) -> float:
    return float(r[k])


def build_ops(rows: list[dict], source: str, ref: str, runtime: str) -> dict:
    """The ops.<runtime> JSON from raw rows (dicts of the CSV's text)."""
    src = {"source": source, "ref": ref}
    out: dict = {"runtime": runtime, **src}
    by_op = defaultdict(list)
    for r in rows:
        by_op[r["op"]].append(r)
    gemms = defaultdict(dict)
    for r in by_op["gemm"]:
        gemms[r["dtype"]][(_num(r, "m"), _num(r, "n"), _num(r, "k"))] = _num(r, "time_us")
    out["gemm"] = []
    for dtype, pts in gemms.items():
        ms, ns, ks = (sorted({p[i] for p in pts}) for i in range(3))
        grid, filled = [], 0
        for m in ms:
            grid.append([])
            for n in ns:
                vals, f = fill_row(ks, {k: pts[(m, n, k)] for k in ks if (m, n, k) in pts}, _r)
                grid[-1].append(vals)
                filled += f
        entry = {"dtype": dtype, "m": [int(x) for x in ms], "n": [int(x) for x in ns], "k": [int(x) for x in ks],
                 "time_us": grid, **src}
        if filled:
            entry["note"] = f"{filled} points over the sweep's memory cap filled by log-log extrapolation along k"
        out["gemm"].append(entry)
    for op, second in (("prefill_attention", "seq"), ("decode_attention", "context")):
        groups = defaultdict(dict)
        for r in by_op[op]:
            key = (int(_num(r, "heads")), int(_num(r, "kv_heads")), int(_num(r, "head_dim")))
            groups[key][(_num(r, "batch"), _num(r, "seq"))] = _num(r, "time_us")
        out[op] = []
        for (h, kv, d), pts in sorted(groups.items()):
            bs, ls = sorted({p[0] for p in pts}), sorted({p[1] for p in pts})
            grid, filled = [], 0
            for b in bs:
                vals, f = fill_row(ls, {x: pts[(b, x)] for x in ls if (b, x) in pts}, _r)
                grid.append(vals)
                filled += f
            entry = {"heads": h, "kv_heads": kv, "head_dim": d, "batch": [int(b) for b in bs],
                     second: [int(x) for x in ls], "time_us": grid, **src}
            if filled:
                entry["note"] = f"{filled} points over the sweep's memory cap filled by log-log extrapolation"
            out[op].append(entry)
    ew = sorted((_num(r, "size_bytes"), _num(r, "time_us")) for r in by_op["elementwise"])
    if len(ew) >= 2:
        (s0, t0), (s1, t1) = ew[-2], ew[-1]
        out["elementwise"] = {"gbps": {"value": _r((s1 - s0) / max(1e-9, t1 - t0) / 1e3), **src},
                              "latency_us": {"value": _r(ew[0][1]), **src}}
    launch = {r["op"]: _num(r, "time_us") for r in by_op["launch_eager"] + by_op["launch_graph"]}
    if launch:
        out["note"] = ("per-kernel launch: " + ", ".join(f"{k.split('_')[1]} {v:.3g} us" for k, v in sorted(launch.items()))
                       + " (kernel times in the tables are GPU time; eager launches add when the GPU idles)")
    return {k: v for k, v in out.items() if v != []}
