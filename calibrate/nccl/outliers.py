"""Anomalous points of one collective curve: flagged, kept in raw, left out of the fit.

The rule (stated before it was run on any held-out error; ``scripts/bench_comm_fit.py``
prints what it flags on the shared logs):

1. Work on the bus-bandwidth curve ``y_i = log busbw(S_i)`` against ``x_i = log S_i``
   (unique sizes, median time per size). A healthy nccl-tests curve rises with S and
   saturates; NCCL's protocol switches make steps and plateaus in it, never isolated dips.
2. Residual of each point from its neighbours: ``r_i = y_i - line(x_i)`` where ``line`` goes
   through the points on either side; the first / last size is compared with its only
   neighbour along the asymptote there (smallest: latency-bound, busbw proportional to S;
   largest: bandwidth-bound, busbw flat). Median and MAD come from interior points.
3. A point **breaks monotonicity** when its busbw is below both neighbours or above both
   (the first point: above the second; the last: below the one before), or a larger size
   took less time than it (or a smaller one more).
4. It is **flagged** when it breaks monotonicity, is a Hampel outlier of the residuals --
   modified z-score ``0.6745 |r_i - median r| / MAD(r) > 3.5`` (Iglewicz & Hoaglin, 1993) --
   and sits at least ``MIN_EFFECT`` (25%) off its neighbours' line: wiggles smaller than that
   are run-to-run variation of nccl-tests timing, not a broken measurement.
5. One point at a time, the worst first, then the residuals are recomputed without it (so an
   outlier cannot make its neighbours look like outliers), at most a quarter of the sizes.

A 64 MiB all-reduce 5.6x slower than 32 MiB (a RoCE log in issue #10) has busbw 2.8x below
its neighbours: r = -1.03, flagged; a plateau before a protocol step (busbw 67, 71, 136 GB/s)
is monotone and stays in the fit. Pure numpy, no I/O.
"""

from __future__ import annotations

import math

import numpy as np

from solver.cost.collectives import busbw_gbps

Z_LIMIT = 3.5             # Iglewicz & Hoaglin's modified z-score cut-off
MIN_EFFECT = math.log(1.25)  # at least 25% off the neighbours' line
MAX_FRACTION = 0.25       # never flag more than a quarter of the sizes
MIN_SIZES = 5             # fewer sizes: no robust scale, nothing flagged


def _residuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Interior: distance from the line through both neighbours. Ends, from the one
    neighbour along the model's asymptote there: the smallest size latency-bound (time
    constant, busbw proportional to S), the largest bandwidth-bound (busbw constant)."""
    r = np.empty_like(y)
    r[0], r[-1] = y[0] - (y[1] + x[0] - x[1]), y[-1] - y[-2]
    w = (x[1:-1] - x[:-2]) / (x[2:] - x[:-2])
    r[1:-1] = y[1:-1] - (y[:-2] + w * (y[2:] - y[:-2]))
    return r


def _breaks_monotone(y: np.ndarray, t: np.ndarray, i: int) -> bool:
    """busbw a local extremum (first point: above the second; last: below the one before),
    or time falling with size on either side of ``i``."""
    m = len(y)
    if i == 0:
        extremum = y[0] > y[1]
    elif i == m - 1:
        extremum = y[i] < y[i - 1]
    else:
        extremum = y[i] < min(y[i - 1], y[i + 1]) or y[i] > max(y[i - 1], y[i + 1])
    time_rev = (i + 1 < m and t[i + 1] < t[i]) or (i > 0 and t[i - 1] > t[i])
    return bool(extremum or time_rev)


def flag_outliers(collective: str, ranks: int, sizes, times) -> dict[int, str]:
    """Flagged sizes of one (collective, ranks, scope) curve -> reason (one line each).
    ``sizes`` must be unique and ascending (``calibrate.nccl.fit.merge_sizes``)."""
    S = np.asarray(sizes, float)
    t = np.asarray(times, float)
    keep = np.ones(len(S), bool)
    out: dict[int, str] = {}
    while keep.sum() >= MIN_SIZES and len(out) < int(MAX_FRACTION * len(S)):
        idx = np.flatnonzero(keep)
        x = np.log(S[idx])
        y = np.log([busbw_gbps(collective, ranks, s, tt) for s, tt in zip(S[idx], t[idx])])
        r = _residuals(x, y)
        med = float(np.median(r[1:-1]))  # scale from interior points: ends have one neighbour
        mad = float(np.median(np.abs(r[1:-1] - med)))
        if mad <= 0:
            break
        z = 0.6745 * np.abs(r - med) / mad
        cands = [j for j in range(len(idx)) if z[j] > Z_LIMIT and abs(r[j]) >= MIN_EFFECT
                 and _breaks_monotone(y, t[idx], j)]
        if not cands:
            break
        j = max(cands, key=lambda k: z[k])
        side = "below" if r[j] < 0 else "above"
        out[int(S[idx[j]])] = (f"busbw {math.exp(abs(r[j])):.2f}x {side} its neighbours' line "
                               f"(modified z {z[j]:.1f} > {Z_LIMIT}), breaks monotonicity")
        keep[idx[j]] = False
    return out
