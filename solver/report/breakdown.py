"""``solver estimate --breakdown``: where one step's time goes, op by op, with each op's source."""

from __future__ import annotations

from solver.cost.ops.compose import OpTime
from solver.report.table import render


def breakdown_dict(ops: list[OpTime]) -> list[dict]:
    total = sum(o.total_s for o in ops) or 1.0
    return [{"op": o.name, "kind": o.kind, "calls": o.count, "us_per_call": o.seconds * 1e6,
             "total_ms": o.total_s * 1e3, "share": o.total_s / total, "source": o.source} for o in ops]


def render_breakdown(title: str, rows: list[dict]) -> str:
    """One table per phase; shares in %."""
    body = [[r["op"], r["kind"], r["calls"], r["us_per_call"], r["total_ms"], 100 * r["share"],
             r["source"]] for r in rows]
    total = sum(r["total_ms"] for r in rows)
    return render(["op", "kind", "calls", "us/call", "total_ms", "%", "source"], body,
                  f"{title}: {total:.4g} ms") if rows else f"{title}: no op tables (roofline)"
