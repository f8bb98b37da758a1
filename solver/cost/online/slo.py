"""Latency targets and the most traffic one replica serves within them.

``max_rate_under_slo`` is the column the SLO planner needs: the largest Poisson rate
(requests/s) at which a replica's q-th percentile TTFT and TPOT stay within the targets.
Found by bisection on the rate, first with the steady-state model (``little``), then --
where ``simulate`` is asked for -- with the scheduler simulation, bracketed by the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solver.cost.online.little import max_stable_rate, mean_context, steady_state
from solver.cost.online.simulate import DEFAULT_SEED, simulate
from solver.cost.online.steps import StepModel
from solver.cost.online.traffic import Traffic
from solver.errors import InputError

# Requests one simulation serves when judging a rate: enough for a p90 (each request gives
# output_len - 1 ITL samples), small enough to bisect in well under a second per replica.
SLO_SIM_REQUESTS = 200
_BISECT_STEPS = 12


@dataclass(frozen=True)
class SLO:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    percentile: float = 90.0

    def __post_init__(self):
        for name in ("ttft_ms", "tpot_ms"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise InputError("", f"--{name.replace('_', '-')}", f"must be a number > 0 ms, got {v!r}")
        if self.ttft_ms is None and self.tpot_ms is None:
            raise InputError("", "--ttft-ms/--tpot-ms", "give at least one latency target")
        if not 0 < self.percentile < 100:
            raise InputError("", "--percentile", f"must be in (0, 100), got {self.percentile:g}")

    def met(self, ttft_s: float, tpot_s: float) -> bool:
        return ((self.ttft_ms is None or ttft_s * 1e3 <= self.ttft_ms)
                and (self.tpot_ms is None or tpot_s * 1e3 <= self.tpot_ms))


@dataclass(frozen=True)
class RateAtSLO:
    rate_per_s: float          # 0 when even a trickle misses a target
    max_stable_per_s: float    # without targets
    limit: str                 # what binds: "ttft", "tpot", "kv_cache", "token_budget", ...
    best_ttft_ms: float        # at a vanishing rate: the floor this replica can reach
    best_tpot_ms: float
    method: str                # "steady-state" or "simulation"


def _analytic_ok(steps: StepModel, traffic: Traffic, slo: SLO, rate: float) -> tuple[bool, str]:
    st = steady_state(steps, traffic.with_rate(rate))
    if not st.stable:
        return False, st.limit
    q = slo.percentile
    ttft, tpot = st.ttft_q_s(q), st.itl_mean_s
    if slo.ttft_ms is not None and ttft * 1e3 > slo.ttft_ms:
        return False, "ttft"
    if slo.tpot_ms is not None and tpot * 1e3 > slo.tpot_ms:
        return False, "tpot"
    return True, ""


def _sim_ok(steps: StepModel, traffic: Traffic, slo: SLO, rate: float, seed: int) -> tuple[bool, str]:
    res = simulate(steps, traffic.with_rate(rate), SLO_SIM_REQUESTS, seed)
    if not res.finished:
        return False, "steps"
    q = slo.percentile
    if slo.ttft_ms is not None and res.pct("ttft_s", q) * 1e3 > slo.ttft_ms:
        return False, "ttft"
    if slo.tpot_ms is not None and res.pct("tpot_s", q) * 1e3 > slo.tpot_ms:
        return False, "tpot"
    return True, ""


def floor_latency_ms(steps: StepModel, traffic: Traffic) -> tuple[float, float]:
    """(TTFT, TPOT) of a lone request: its prompt's chunks, then single decodes."""
    p, o = traffic.mean_lengths()
    chunks = math.ceil(p / steps.budget_tokens)
    ttft = chunks * steps.prefill_s(min(int(p), steps.budget_tokens))
    return ttft * 1e3, steps.decode_s(1, mean_context(p, o)) * 1e3


def max_rate_under_slo(steps: StepModel, traffic: Traffic, slo: SLO, *, simulate_check: bool = False,
                       seed: int = DEFAULT_SEED, rel_tol: float = 0.01) -> RateAtSLO:
    """Largest rate meeting ``slo`` on this replica (``traffic`` gives the lengths)."""
    stable, why_stable = max_stable_rate(steps, traffic, rel_tol)
    best_ttft, best_tpot = floor_latency_ms(steps, traffic)
    method = "simulation" if simulate_check else "steady-state"
    if stable <= 0 or not slo.met(best_ttft / 1e3, best_tpot / 1e3):
        limit = why_stable if stable <= 0 else ("ttft" if slo.ttft_ms and best_ttft > slo.ttft_ms else "tpot")
        return RateAtSLO(0.0, stable, limit, best_ttft, best_tpot, method)

    def bisect(ok, hi: float) -> tuple[float, str]:
        lo, why = 0.0, why_stable
        ok_hi, w = ok(hi)
        if ok_hi:
            return hi, why_stable
        why = w
        for _ in range(_BISECT_STEPS):
            if hi - lo <= rel_tol * hi:
                break
            mid = 0.5 * (lo + hi)
            good, w = ok(mid)
            if good:
                lo = mid
            else:
                hi, why = mid, w
        return lo, why

    rate, why = bisect(lambda r: _analytic_ok(steps, traffic, slo, r), stable)
    if simulate_check and rate > 0:
        rate, why = bisect(lambda r: _sim_ok(steps, traffic, slo, r, seed), min(stable, 1.5 * rate))
    return RateAtSLO(rate, stable, why, best_ttft, best_tpot, method)
