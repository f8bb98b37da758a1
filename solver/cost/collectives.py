"""Collective cost from a profile fit: one pure function module shared by solver and calibrate.

Conventions are nccl-tests' (design.md section 4; NVIDIA/nccl-tests ``doc/PERFORMANCE.md``),
with S the buffer size nccl-tests prints and n the number of ranks:

    algbw = S / t                       (GB/s = 1e9 B/s)
    busbw = algbw * factor(n)           factor: all_reduce 2(n-1)/n,
                                        all_gather, reduce_scatter (n-1)/n,
                                        broadcast, reduce, send_recv 1
    t(S)  = alpha + factor(n) * S / busbw

With S in bytes and busbw in GB/s, ``S / busbw`` is ``S / (busbw * 1e9)`` seconds, that is
``S / (busbw * 1e3)`` microseconds. Where one alpha-beta line misses (protocol / algorithm
switches) a fit carries either ``lines``, a lower envelope ``t = min_k(alpha_k + factor*S/busbw_k)``
used at every size, or a ``table`` (size_bytes -> time_us) of measured points: inside its range
it wins, interpolated linearly in S (``table_interp="linear"``: a local alpha-beta line between
neighbours) or log-log (the default, older profiles); outside, the line is used.

No torch, no I/O: numbers in, numbers out.
"""

from __future__ import annotations

import math
from typing import Sequence

from solver.inputs.profile import CollectiveFit

_FACTOR_KINDS = {
    "all_reduce": "allreduce",
    "all_gather": "ring",
    "reduce_scatter": "ring",
    "broadcast": "one",
    "reduce": "one",
    "send_recv": "one",
    "all_to_all": "ring",  # nccl-tests alltoall: busbw = algbw * (n-1)/n
}


def bus_factor(collective: str, n: int) -> float:
    """nccl-tests' busbw / algbw factor for ``collective`` on ``n`` ranks.

    >>> bus_factor("all_reduce", 8)      # 2*(8-1)/8
    1.75
    >>> bus_factor("all_gather", 4)      # (4-1)/4
    0.75
    """
    kind = _FACTOR_KINDS.get(collective)
    if kind is None:
        raise ValueError(f"unknown collective {collective!r}; known: {', '.join(_FACTOR_KINDS)}")
    if n < 1:
        raise ValueError(f"ranks must be >= 1, got {n}")
    if kind == "allreduce":
        return 2.0 * (n - 1) / n
    if kind == "ring":
        return (n - 1) / n
    return 1.0


def algbw_gbps(size_bytes: float, time_us: float) -> float:
    """Algorithm bandwidth S / t in GB/s (1e9 B/s): bytes / (us * 1e3)."""
    return size_bytes / (time_us * 1e3)


def busbw_gbps(collective: str, n: int, size_bytes: float, time_us: float) -> float:
    """Bus bandwidth: algbw x factor(n) in GB/s (comparable to per-direction link speed)."""
    return algbw_gbps(size_bytes, time_us) * bus_factor(collective, n)


def line_time_us(collective: str, n: int, alpha_us: float, busbw: float, size_bytes: float) -> float:
    """alpha + factor(n) * S / busbw in microseconds (busbw in GB/s)."""
    return alpha_us + bus_factor(collective, n) * size_bytes / (busbw * 1e3)


def loglog_interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation of log(y) against log(x); clamped outside [xs[0], xs[-1]].

    Between two points (x0, y0), (x1, y1) this is the power law y0 * (x/x0)^k with
    k = log(y1/y0) / log(x1/x0), exact for a table of a pure power law.
    """
    if not xs:
        raise ValueError("empty table")
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    lx = math.log(x)
    for i in range(1, len(xs)):
        if x <= xs[i]:
            x0, x1 = math.log(xs[i - 1]), math.log(xs[i])
            y0, y1 = math.log(ys[i - 1]), math.log(ys[i])
            w = (lx - x0) / (x1 - x0)
            return float(math.exp(y0 + w * (y1 - y0)))
    return float(ys[-1])


def linear_interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation of y against x; clamped outside [xs[0], xs[-1]].

    Between two points this is the alpha-beta line through them (local latency + bandwidth).
    """
    if not xs:
        raise ValueError("empty table")
    if x <= xs[0]:
        return float(ys[0])
    for i in range(1, len(xs)):
        if x <= xs[i]:
            w = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return float(ys[i - 1] + w * (ys[i] - ys[i - 1]))
    return float(ys[-1])


def envelope_time_us(collective: str, n: int, lines: Sequence[tuple[float, float]], size_bytes: float) -> float:
    """Lower envelope min_k(alpha_k + factor(n) * S / busbw_k) of (alpha_us, busbw_gbps) lines."""
    return min(line_time_us(collective, n, a, b, size_bytes) for a, b in lines)


def table_covers(fit: CollectiveFit, size_bytes: float) -> bool:
    """True when the fit has a table and ``size_bytes`` is inside its size range."""
    sizes = fit.table_size_bytes
    return len(sizes) >= 2 and sizes[0] <= size_bytes <= sizes[-1]


def collective_time_us(fit: CollectiveFit, size_bytes: float) -> float:
    """Predicted time (us) of one collective of nccl-tests size ``size_bytes`` under ``fit``.

    Envelope of ``lines`` when the fit has them; else the table (interpolated per
    ``table_interp``) inside its range, else the alpha-beta line. A zero-byte collective
    costs alpha (launch and synchronisation still happen).
    """
    if size_bytes < 0:
        raise ValueError(f"size_bytes must be >= 0, got {size_bytes}")
    if fit.lines:
        return envelope_time_us(fit.collective, fit.ranks, fit.lines, size_bytes)
    if size_bytes > 0 and table_covers(fit, size_bytes):
        interp = linear_interp if fit.table_interp == "linear" else loglog_interp
        return interp(fit.table_size_bytes, fit.table_time_us, size_bytes)
    return line_time_us(fit.collective, fit.ranks, fit.alpha_us, fit.busbw_gbps, size_bytes)


def busbw_gbps_at(fit: CollectiveFit, size_bytes: float) -> float:
    """Bus bandwidth (GB/s) the fit predicts at ``size_bytes``: factor(n) * S / t(S)."""
    return busbw_gbps(fit.collective, fit.ranks, size_bytes, collective_time_us(fit, size_bytes))


def in_fitted_range(fit: CollectiveFit, size_bytes: float) -> bool:
    """True when ``size_bytes`` lies inside the fit's ``range_bytes`` (or no range is known)."""
    rng = fit.range_bytes
    return rng is None or rng[0] <= size_bytes <= rng[1]


def find_fit(fits: Sequence[CollectiveFit], collective: str, ranks: int,
             scope: str) -> CollectiveFit | None:
    """The fit for exactly (collective, ranks, scope), or None. Never derives one n from
    another (NVLS busbw depends on n; design.md section 4)."""
    for f in fits:
        if f.collective == collective and f.ranks == ranks and f.scope == scope:
            return f
    return None
