"""Replica shapes: the columns of the planner's MILP, each with its best layer split.

A *shape* is a replica's pipeline without node ids: one TP degree and a sequence of
*blocks*, a block being ``stages`` consecutive stages on nodes of one group, cut into node
*chunks* (consecutive stages on one node: links inside a chunk stay in the node); the first
block holds the first stage, the last block the last stage. A shape's resource use is its
list of chunks (group, GPUs). ``solver.plan.space`` enumerates the shapes.

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
from solver.plan.candidates import CostTable

# Largest grid of segment totals searched exactly (about 0.1 s of numpy).
MAX_GRID_POINTS = 2_000_000


@dataclass(frozen=True)
class Block:
    """``stages`` consecutive stages of TP ``tp`` on nodes of group ``group``; ``chunks``:
    stages per node, in vLLM rank order (see ``solver.plan.launch``)."""
    group: int
    tp: int
    stages: int
    chunks: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.chunks:
            object.__setattr__(self, "chunks", (self.stages,))
        if sum(self.chunks) != self.stages:
            raise ValueError(f"chunks {self.chunks} do not sum to {self.stages} stages")


@dataclass(frozen=True)
class Shape:
    blocks: tuple[Block, ...]

    @property
    def depth(self) -> int:
        return sum(b.stages for b in self.blocks)

    @property
    def tp(self) -> int:
        return self.blocks[0].tp

    def stages(self) -> list[tuple[int, int, str]]:
        """(group, tp, position) per stage in pipeline order."""
        m, out = self.depth, []
        for b in self.blocks:
            for _ in range(b.stages):
                k = len(out)
                pos = "only" if m == 1 else "first" if k == 0 else "last" if k == m - 1 else "mid"
                out.append((b.group, b.tp, pos))
        return out

    def chunk_of_stage(self, gpus_per_node: list[int] | None = None) -> list[int]:
        """Index of the node chunk each stage sits in (stages of one chunk share a node)."""
        out, chunk = [], -1
        for b in self.blocks:
            for c in b.chunks:
                chunk += 1
                out.extend([chunk] * c)
        return out

    def chunks(self, gpus_per_node: list[int] | None = None) -> list[tuple[int, int]]:
        """(group, GPUs) of every node chunk, in pipeline (= vLLM rank) order."""
        return [(b.group, c * b.tp) for b in self.blocks for c in b.chunks]

    def value_key(self) -> tuple:
        """What the throughput depends on: per block (group, TP, stages, nodes). Where in a
        block its inter-node links fall changes neither the stand-in nor
        ``estimate_pipeline`` (both use link times through their max and sum)."""
        return tuple((b.group, b.tp, b.stages, len(b.chunks)) for b in self.blocks)

    def gpus(self) -> int:
        return sum(b.tp * b.stages for b in self.blocks)

    def label(self, names: list[str]) -> str:
        def nodes(b):
            return "" if len(b.chunks) == 1 else f" over {'+'.join(map(str, b.chunks))}"
        return " + ".join(f"{names[b.group]} TP{b.tp} x{b.stages}{nodes(b)}" for b in self.blocks)


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
