"""Best layer split of one replica layout: ``estimate_pipeline``'s elapsed time, vectorised
over every split the layout's stage kinds can take.

``estimate_pipeline`` (solver/cost/pipeline.py) runs a batch of B sequences in waves of
c = min(B, max_num_seqs, KV tokens // context) and times each wave of n sequences as

    prefill(n) = sum(P) + (steps(n) - 1) max(P)          P: stage, link and engine times
                                                         of one prefill step (ps(n) prompts)
    decode(n)  = (O - 1) max(m'(n) max(D), sum(D))       D: the same for one decode step of
                                                         a micro-batch of mb(n) sequences

with m'(n) = min(m, n), mb(n) = ceil(n / m'(n)), ps(n) = min(n, max(1, tokens_per_step //
prompt)), steps(n) = ceil(n / ps(n)); the engine's KV blocks are the smallest stage's. All
of it depends on the stages' times and KV blocks only through max, sum and min over stages,
so stages of one kind (group, TP, position) -- a *segment* -- share their layers as evenly as
possible (the stage with the most layers sets the segment's max time and its KV blocks;
times are affine in the layer count, so the sum is fixed), and the best split is found by
evaluating every vector of segment totals at once with numpy. That is exact: the same
formula (checked against ``estimate_pipeline`` in tests/test_plan_split.py), every split.
Grids above ``MAX_GRID_POINTS`` start from a memory-proportional split that
``shapes.polish`` hill-climbs on ``estimate_pipeline`` (marked heuristic).
"""

from __future__ import annotations

import math

import numpy as np

from solver.cost.serving import KV_BLOCK_TOKENS, serving_config
from solver.plan.candidates import CostTable

# Largest grid of segment totals searched exactly.
MAX_GRID_POINTS = 400_000


def _segment_arrays(pre: np.ndarray, dec: np.ndarray, count: int, L: int):
    """For a segment of ``count`` stages sharing tables, arrays over its layer total N:
    max and sum of prefill and decode times with the N layers spread evenly (inf where
    infeasible)."""
    out = [np.full(L + 1, np.inf) for _ in range(4)]
    total = np.arange(count, L + 1)
    q, r = total // count, total % count
    hi = np.where(r > 0, np.minimum(q + 1, L), q)
    ok = np.isfinite(pre[hi])
    with np.errstate(invalid="ignore"):
        for i, arr in enumerate((pre, dec)):
            out[2 * i][total] = np.where(ok, arr[hi], np.inf)
            both = np.where(r > 0, r * arr[hi] + (count - r) * arr[q], count * arr[q])
            out[2 * i + 1][total] = np.where(ok, both, np.inf)
    return out


class _Waves:
    """Per wave size n = 0..cmax: micro-batches, sequences per micro-batch, prompts per
    prefill step, prefill steps (row 0: an empty wave)."""

    def __init__(self, depth: int, cmax: int, per_step_max: int):
        n = np.arange(cmax + 1)
        self.mp = np.minimum(depth, n)
        self.mb = np.where(n > 0, -(-n // np.maximum(self.mp, 1)), 0)
        self.ps = np.where(n > 0, np.minimum(n, per_step_max), 0)
        self.steps = np.where(n > 0, -(-n // np.maximum(self.ps, 1)), 0)


def _segment(table: CostTable, kind, count: int, batch: int, L: int):
    """``_segment_arrays`` at ``batch`` sequences, memoised on the table."""
    key = ("segment", kind, count, batch)
    if key not in table.memo:
        table.memo[key] = _segment_arrays(*table.times(*kind, batch), count, L)
    return table.memo[key]


def _kind_rows(table: CostTable, kind, count: int, waves: _Waves, needed, L: int):
    """[n, total] arrays of the segment's max/sum prefill time (at ps(n) prompts) and
    max/sum decode time (at mb(n) sequences), filled for the wave sizes ``needed``."""
    rows = len(waves.mp)
    maxp, sump, maxd, sumd = (np.zeros((rows, L + 1)) for _ in range(4))
    for n in needed:
        maxp[n], sump[n] = _segment(table, kind, count, int(waves.ps[n]), L)[:2]
        maxd[n], sumd[n] = _segment(table, kind, count, int(waves.mb[n]), L)[2:]
    return maxp, sump, maxd, sumd


def _link_rows(table: CostTable, links, waves: _Waves, needed):
    """Per wave size in ``needed``: sum and max over the layout's links of prefill-step and
    decode-step transfer times (0 without links)."""
    out = np.zeros((4, len(waves.mp)))
    for n in needed:
        lt = [table.link_times(a, b, same, int(waves.ps[n]), t)[0] for a, b, same, t in links]
        dt = [table.link_times(a, b, same, int(waves.mb[n]), t)[1] for a, b, same, t in links]
        out[:, n] = (sum(lt), max(lt, default=0.0), sum(dt), max(dt, default=0.0))
    return out


def best_split(table: CostTable, stages: list, links: list) -> tuple[tuple[int, ...], float, bool] | None:
    """(layers per stage, elapsed s, exact) minimising ``estimate_pipeline``'s elapsed time
    for a layout with ``stages`` ((group, tp, position) in order) and ``links`` ((sender,
    receiver, same node, sender TP) per link); None when no split runs one sequence."""
    wl, L, m = table.workload, table.num_layers, len(stages)
    cfg = serving_config(table.groups[stages[0][0]].profile)
    B, O1 = wl.batch, max(0, wl.output_len - 1)
    cmax = min(B, cfg.max_num_seqs)
    per_seq = math.ceil(wl.context_len / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS
    waves = _Waves(m, cmax, max(1, cfg.batched_tokens(wl) // wl.prompt_len))
    keys = list(dict.fromkeys(stages))
    counts = [stages.count(k) for k in keys]
    if any(table.kind(*k) is None for k in keys):
        return None  # a stage kind that cannot hold one layer
    ranges = [np.arange(c, min(L, c * table.kinds[k].cap_layers) + 1) for k, c in zip(keys, counts)]
    if any(len(r) == 0 for r in ranges):
        return None
    if int(np.prod([len(r) for r in ranges[:-1]])) > MAX_GRID_POINTS:
        start = _proportional(table, stages, keys, counts)
        return None if start is None else (start, math.inf, False)
    grids = [gr.ravel() for gr in np.meshgrid(*ranges[:-1], indexing="ij")] if len(keys) > 1 else []
    last = L - (sum(grids) if grids else np.zeros(1, dtype=int))
    ok = (last >= ranges[-1][0]) & (last <= ranges[-1][-1])
    if not np.any(ok):
        return None
    totals = [gr[ok] for gr in grids] + [last[ok]]
    # concurrency: the smallest stage's KV blocks (the stage with the most layers of each segment)
    head = stages[0][0]
    blocks = np.min([table.kv_blocks(g, t, pos, head)[-(-n // c)] for (g, t, pos), c, n in zip(keys, counts, totals)],
                    axis=0)
    conc = np.minimum(cmax, blocks * KV_BLOCK_TOKENS // per_seq)
    safe = np.maximum(conc, 1)
    full, rest = B // safe, B % safe
    needed = sorted(set(np.unique(safe).tolist()) | set(np.unique(rest[rest > 0]).tolist()))
    seg = [_kind_rows(table, k, c, waves, needed, L) for k, c in zip(keys, counts)]
    lk = _link_rows(table, links, waves, needed)
    pre_o, dec_o = cfg.prefill_overhead_s, cfg.decode_step_overhead_s

    def wave_s(n: np.ndarray) -> np.ndarray:
        psum = sum(s[1][n, x] for s, x in zip(seg, totals)) + lk[0][n] + pre_o
        pmax = np.maximum(np.max([s[0][n, x] for s, x in zip(seg, totals)], axis=0), np.maximum(lk[1][n], pre_o))
        dsum = sum(s[3][n, x] for s, x in zip(seg, totals)) + lk[2][n] + dec_o
        dmax = np.maximum(np.max([s[2][n, x] for s, x in zip(seg, totals)], axis=0), np.maximum(lk[3][n], dec_o))
        out = psum + (waves.steps[n] - 1) * pmax + O1 * np.maximum(waves.mp[n] * dmax, dsum)
        return np.where(n > 0, out, 0.0)

    with np.errstate(invalid="ignore"):
        elapsed = full * wave_s(safe) + np.where(rest > 0, wave_s(rest), 0.0)
    elapsed = np.where((conc >= 1) & np.isfinite(elapsed), elapsed, np.inf)
    i = int(np.argmin(elapsed))
    if not np.isfinite(elapsed[i]):
        return None
    return spread_layers(stages, keys, counts, {k: int(n[i]) for k, n in zip(keys, totals)}), float(elapsed[i]), True


def _proportional(table: CostTable, stages, keys, counts) -> tuple[int, ...] | None:
    """Start when the grid is too large: layers in proportion to memory caps."""
    caps = [table.kinds[k].cap_layers * c for k, c in zip(keys, counts)]
    L = table.num_layers
    if sum(caps) < L:
        return None
    totals = [max(c, int(L * cap / sum(caps))) for c, cap in zip(counts, caps)]
    i = 0
    while sum(totals) != L:
        j = i % len(keys)
        step = 1 if sum(totals) < L else -1
        if counts[j] <= totals[j] + step <= caps[j]:
            totals[j] += step
        i += 1
    return spread_layers(stages, keys, counts, dict(zip(keys, totals)))


def spread_layers(stages, keys, counts, seg_total) -> tuple[int, ...]:
    """Per-stage layers: each segment's total spread evenly, the extra layers to its
    earlier stages."""
    seen = {k: 0 for k in keys}
    out = []
    for k in stages:
        q, r = divmod(seg_total[k], counts[keys.index(k)])
        out.append(q + (1 if seen[k] < r else 0))
        seen[k] += 1
    return tuple(out)
