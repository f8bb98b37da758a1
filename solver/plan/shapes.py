"""Replica shapes: the columns of the planner's MILP, each with its best layer split.

A *shape* is a replica's pipeline without node ids: one or two *blocks* of stages, a block
being ``stages`` consecutive stages of TP ``tp`` on nodes of one group; the first block
holds the first stage, the last block the last stage. Within a block the stages either
*pack* nodes (G // t consecutive stages per node, their links inside the node) or *spread*
one stage per node. A shape's resource use is a list of node *chunks* (group, GPUs).

Best split. The stand-in for ``estimate_pipeline`` (docs/metrics.md, "planner objective"):
with m stages, per-micro-batch stage times p_k(n_k), d_k(n_k) from the cost table and
constant link times lp_l, ld_l,

    E(n) = sum_k p_k + sum_l lp_l + (m-1) max(max_k p_k, max_l lp_l)
           + O * max(m * max(max_k d_k, max_l ld_l), sum_k d_k + sum_l ld_l)

depends on the stage times only through their max and sum, so stages of the same kind
(group, t, position) are interchangeable: they form a *segment* whose layers are spread as
evenly as possible (optimal when the time is convex in n; the cost table checks it is
affine). The split is found by enumerating every vector of segment totals, which is exact
for the stand-in (grids above ``MAX_GRID_POINTS`` start from a memory-proportional split
instead). ``polish`` then hill-climbs on ``estimate_pipeline`` itself, whose serving model
(waves, prefill steps, engine overhead) the stand-in does not copy, and the shape's value
is ``estimate_pipeline`` on the final split.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from solver.cost.pipeline import estimate_pipeline
from solver.cost.stage import Stage
from solver.plan.candidates import CostTable, tp_degrees

# Largest grid of segment totals searched exactly (about 0.1 s of numpy).
MAX_GRID_POINTS = 2_000_000


@dataclass(frozen=True)
class Block:
    group: int
    tp: int
    stages: int
    spread: bool = False


@dataclass(frozen=True)
class Shape:
    blocks: tuple[Block, ...]

    @property
    def depth(self) -> int:
        return sum(b.stages for b in self.blocks)

    def stages(self) -> list[tuple[int, int, str]]:
        """(group, tp, position) per stage in pipeline order."""
        m, out = self.depth, []
        for b in self.blocks:
            for _ in range(b.stages):
                k = len(out)
                pos = "only" if m == 1 else "first" if k == 0 else "last" if k == m - 1 else "mid"
                out.append((b.group, b.tp, pos))
        return out

    def chunk_of_stage(self, gpus_per_node: list[int]) -> list[int]:
        """Index of the node chunk each stage sits in (stages of one chunk share a node)."""
        out, chunk = [], -1
        for b in self.blocks:
            per_node = 1 if b.spread else max(1, gpus_per_node[b.group] // b.tp)
            for i in range(b.stages):
                if i % per_node == 0:
                    chunk += 1
                out.append(chunk)
        return out

    def chunks(self, gpus_per_node: list[int]) -> list[tuple[int, int]]:
        """(group, GPUs) of every node chunk, in pipeline order."""
        sizes: dict[int, list] = {}
        for (g, t, _), c in zip(self.stages(), self.chunk_of_stage(gpus_per_node)):
            sizes.setdefault(c, [g, 0])[1] += t
        return [tuple(sizes[c]) for c in sorted(sizes)]

    def gpus(self) -> int:
        return sum(b.tp * b.stages for b in self.blocks)

    def label(self, names: list[str]) -> str:
        return " + ".join(f"{names[b.group]} TP{b.tp} x{b.stages}{' spread' if b.spread else ''}"
                          for b in self.blocks)


@dataclass(frozen=True)
class ShapeValue:
    shape: Shape
    layers: tuple[int, ...]
    throughput_tok_s: float  # estimate_pipeline on this split: the reported number
    standin_tok_s: float     # the stand-in formula above, for the same split
    bottleneck: str
    exact_split: bool = True  # False: grid too large, or polish moved the split (hill-climbing)


def shape_links(table: CostTable, shape: Shape) -> list[tuple[int, int, bool, int]]:
    """(sender group, receiver group, same node, sender TP) for each link of the shape."""
    st = shape.stages()
    ch = shape.chunk_of_stage([g.gpus_per_node for g in table.groups])
    return [(st[k][0], st[k + 1][0], ch[k] == ch[k + 1], st[k][1]) for k in range(len(st) - 1)]


def _segment_arrays(pre: np.ndarray, dec: np.ndarray, count: int, L: int):
    """For a segment of ``count`` stages sharing tables, arrays over its layer total N:
    max and sum of prefill and decode times with the N layers spread evenly (inf where
    infeasible)."""
    out = [np.full(L + 1, np.inf) for _ in range(4)]
    for total in range(count, L + 1):
        q, r = divmod(total, count)
        hi = pre[q + 1] if r else pre[q]
        if not np.isfinite(hi) or q < 1:
            continue
        out[0][total] = hi
        out[1][total] = r * pre[q + 1] + (count - r) * pre[q] if r else count * pre[q]
        out[2][total] = dec[q + 1] if r else dec[q]
        out[3][total] = r * dec[q + 1] + (count - r) * dec[q] if r else count * dec[q]
    return out


def best_split(table: CostTable, shape: Shape) -> tuple[tuple[int, ...], float] | None:
    """Layers per stage minimising the stand-in elapsed time, and that time; None when the
    shape cannot hold the model."""
    L, m, O = table.num_layers, shape.depth, table.workload.output_len
    stages = shape.stages()
    keys = list(dict.fromkeys(stages))  # segments in first-seen order
    counts = [stages.count(k) for k in keys]
    segs = [_segment_arrays(*table.times(g, t, pos, m), c, L) for (g, t, pos), c in zip(keys, counts)]
    links = [table.link_times(a, b, same, m, t) for a, b, same, t in shape_links(table, shape)]
    lp = [x[0] for x in links] or [0.0]
    ld = [x[1] for x in links] or [0.0]
    ranges = [np.arange(c, min(L, c * table.kinds[k].cap_layers) + 1) for k, c in zip(keys, counts)]
    if int(np.prod([len(r) for r in ranges[:-1]])) > MAX_GRID_POINTS:
        return _proportional(table, stages, keys, counts), float("inf")
    if len(keys) > 1:
        grids = [gr.ravel() for gr in np.meshgrid(*ranges[:-1], indexing="ij")]
    else:
        grids = []
    last = L - (sum(grids) if grids else np.zeros(1, dtype=int))
    ok = (last >= ranges[-1][0]) & (last <= ranges[-1][-1])
    if not np.any(ok):
        return None
    totals = [gr[ok] for gr in grids] + [last[ok]]
    maxp = np.max([s[0][n] for s, n in zip(segs, totals)], axis=0)
    sump = np.sum([s[1][n] for s, n in zip(segs, totals)], axis=0)
    maxd = np.max([s[2][n] for s, n in zip(segs, totals)], axis=0)
    sumd = np.sum([s[3][n] for s, n in zip(segs, totals)], axis=0)
    elapsed = (sump + sum(lp) + (m - 1) * np.maximum(maxp, max(lp))
               + O * np.maximum(m * np.maximum(maxd, max(ld)), sumd + sum(ld)))
    i = int(np.argmin(elapsed))
    if not np.isfinite(elapsed[i]):
        return None
    seg_total = {k: int(n[i]) for k, n in zip(keys, totals)}
    return _spread_layers(stages, keys, counts, seg_total), float(elapsed[i])


def _proportional(table: CostTable, stages, keys, counts) -> tuple[int, ...] | None:
    """Fallback start when the grid is too large: layers in proportion to memory caps
    (``polish`` then climbs from here; such splits are not proven best)."""
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
    return _spread_layers(stages, keys, counts, dict(zip(keys, totals)))


def _spread_layers(stages, keys, counts, seg_total) -> tuple[int, ...]:
    """Per-stage layers: each segment's total spread evenly, the extra layers to its
    earlier stages."""
    seen = {k: 0 for k in keys}
    out = []
    for k in stages:
        q, r = divmod(seg_total[k], counts[keys.index(k)])
        out.append(q + (1 if seen[k] < r else 0))
        seen[k] += 1
    return tuple(out)


def _estimate(table: CostTable, shape: Shape, layers: tuple[int, ...]):
    stages = [Stage(table.groups[g].profile, t, n, pos in ("only", "first"), pos in ("only", "last"))
              for (g, t, pos), n in zip(shape.stages(), layers)]
    gbps = [None if same else table.cluster.link_gbps(table.groups[a].spec, table.groups[b].spec)
            for a, b, same, _ in shape_links(table, shape)]
    return estimate_pipeline(table.model, table.workload, stages, gbps, table.runtime)


def _fits(table: CostTable, shape: Shape, layers: tuple[int, ...]) -> bool:
    return all(n <= table.kinds[k].cap_layers for k, n in zip(shape.stages(), layers))


def polish(table: CostTable, shape: Shape, layers: tuple[int, ...], est):
    """Hill-climb on ``estimate_pipeline`` itself: move one layer between two segments
    (each kept even) while the throughput rises. The stand-in ranks splits; this makes the
    chosen split a local optimum of the one throughput definition, whatever its internals."""
    stages = shape.stages()
    keys = list(dict.fromkeys(stages))
    counts = [stages.count(k) for k in keys]
    while len(keys) > 1:
        totals = {k: sum(n for s, n in zip(stages, layers) if s == k) for k in keys}
        best = None
        for a, b in itertools.permutations(keys, 2):
            if totals[a] - 1 < counts[keys.index(a)]:
                continue
            moved = dict(totals)
            moved[a], moved[b] = totals[a] - 1, totals[b] + 1
            cand = _spread_layers(stages, keys, counts, moved)
            if not _fits(table, shape, cand):
                continue
            e = _estimate(table, shape, cand)
            if e.throughput_tok_s > (best or est).throughput_tok_s * (1 + 1e-12):
                best, best_layers = e, cand
        if best is None:
            break
        est, layers = best, best_layers
    return layers, est


def evaluate(table: CostTable, shape: Shape, polish_split: bool = True) -> ShapeValue | None:
    """Best split of ``shape`` and its throughput from ``estimate_pipeline``."""
    found = best_split(table, shape)
    if found is None:
        return None
    layers, elapsed_s = found
    if layers is None:
        return None
    est = _estimate(table, shape, layers)
    grid_layers = layers
    if polish_split:
        layers, est = polish(table, shape, layers, est)
    if est.throughput_tok_s <= 0:
        return None
    tokens = table.workload.batch * (table.workload.prompt_len + table.workload.output_len)
    return ShapeValue(shape, layers, est.throughput_tok_s, tokens / elapsed_s, est.bottleneck,
                      exact_split=elapsed_s != float("inf") and layers == grid_layers)


# ---------------------------------------------------------------- enumeration

def _cap_sum(table: CostTable, blocks: list[tuple[int, int, int]]) -> int:
    """Most layers a block list can hold: the sum of its stages' caps (0 if a kind is missing)."""
    total = 0
    for g, t, pos in Shape(tuple(Block(g, t, c) for g, t, c in blocks)).stages():
        k = table.kind(g, t, pos)
        if k is None:
            return 0
        total += k.cap_layers
    return total


def _variants(blocks: list[tuple[int, int, int]], table: CostTable) -> list[Shape]:
    """Packed and (where different) spread placements of the same blocks."""
    packed = Shape(tuple(Block(g, t, c) for g, t, c in blocks))
    differs = any(c > 1 and table.groups[g].gpus_per_node // t > 1 for g, t, c in blocks)
    if not differs:
        return [packed]
    return [packed, Shape(tuple(Block(g, t, c, spread=True) for g, t, c in blocks))]


def _count_vectors(table: CostTable, kinds: tuple, gpus: list[int], extra: int):
    """Stage counts per block that hold the model and fit the pool's GPUs: every vector whose
    depth is at most ``extra`` above the shallowest feasible one."""
    L = table.num_layers
    limits = []
    for g, t in kinds:
        same = [i for i, (gg, _) in enumerate(kinds) if gg == g]
        limits.append(min(L, gpus[g] // t // len(same)))
    if min(limits, default=0) < 1:
        return []
    feasible = []
    for counts in itertools.product(*(range(1, n + 1) for n in limits)):
        if sum(counts) > L:
            continue
        per_group: dict[int, int] = {}
        for (g, t), c in zip(kinds, counts):
            per_group[g] = per_group.get(g, 0) + c * t
        if any(v > gpus[g] for g, v in per_group.items()):
            continue
        if _cap_sum(table, [(g, t, c) for (g, t), c in zip(kinds, counts)]) >= L:
            feasible.append(counts)
    if not feasible:
        return []
    shallowest = min(sum(c) for c in feasible)
    return [c for c in feasible if sum(c) <= shallowest + extra]


def default_max_blocks(gpus: int, num_layers: int) -> int:
    """4 blocks where exhaustive search is the check (<= 12 GPUs, <= 16 layers), else 2:
    deeper block sequences multiply the shapes (thousands for 16 GPUs and 80 layers) and
    each needs a larger split search."""
    return 4 if gpus <= 12 and num_layers <= 16 else 2


def enumerate_shapes(table: CostTable, extra_stages: int = 2, max_blocks: int | None = None) -> list[Shape]:
    """Every sequence of up to ``max_blocks`` blocks (consecutive blocks differ in group or
    TP; default from ``default_max_blocks``) with stage counts from
    ``_count_vectors`` -- one-block shapes up to ``extra_stages`` deeper than the
    shallowest, multi-block ones up to one deeper -- in packed and spread placements."""
    groups = table.groups
    gpus = [g.nodes * g.gpus_per_node for g in groups]
    if max_blocks is None:
        max_blocks = default_max_blocks(sum(gpus), table.num_layers)
    kinds = [(g.index, t) for g in groups for t in tp_degrees(table.model, g.gpus_per_node)
             if any(table.kind(g.index, t, p) for p in ("only", "first", "mid", "last"))]
    out: list[Shape] = []
    for k in range(1, max_blocks + 1):
        for seq in itertools.product(kinds, repeat=k):
            if any(a == b for a, b in zip(seq, seq[1:])):
                continue
            for counts in _count_vectors(table, seq, gpus, extra_stages if k == 1 else 1):
                out.extend(_variants([(g, t, c) for (g, t), c in zip(seq, counts)], table))
    return out
