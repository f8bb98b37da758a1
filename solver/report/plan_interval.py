"""Low / expected / high throughput of a plan over its profiles' default ranges.

Each replica is re-estimated with the profiles at their pessimistic and optimistic corners
(solver/cost/intervals.py: every ``default`` number at the end of its plausible range),
the replica totals summed, and both ends widened by the largest held-out error of an
end-to-end serving fit among the profiles used. ``solver plan --robust`` plans on the
pessimistic corner: it ranks layouts by the low end.
"""

from __future__ import annotations

import dataclasses

from solver.cost import intervals
from solver.inputs.profile import profile_for
from solver.report.plan_report import _replica_rows


def _total(plan, model, workload, cluster, profs, runtime: str) -> float:
    """The plan's throughput with ``profs``: summed over replicas, or for a shared batch all
    its tokens over the slowest replica's time (each replica on its share)."""
    ests = [_replica_rows(rep, model, dataclasses.replace(workload, batch=rep.batch) if rep.batch else workload,
                          cluster, profs, runtime)[1] for rep in plan.replicas]
    if not plan.shared:
        return sum(e.throughput_tok_s for e in ests)
    span = max(e.elapsed_s for e in ests)
    return sum(r.batch for r in plan.replicas) * plan.tokens_per_seq / span if span > 0 else 0.0


def plan_interval(plan, model, workload, cluster, profiles, runtime: str) -> dict:
    sides = {"expected": profiles, **{s: [intervals.corner(p, s) for p in profiles] for s in intervals.SIDES}}
    tot = {s: _total(plan, model, workload, cluster, profs, runtime) for s, profs in sides.items()}
    used = {profile_for(g.gpu, profiles).path: profile_for(g.gpu, profiles) for g in cluster.node_groups}
    spread = max((intervals.fit_spread(p) for p in used.values()), default=0.0)
    exp = tot["expected"]
    uncal = any(abs(tot[s] - exp) > 1e-9 * max(1.0, exp) for s in intervals.SIDES)
    return {"throughput_tok_s": {"low": min(tot.values()) * (1 - spread), "expected": exp,
                                 "high": max(tot.values()) * (1 + spread)},
            "uncalibrated": uncal, "fit_spread": spread,
            "defaults": sorted({d for p in used.values() for d in intervals.defaults_used(p)}) if uncal else []}


def interval_line(iv: dict, robust: bool) -> str:
    t = iv["throughput_tok_s"]
    head = ("UNCALIBRATED: rests on default numbers (" + ", ".join(iv["defaults"]) + ")"
            if iv["uncalibrated"] else "calibrated: no default widens it")
    how = "; planned on the low end (--robust)" if robust else ""
    return (f"{head}{how}\nthroughput low / expected / high: {t['low']:,.1f} / {t['expected']:,.1f} / "
            f"{t['high']:,.1f} tokens/s")
