"""Fit collective timings to the profile's model (design.md section 4), with held-out error.

Model per (collective, ranks n, scope): ``t(S) = alpha + factor(n) * S / busbw`` (nccl-tests
S and factor; solver/cost/collectives.py evaluates it). Steps:

1. **Line.** Robust least squares on *relative* time error, minimising
   ``sum_i w_i ((alpha + c*S_i) / t_i - 1)^2`` (Huber weights, a few IRLS rounds), so small
   and large messages count alike; ``busbw = factor / (c * 1e3)`` (c in us per byte).
   Exact data ``t = 10 + 1.75*S/1e5`` (all_reduce n=8, busbw 100 GB/s) returns
   alpha = 10 us, busbw = 100 GB/s exactly.
2. **Model kinds** where one line misses (protocol / algorithm switches, design.md
   section 4): ``table`` -- the measured (size, time) points, interpolated *linearly in S*
   (the local alpha-beta line between neighbours; on the 7 real logs its held-out error is
   below log-log's), with the line refitted by regime: ``busbw`` from the slope of the
   largest sizes (>= S_max/16, at least 3) -- it extrapolates above the table -- and
   ``alpha`` the intercept through the <= 4 smallest latency-bound sizes; ``env2`` /
   ``env3`` -- the lower envelope ``min_k(alpha_k + factor*S/busbw_k)`` of 2 or 3 lines,
   one per contiguous run of sizes (cuts searched exhaustively, least relative error).
   Exact two-line data ``min(10 + 1.75*S/2e4, 40 + 1.75*S/2e5)`` returns those lines.
3. **Choice** (``choose_kind``): leave-one-out on the points being fitted -- each interior
   size in the window predicted from the others -- and the kind with the least max error
   wins (ties to the simpler: line, table, env2, env3). ``table_if=None``: the line only.
4. **Held-out error.** Unique sizes sorted; every other size is left out (two folds: even
   and odd positions); on each fold's training half the kind is *chosen* and fitted, then
   evaluated at the held-out sizes inside the error window (default 4 KiB - 1 GiB).
   ``max_rel_err`` / ``mean_rel_err`` are over both folds; ``line_max_rel_err`` is the
   single line's. Anomalous points (calibrate/nccl/outliers.py) are flagged on each fold's
   training half and left out of its fit; held-out points flagged on the whole curve are
   listed but not in the error (``held_out`` rows carry the flag). Steps between two training sizes 4x apart (e.g. H100 all_gather 23 us at
   2 MiB, 45 us at 4 MiB) stay unpredictable: no kind can tell which side a left-out size is on.

No torch, no I/O.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from calibrate.nccl.outliers import flag_outliers
from solver.cost.collectives import bus_factor, collective_time_us
from solver.errors import InputError
from solver.inputs.profile import CollectiveFit

KIB, GIB = 2**10, 2**30
ERROR_WINDOW = (4 * KIB, GIB)
KINDS = ("line", "table", "env2", "env3")  # simplest first: ties go to the earlier
MIN_POINTS = {"line": 2, "table": 4, "env2": 5, "env3": 7}  # leave-one-out still leaves a fit


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
    held_out: list[tuple[int, float, float]] = field(default_factory=list)  # (size, measured, predicted), unflagged
    flagged: dict[int, str] = field(default_factory=dict)  # size -> why (outliers.py), not fitted
    window: tuple[int, int] = ERROR_WINDOW
    lines: list[tuple[float, float]] = field(default_factory=list)  # envelope (alpha_us, busbw_gbps)

    @property
    def method(self) -> str:
        if self.lines:
            return f"envelope{len(self.lines)}"
        return "line+table" if self.table_size_bytes else "line"

    def as_collective_fit(self) -> CollectiveFit:
        return _cfit(self.collective, self.ranks, self.scope, self.alpha_us, self.busbw_gbps,
                     self.table_size_bytes, self.table_time_us, self.lines)


def _cfit(coll, n, scope, alpha, busbw, tsz=(), tt=(), lines=()) -> CollectiveFit:
    return CollectiveFit(collective=coll, ranks=n, scope=scope, alpha_us=alpha, busbw_gbps=busbw,
                         source="synthetic", table_size_bytes=tuple(float(s) for s in tsz),
                         table_time_us=tuple(float(t) for t in tt), table_interp="linear",
                         lines=tuple((float(a), float(b)) for a, b in lines))


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


def fit_envelope(collective: str, n: int, sizes, times, k: int) -> list[tuple[float, float]]:
    """Lower envelope of ``k`` alpha-beta lines (design.md section 4: one per (algorithm,
    protocol)): the sorted sizes are cut into ``k`` contiguous runs of >= 2 points (every cut
    tried), one relative-error line per run (alpha >= 0, slope >= 1e-9 us/B), the cuts with
    the least total squared relative error kept. Returns [(alpha_us, busbw_gbps)] by size."""
    S, t = np.asarray(sizes, float), np.asarray(times, float)
    f, best = bus_factor(collective, n), None
    for cuts in itertools.combinations(range(2, len(S) - 1), k - 1):
        edges = (0, *cuts, len(S))
        if any(edges[i + 1] - edges[i] < 2 for i in range(k)):
            continue
        lines = [_rel_line(S[a:b], t[a:b]) for a, b in zip(edges, edges[1:])]
        err = sum(float(np.sum(((a_ + c * S[a:b]) / t[a:b] - 1) ** 2))
                  for (a_, c), a, b in zip(lines, edges, edges[1:]))
        if best is None or err < best[0]:
            best = (err, lines)
    if best is None:
        raise InputError("", f"{collective} n={n}", f"needs >= {2 * k} sizes for {k} lines")
    return [(a, f / (c * 1e3)) for a, c in best[1]]


def _rel_line(S, t) -> tuple[float, float]:
    """Least relative-error (alpha_us, slope us/B) with alpha >= 0, slope >= 1e-9."""
    (a, c), *_ = np.linalg.lstsq(np.c_[np.ones_like(S), S] / t[:, None], np.ones_like(S), rcond=None)
    if a < 0:
        a, c = 0.0, float(np.sum(S / t) / np.sum((S / t) ** 2))
    if c < 1e-9:
        c = 1e-9
        a = max(float(np.sum((1 - c * S / t) / t) / np.sum(1 / t ** 2)), 0.0)
    return float(a), float(c)


def _predictor(collective, n, S, t, kind: str) -> tuple[float, float, list, list, list]:
    """Fit ``kind`` on (S, t): (alpha, busbw, table sizes, table times, envelope lines)."""
    if kind == "line":
        return (*fit_line(collective, n, S, t), [], [], [])
    if kind == "table":
        alpha, busbw = fit_regimes(collective, n, S, t)
        return alpha, busbw, [int(s) for s in S], [float(x) for x in t], []
    lines = fit_envelope(collective, n, S, t, int(kind[-1]))
    return lines[0][0], max(b for _, b in lines), [], [], lines


def _predict_fn(collective, n, scope, S, t, kind):
    a, b, ts, tt, ln = _predictor(collective, n, S, t, kind)
    cf = _cfit(collective, n, scope, a, b, ts, tt, ln)
    return lambda s: collective_time_us(cf, s)


def _loo_err(collective, n, scope, S, t, kind, window) -> float:
    """Max relative error at each interior size in ``window`` predicted from all the others
    (leave-one-out on the points given: training points only)."""
    errs = []
    for j in range(1, len(S) - 1):
        if window[0] <= S[j] <= window[1]:
            keep = np.arange(len(S)) != j
            try:
                errs.append(abs(_predict_fn(collective, n, scope, S[keep], t[keep], kind)(S[j]) / t[j] - 1))
            except InputError:
                return math.inf
    return max(errs, default=0.0)


def choose_kind(collective, n, scope, S, t, kinds=KINDS, window=ERROR_WINDOW) -> str:
    """The kind with the least leave-one-out max error on (S, t); ties go to the simpler."""
    scores = {k: _loo_err(collective, n, scope, S, t, k, window) for k in kinds if len(S) >= MIN_POINTS[k]}
    best = min(scores.values(), default=math.inf)
    return next((k for k in kinds if k in scores and scores[k] <= best + 1e-9), "line")


def _train(collective, n, S, t):
    """(S, t) without the points the outlier rule flags on them."""
    bad = flag_outliers(collective, n, S, t)
    ok = np.array([int(s) not in bad for s in S], bool)
    return S[ok], t[ok]


def _cv(collective, n, scope, S, t, kinds, window, flagged=()):
    """Two-fold every-other-size held-out error of choose-then-fit (outliers flagged and the
    kind chosen on each fold's training half only): (max, mean, [(size, meas, pred)]) over
    the held-out sizes not in ``flagged`` (flagged on the whole curve)."""
    if len(S) < 4:
        return None, None, []
    rows = []
    for par in (0, 1):
        tr = (np.arange(len(S)) % 2) == par
        try:
            S_tr, t_tr = _train(collective, n, S[tr], t[tr])
            kind = choose_kind(collective, n, scope, S_tr, t_tr, kinds, window)
            pred = _predict_fn(collective, n, scope, S_tr, t_tr, kind)
        except InputError:
            continue
        rows += [(int(s), float(m), pred(s)) for s, m in zip(S[~tr], t[~tr]) if int(s) not in flagged]
    rows.sort()
    inside = [r for r in rows if window[0] <= r[0] <= window[1]] or rows
    if not inside:
        return None, None, []
    errs = [abs(p / m - 1) for _, m, p in inside]
    return max(errs), sum(errs) / len(errs), inside


def fit_group(collective: str, n: int, scope: str, sizes, times, *, table_if: float | None = 0.10,
              window: tuple[int, int] = ERROR_WINDOW) -> Fit:
    """Fit one (collective, n, scope) group; see the module docstring. ``table_if=None``:
    the single line only."""
    S_all, t_all = merge_sizes(sizes, times)
    if len(S_all) < 2:
        raise InputError("", f"{collective} n={n} {scope}", f"needs >= 2 sizes to fit, got {len(S_all)}")
    flagged = flag_outliers(collective, n, S_all, t_all)
    line_max, _, _ = _cv(collective, n, scope, S_all, t_all, ("line",), window, flagged)
    kinds = ("line",) if table_if is None else KINDS
    mx, mean, rows = _cv(collective, n, scope, S_all, t_all, kinds, window, flagged)
    S, t = _train(collective, n, S_all, t_all)
    kind = choose_kind(collective, n, scope, S, t, kinds, window) if len(kinds) > 1 else "line"
    alpha, busbw, ts, tt, ln = _predictor(collective, n, S, t, kind)
    if mx is None:  # too few sizes to hold any out: in-sample error of the line
        cf = _cfit(collective, n, scope, alpha, busbw)
        errs = [abs(collective_time_us(cf, s) / m - 1) for s, m in zip(S, t)]
        mx, mean = max(errs), sum(errs) / len(errs)
    return Fit(collective, n, scope, alpha, busbw, (int(S_all[0]), int(S_all[-1])), len(S), ts, tt,
               mx, mean, line_max, rows, flagged, window, ln)


def relative_errors(fit: Fit, sizes, times) -> list[float]:
    cf = fit.as_collective_fit()
    return [collective_time_us(cf, s) / m - 1 for s, m in zip(sizes, times)]


def round_sig(x: float, sig: int = 4) -> float:
    return float(f"{x:.{sig}g}") if x and math.isfinite(x) else x
