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
Grids above ``MAX_GRID_POINTS`` are searched coarse to fine (every k-th total, then the
full grid around the best; marked heuristic).
"""

from __future__ import annotations

import math

import numpy as np

from solver.cost.memory import kv_blocks
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
        self.key = (depth, cmax, per_step_max)
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


def _kind_rows(table: CostTable, kind, count: int, waves: _Waves, needed: tuple, L: int) -> np.ndarray:
    """[quantity, i, total] for the i-th wave size of ``needed``: the segment's max and sum
    prefill time (at ps(n) prompts), max and sum decode time (at mb(n) sequences)."""
    out = np.zeros((4, len(needed), L + 1))
    for i, n in enumerate(needed):
        out[0:2, i] = _segment(table, kind, count, int(waves.ps[n]), L)[:2]
        out[2:4, i] = _segment(table, kind, count, int(waves.mb[n]), L)[2:]
    return out


def _link_rows(table: CostTable, links, waves: _Waves, needed: tuple) -> np.ndarray:
    """[quantity, i] for the i-th wave size of ``needed``: sum and max over the layout's
    links of prefill-step and decode-step transfer times (0 without links)."""
    out = np.zeros((4, len(needed)))
    for i, n in enumerate(needed):
        lt = [table.link_times(a, b, same, int(waves.ps[n]), t)[0] for a, b, same, t in links]
        dt = [table.link_times(a, b, same, int(waves.mb[n]), t)[1] for a, b, same, t in links]
        out[:, i] = (sum(lt), max(lt, default=0.0), sum(dt), max(dt, default=0.0))
    return out


class _Layout:
    """Everything ``elapsed`` needs for one layout, built once."""

    def __init__(self, table: CostTable, stages: list, links: list):
        wl = table.workload
        self.table, self.stages, self.links, self.L = table, stages, links, table.num_layers
        self.cfg = serving_config(table.groups[stages[0][0]].profile)
        self.B, self.O1 = wl.batch, max(0, wl.output_len - 1)
        self.cmax = min(self.B, self.cfg.max_num_seqs)
        self.per_seq = kv_blocks(wl.context_len, self.cfg.block_size) * self.cfg.block_size
        self.waves = _Waves(len(stages), self.cmax, max(1, self.cfg.batched_tokens(wl) // wl.prompt_len))
        self.keys = list(dict.fromkeys(stages))
        self.counts = [stages.count(k) for k in self.keys]
        self.kv = [table.kv_blocks(g, t, pos, stages[0][0]) for g, t, pos in self.keys]

    def ranges(self) -> list[np.ndarray]:
        return [np.arange(c, min(self.L, c * self.table.kinds[k].cap_layers) + 1)
                for k, c in zip(self.keys, self.counts)]

    def elapsed(self, totals: list[np.ndarray], batch: np.ndarray | int | None = None) -> np.ndarray:
        """Elapsed seconds per vector of segment totals (inf: no sequence fits) for the
        workload's batch, or per point for ``batch`` sequences (at most the workload's)."""
        b = self.B if batch is None else batch
        # concurrency: the smallest stage's KV blocks (the stage with the most layers of each segment)
        blocks = np.min([kv[-(-n // c)] for kv, c, n in zip(self.kv, self.counts, totals)], axis=0)
        conc = np.minimum(np.minimum(b, self.cmax), blocks * KV_BLOCK_TOKENS // self.per_seq)
        safe = np.maximum(conc, 1)
        full, rest = b // safe, b % safe
        needed = tuple(sorted(set(np.unique(safe).tolist()) | set(np.unique(rest[rest > 0]).tolist())))
        row = np.zeros(len(self.waves.mp), dtype=np.int64)
        row[list(needed)] = np.arange(len(needed))
        seg = [_kind_rows(self.table, k, c, self.waves, needed, self.L) for k, c in zip(self.keys, self.counts)]
        lk = _link_rows(self.table, self.links, self.waves, needed)
        pre_o, dec_o, w = self.cfg.prefill_overhead_s, self.cfg.decode_step_overhead_s, self.waves

        def wave_s(n: np.ndarray) -> np.ndarray:
            if n.min() == n.max():  # one wave size everywhere (the common case): a cheaper gather
                i0 = int(row[int(n.flat[0])])
                got = [s[:, i0].take(x, axis=1) for s, x in zip(seg, totals)]
                n, i = np.int64(int(n.flat[0])), np.int64(i0)
            else:
                i = row[n]
                got = [s[:, i, x] for s, x in zip(seg, totals)]  # per segment: (4, points)
            pmax = np.maximum(np.max([g[0] for g in got], axis=0), np.maximum(lk[1][i], pre_o))
            psum = sum(g[1] for g in got) + lk[0][i] + pre_o
            dmax = np.maximum(np.max([g[2] for g in got], axis=0), np.maximum(lk[3][i], dec_o))
            dsum = sum(g[3] for g in got) + lk[2][i] + dec_o
            out = psum + (w.steps[n] - 1) * pmax + self.O1 * np.maximum(w.mp[n] * dmax, dsum)
            return np.where(n > 0, out, 0.0)

        with np.errstate(invalid="ignore"):
            out = full * wave_s(safe)
            if np.any(rest > 0):
                out = out + np.where(rest > 0, wave_s(rest), 0.0)
        return np.where((conc >= 1) & np.isfinite(out), out, np.inf)

    def grid(self, axes: list[np.ndarray], last: np.ndarray):
        """Best (elapsed, totals) over the product of ``axes`` (all segments but the last,
        whose total is what is left), or None."""
        grids = [gr.ravel() for gr in np.meshgrid(*axes, indexing="ij")] if axes else []
        rest = self.L - (sum(grids) if grids else np.zeros(1, dtype=int))
        ok = (rest >= last[0]) & (rest <= last[-1])
        if not np.any(ok):
            return None
        totals = [gr[ok] for gr in grids] + [rest[ok]]
        e = self.elapsed(totals)
        i = int(np.argmin(e))
        return (float(e[i]), [int(n[i]) for n in totals]) if np.isfinite(e[i]) else None


def batch_elapsed(table: CostTable, stages: list, links: list, layers: tuple[int, ...]) -> np.ndarray:
    """Elapsed seconds of the split ``layers`` serving b sequences, for b = 0..the workload's
    batch (index b; 0 s for b = 0, inf where no sequence fits): ``estimate_pipeline``'s time
    with the batch set to b, vectorised over b."""
    lay = _Layout(table, stages, links)
    seg_total = {k: 0 for k in lay.keys}
    for k, n in zip(stages, layers):
        seg_total[k] += n
    b = np.arange(lay.B + 1)
    totals = [np.full(len(b), seg_total[k]) for k in lay.keys]
    out = lay.elapsed(totals, np.maximum(b, 1))
    out[0] = 0.0
    return out


def splits_by_batch(table: CostTable, stages: list, links: list, full_batch_layers: tuple[int, ...]):
    """(E[b], layers[b], exact) for b = 0..the workload's batch: the least elapsed time of the
    layout serving b sequences and the split that gives it -- every split evaluated at every
    b while the grid times the batch stays within ``MAX_GRID_POINTS``; else the full batch's
    best split ``full_batch_layers`` for every b (exact False)."""
    lay = _Layout(table, stages, links)
    ranges = lay.ranges()
    size = int(np.prod([len(r) for r in ranges[:-1]]))
    if size * lay.B > MAX_GRID_POINTS:
        e = batch_elapsed(table, stages, links, full_batch_layers)
        return e, [full_batch_layers] * (lay.B + 1), False
    grids = [gr.ravel() for gr in np.meshgrid(*ranges[:-1], indexing="ij")] if len(ranges) > 1 else []
    rest = lay.L - (sum(grids) if grids else np.zeros(1, dtype=int))
    ok = (rest >= ranges[-1][0]) & (rest <= ranges[-1][-1])
    totals = [gr[ok] for gr in grids] + [rest[ok]]
    G, B = len(totals[0]), lay.B
    e = lay.elapsed([np.tile(n, B) for n in totals], np.repeat(np.arange(1, B + 1), G)).reshape(B, G)
    pick = np.argmin(e, axis=1)
    best_e = np.concatenate([[0.0], e[np.arange(B), pick]])
    best_layers = [full_batch_layers] + [
        spread_layers(stages, lay.keys, lay.counts, {k: int(n[i]) for k, n in zip(lay.keys, totals)})
        if np.isfinite(best_e[b + 1]) else full_batch_layers for b, i in enumerate(pick)]
    return best_e, best_layers, True


def best_split(table: CostTable, stages: list, links: list) -> tuple[tuple[int, ...], float, bool] | None:
    """(layers per stage, elapsed s, exact) minimising ``estimate_pipeline``'s elapsed time
    for a layout with ``stages`` ((group, tp, position) in order) and ``links`` ((sender,
    receiver, same node, sender TP) per link); None when no split runs one sequence.
    Grids above ``MAX_GRID_POINTS``: every ``stride``-th total per segment, then the full
    grid within one stride of the best, twice (not exact)."""
    if any(table.kind(*k) is None for k in dict.fromkeys(stages)):
        return None  # a stage kind that cannot hold one layer
    lay = _Layout(table, stages, links)
    ranges = lay.ranges()
    if any(len(r) == 0 for r in ranges):
        return None
    size = int(np.prod([len(r) for r in ranges[:-1]]))
    exact = size <= MAX_GRID_POINTS or len(ranges) == 1
    if exact:
        found = lay.grid(ranges[:-1], ranges[-1])
    else:
        stride = math.ceil((size / max(1, MAX_GRID_POINTS)) ** (1 / (len(ranges) - 1)))
        found = lay.grid([r[::stride] for r in ranges[:-1]], ranges[-1])
        for _ in range(2):
            if found is None:
                break
            axes = [r[(r >= x - stride) & (r <= x + stride)] for r, x in zip(ranges[:-1], found[1])]
            found = lay.grid(axes, ranges[-1])
            stride = max(1, stride // 2)
    if found is None:
        return None
    elapsed_s, totals = found
    return spread_layers(stages, lay.keys, lay.counts, dict(zip(lay.keys, totals))), elapsed_s, exact


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
