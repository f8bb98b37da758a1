"""The pool's batch, split across replicas: the default workload of ``solver plan``.

B sequences (``--batch``) are served by the plan's replicas together; replica r takes b_r of
them (sum b_r = B, the router's split, part of the answer) and needs E_r(b_r) seconds
(``estimate_pipeline`` with batch b_r: ``split.batch_elapsed``). The batch is done when the
slowest replica is, so the plan's throughput is B x (prompt + output) / max_r E_r(b_r)
(docs/metrics.md, "plan throughput").

For a makespan T, replica r can take cap_r(T) = max{b : E_r(b') <= T for all b' <= b}
sequences (the prefix maximum makes "fewer sequences, no slower" hold even where micro-batch
rounding makes E dip); the best split of fixed replicas is the smallest T among the
E values with sum_r cap_r(T) >= B (``split_batch``). The planner searches T the same way
over the MILP's layouts (``solver.plan.planner``): at each T a packing MILP maximises
sum_s cap_s(T) y_s, and the smallest T reaching B is the optimum (exact: T is one of the
finitely many E values).
"""

from __future__ import annotations

import numpy as np


def envelope(elapsed_s: np.ndarray) -> np.ndarray:
    """Prefix maximum of E(b), b = 0..B: the time a replica needs for *up to* b sequences."""
    return np.maximum.accumulate(elapsed_s)


def capacity(env: np.ndarray, t_s: float) -> int:
    """Most sequences a replica with envelope ``env`` finishes within ``t_s`` seconds."""
    return int(np.searchsorted(env, t_s * (1 + 1e-12), side="right") - 1)


def candidate_times(envs: list[np.ndarray]) -> np.ndarray:
    """Every makespan worth trying: the finite, positive envelope values, ascending."""
    vals = np.concatenate([e[1:][np.isfinite(e[1:])] for e in envs]) if envs else np.zeros(0)
    return np.unique(vals)


def split_batch(envs: list[np.ndarray], batch: int) -> tuple[float, list[int]] | None:
    """(makespan s, sequences per replica) minimising the makespan of ``batch`` sequences over
    replicas with envelopes ``envs``; None when they cannot serve it. Shares are the
    capacities at the optimal makespan, trimmed from the last replicas to sum to ``batch``."""
    times = candidate_times(envs)
    lo, hi = 0, len(times) - 1
    if hi < 0 or sum(capacity(e, times[hi]) for e in envs) < batch:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(capacity(e, times[mid]) for e in envs) >= batch:
            hi = mid
        else:
            lo = mid + 1
    t = float(times[lo])
    shares = [capacity(e, t) for e in envs]
    extra = sum(shares) - batch
    for r in reversed(range(len(shares))):
        cut = min(extra, shares[r])
        shares[r] -= cut
        extra -= cut
    return t, shares
