"""Fit collective timings to the profile's model (design.md section 4), with held-out error.

Model per (collective, ranks n, scope): ``t(S) = alpha + factor(n) * S / busbw`` (nccl-tests
S and factor; solver/cost/collectives.py evaluates it). Steps:

1. **Line.** Robust least squares on *relative* time error, minimising
   ``sum_i w_i ((alpha + c*S_i) / t_i - 1)^2`` (Huber weights, a few IRLS rounds), so small
   and large messages count alike; ``busbw = factor / (c * 1e3)`` (c in us per byte).
   Exact data ``t = 10 + 1.75*S/1e5`` (all_reduce n=8, busbw 100 GB/s) returns
   alpha = 10 us, busbw = 100 GB/s exactly.
2. **Held-out error.** Unique sizes sorted; every other size is left out of the fit
   (two folds: even and odd positions), the predictor refitted on the rest and evaluated at
   the held-out sizes inside the error window (default 4 KiB - 1 GiB, what matters for
   inference). ``max_rel_err`` / ``mean_rel_err`` are over both folds.
3. **Table where the line misses.** If the line's held-out max error exceeds ``table_if``
   (10%) and a table predicts the held-out sizes better (lower max error), the curve is not one alpha-beta line (protocol / algorithm switches; design.md
   section 4): the fit keeps a table of the measured (size, time) points, which the solver
   interpolates log-log inside its range, and the line is refitted by regime: ``busbw``
   from the slope of the largest sizes (>= S_max/16, at least 3 sizes) -- it extrapolates
   above the table -- and ``alpha`` the intercept of a straight line through the 4 smallest
   latency-bound sizes (bandwidth term < 10% of t; else the 3 smallest sizes).
   The reported errors are then those of table + line, evaluated the same held-out way.

No torch, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from solver.cost.collectives import bus_factor, collective_time_us
from solver.errors import InputError
from solver.inputs.profile import CollectiveFit

KIB, GIB = 2**10, 2**30
ERROR_WINDOW = (4 * KIB, GIB)


@dataclass
class Fit:
    collective: str
    ranks: int
    scope: str
    alpha_us: float
    busbw_gbps: float
    range_bytes: tuple[int, int]
    n_points: int
    table_size_bytes: list[int] = field(default_factory=list)
    table_time_us: list[float] = field(default_factory=list)
    max_rel_err: float | None = None      # held-out, of the predictor written (line or table+line)
    mean_rel_err: float | None = None
    line_max_rel_err: float | None = None  # held-out, of the single line
    held_out: list[tuple[int, float, float]] = field(default_factory=list)  # (size, measured, predicted)
    window: tuple[int, int] = ERROR_WINDOW

    @property
    def method(self) -> str:
        return "line+table" if self.table_size_bytes else "line"

    def as_collective_fit(self) -> CollectiveFit:
        return _cfit(self.collective, self.ranks, self.scope, self.alpha_us, self.busbw_gbps,
                     self.table_size_bytes, self.table_time_us)


def _cfit(coll, n, scope, alpha, busbw, tsz=(), tt=()) -> CollectiveFit:
    return CollectiveFit(collective=coll, ranks=n, scope=scope, alpha_us=alpha, busbw_gbps=busbw,
                         source="synthetic", table_size_bytes=tuple(float(s) for s in tsz),
                         table_time_us=tuple(float(t) for t in tt))


def merge_sizes(sizes, times) -> tuple[np.ndarray, np.ndarray]:
    """Unique sizes (ascending) with the median time of repeated points."""
    by: dict[int, list[float]] = {}
    for s, t in zip(sizes, times):
        by.setdefault(int(s), []).append(float(t))
    s_u = sorted(by)
    return np.array(s_u, dtype=float), np.array([float(np.median(by[s])) for s in s_u])


def fit_line(collective: str, n: int, sizes, times, iters: int = 8) -> tuple[float, float]:
    """Robust relative-error fit of t = alpha + factor*S/busbw; returns (alpha_us, busbw_gbps)."""
    S, t = np.asarray(sizes, float), np.asarray(times, float)
    w = np.ones_like(S)
    alpha, c = 0.0, 0.0
    for _ in range(iters):
        sw = np.sqrt(w)
        A = np.c_[np.ones_like(S), S] / t[:, None] * sw[:, None]
        (alpha, c), *_ = np.linalg.lstsq(A, sw, rcond=None)
        if alpha < 0:  # latency cannot be negative: refit the slope alone
            alpha = 0.0
            c = float(np.sum(w * S / t) / np.sum(w * (S / t) ** 2))
        r = np.abs((alpha + c * S) / t - 1)
        scale = max(1.4826 * float(np.median(r)), 0.01)
        w = np.where(r <= 1.345 * scale, 1.0, 1.345 * scale / np.maximum(r, 1e-12))
    if not c > 0:
        raise InputError("", f"{collective} n={n}", "sizes too small to see a bandwidth term; "
                                                    "sweep larger messages (e.g. --max-bytes 1G)")
    return float(alpha), bus_factor(collective, n) / (float(c) * 1e3)


def fit_regimes(collective: str, n: int, sizes, times) -> tuple[float, float]:
    """(alpha_us, busbw_gbps): busbw from the slope of the largest sizes, alpha from the
    latency-bound ones (see module docstring, step 3)."""
    S, t = np.asarray(sizes, float), np.asarray(times, float)
    top = S >= S[-1] / 16
    if top.sum() < 3:
        top = np.arange(len(S)) >= max(len(S) - 3, 0)
    slope = float(np.polyfit(S[top], t[top], 1)[0]) if top.sum() >= 2 else 0.0
    if not slope > 0:
        return fit_line(collective, n, S, t)
    f = bus_factor(collective, n)
    busbw = f / (slope * 1e3)
    lat = np.flatnonzero(slope * S < 0.1 * t)[:4]
    if len(lat) < 2:
        lat = np.arange(min(3, len(S)))
    alpha = float(np.polyfit(S[lat], t[lat], 1)[1]) if len(lat) >= 2 else float(t[0])
    return max(alpha, 0.0), busbw


def _predictor(collective, n, S, t, table: bool) -> tuple[float, float, list, list]:
    """Fit on (S, t): (alpha, busbw, table sizes, table times); the line alone, or the
    regime line plus a table of the points."""
    if not table:
        return (*fit_line(collective, n, S, t), [], [])
    alpha, busbw = fit_regimes(collective, n, S, t)
    return alpha, busbw, [int(s) for s in S], [float(x) for x in t]


def _cv(collective, n, scope, S, t, table: bool, window):
    """Two-fold every-other-size held-out error: (max, mean, [(size, meas, pred)])."""
    if len(S) < 4:
        return None, None, []
    rows = []
    for par in (0, 1):
        tr = (np.arange(len(S)) % 2) == par
        try:
            a, b, ts, tt = _predictor(collective, n, S[tr], t[tr], table)
        except InputError:
            continue
        cf = _cfit(collective, n, scope, a, b, ts, tt)
        rows += [(int(s), float(m), collective_time_us(cf, s)) for s, m in zip(S[~tr], t[~tr])]
    rows.sort()
    inside = [r for r in rows if window[0] <= r[0] <= window[1]] or rows
    if not inside:
        return None, None, []
    errs = [abs(p / m - 1) for _, m, p in inside]
    return max(errs), sum(errs) / len(errs), inside


def fit_group(collective: str, n: int, scope: str, sizes, times, *, table_if: float = 0.10,
              window: tuple[int, int] = ERROR_WINDOW) -> Fit:
    """Fit one (collective, n, scope) group; see the module docstring."""
    S, t = merge_sizes(sizes, times)
    if len(S) < 2:
        raise InputError("", f"{collective} n={n} {scope}", f"needs >= 2 sizes to fit, got {len(S)}")
    line_max, line_mean, line_rows = _cv(collective, n, scope, S, t, False, window)
    use_table = False
    if table_if is not None and line_max is not None and line_max > table_if:
        tab = _cv(collective, n, scope, S, t, True, window)
        use_table = tab[0] is not None and tab[0] < line_max  # keep whichever predicts held-out sizes better
    mx, mean, rows = tab if use_table else (line_max, line_mean, line_rows)
    alpha, busbw, ts, tt = _predictor(collective, n, S, t, use_table)
    if mx is None:  # too few sizes to hold any out: in-sample error of the line
        cf = _cfit(collective, n, scope, alpha, busbw)
        errs = [abs(collective_time_us(cf, s) / m - 1) for s, m in zip(S, t)]
        mx, mean = max(errs), sum(errs) / len(errs)
    return Fit(collective, n, scope, alpha, busbw, (int(S[0]), int(S[-1])), len(S), ts, tt,
               mx, mean, line_max, rows, window)


def relative_errors(fit: Fit, sizes, times) -> list[float]:
    cf = fit.as_collective_fit()
    return [collective_time_us(cf, s) / m - 1 for s, m in zip(sizes, times)]


def round_sig(x: float, sig: int = 4) -> float:
    return float(f"{x:.{sig}g}") if x and math.isfinite(x) else x
