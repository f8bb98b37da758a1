"""Interpolation on a latency grid in log space (op tables, docs/profile.md "Op tables").

Op latency follows power laws over most of its range: a GEMM's time grows ~linearly with m
once it is compute-bound, an attention kernel's ~quadratically with the sequence, and both
flatten to a fixed launch/latency floor when small. Multilinear interpolation of log(time)
against log(axis) is exact for a power law between grid points and reproduces the floor,
so a coarse grid (powers of two) is enough. Outside an axis the end segment's slope
extends the law (log-linear extrapolation); callers report such points as extrapolated.
"""

from __future__ import annotations

import bisect
import math

from solver.inputs.ops_profile import Grid


def _bracket(axis: tuple[float, ...], x: float) -> tuple[int, float, bool]:
    """(i, w, inside): interpolate between axis[i] and axis[i+1] with weight w on the upper
    point, in log space; w < 0 or > 1 extrapolates the end segment."""
    n = len(axis)
    if n == 1:
        return 0, 0.0, x == axis[0]
    inside = axis[0] <= x <= axis[-1]
    i = min(max(bisect.bisect_right(axis, x) - 1, 0), n - 2)
    w = (math.log(x) - math.log(axis[i])) / (math.log(axis[i + 1]) - math.log(axis[i]))
    return i, w, inside


def grid_at(grid: Grid, point: tuple[float, ...]) -> tuple[float, bool]:
    """(time_us, inside) at ``point`` (one coordinate per axis, each > 0)."""
    brackets = [_bracket(ax, float(x)) for ax, x in zip(grid.axes, point)]
    strides = []
    s = 1
    for ax in reversed(grid.axes):
        strides.append(s)
        s *= len(ax)
    strides.reverse()
    log_t = 0.0
    for corner in range(1 << len(brackets)):
        weight, idx = 1.0, 0
        for d, (i, w, _) in enumerate(brackets):
            upper = (corner >> d) & 1
            if len(grid.axes[d]) == 1:
                if upper:
                    weight = 0.0
                    break
                continue
            weight *= w if upper else 1.0 - w
            idx += (i + upper) * strides[d]
        if weight:
            log_t += weight * math.log(grid.values[idx])
    return math.exp(log_t), all(b[2] for b in brackets)
