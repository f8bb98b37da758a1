"""The planner's search space: replica layouts the runtime can launch, within stated bounds.

A layout (``Shape``) is one TP degree t and a sequence of *blocks*, each ``s`` consecutive
stages on nodes of one group, cut into node *chunks* (stages per node). Enumeration:

- every t (a power of two dividing the heads, at most a node);
- every sequence of up to ``max_blocks`` blocks, consecutive blocks of different groups;
- every vector of stage counts that holds the model (sum of the stages' memory caps >= L,
  at most L stages, no group asked for more nodes than it has), from the shallowest such
  depth up to ``extra_stages`` deeper (no depth bound when ``extra_stages`` is None);
- node splits of each block: every partition into chunks of at most gpus_per_node // t
  stages for blocks of up to ``ALL_SPLITS_UPTO`` stages; for deeper blocks: packed (full
  nodes plus one remainder), even over the fewest nodes, and one stage per node;
- only chunk orders the runtime launches as planned (``solver.plan.launch``).

``Bounds.describe`` is the sentence the plan's status carries; ``Bounds.complete`` is True
when no bound cuts anything for this model (every launchable layout is enumerated).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from solver.plan.candidates import CostTable, tp_degrees
from solver.plan.launch import vllm_order_ok
from solver.plan.shapes import Block, Shape

# Blocks of at most this many stages get every node split (22 partitions of 8).
ALL_SPLITS_UPTO = 8
# Models of at most this many layers are searched without a depth bound by default.
UNBOUNDED_DEPTH_LAYERS = 16
_MISSING = -10**9  # cap of a stage kind that cannot hold a layer: poisons any vector using it


@dataclass(frozen=True)
class Bounds:
    max_blocks: int
    extra_stages: int | None  # None: every depth up to the number of layers

    @staticmethod
    def default(num_layers: int, gpus: int, max_blocks: int | None = None,
                extra_stages: int | None = -1) -> "Bounds":
        """4 blocks where brute force is the check (<= 12 GPUs, <= 16 layers), else 2; no
        depth bound for models of <= 16 layers, else 2 stages beyond the shallowest."""
        if max_blocks is None:
            max_blocks = 4 if gpus <= 12 and num_layers <= UNBOUNDED_DEPTH_LAYERS else 2
        if extra_stages == -1:
            extra_stages = None if num_layers <= UNBOUNDED_DEPTH_LAYERS else 2
        return Bounds(max_blocks, extra_stages)

    def active(self, num_layers: int) -> list[str]:
        """The bounds that cut something for a model of ``num_layers`` layers."""
        out = []
        if self.max_blocks < num_layers:
            out.append(f"at most {self.max_blocks} blocks (runs of stages on one node group) per replica")
        if self.extra_stages is not None:
            out.append(f"pipelines at most {self.extra_stages} stages deeper than the shallowest that fits "
                       "(per block sequence)")
        if num_layers > ALL_SPLITS_UPTO:
            out.append(f"blocks of more than {ALL_SPLITS_UPTO} stages only packed, even over the fewest "
                       "nodes, or one stage per node")
        return out

    def complete(self, num_layers: int) -> bool:
        return not self.active(num_layers)

    def describe(self, num_layers: int, runtime: str) -> str:
        head = f"replica layouts {runtime} can launch (one TP size per replica, nodes in its rank order)"
        bounds = self.active(num_layers)
        if not bounds:
            return head + ", all of them (no bound applies); best layer split per layout"
        return head + "; bounds: " + "; ".join(bounds) + "; best layer split per layout"


def _partitions(s: int, most: int, largest: int):
    """Ascending tuples of positive parts summing to ``s``, each <= ``largest``, at most
    ``most`` parts."""
    def rec(left, lo, parts):
        if left == 0:
            yield tuple(parts)
            return
        if len(parts) >= most:
            return
        for x in range(lo, min(left, largest) + 1):
            if left - x == 0 or left - x >= x:
                yield from rec(left - x, x, parts + [x])
    yield from rec(s, 1, [])


def node_splits(s: int, per_node: int, nodes: int) -> list[tuple[int, ...]]:
    """Ascending chunk tuples (stages per node) for a block of ``s`` stages."""
    if s <= ALL_SPLITS_UPTO:
        return list(_partitions(s, nodes, per_node))
    fewest = -(-s // per_node)
    out = []
    if fewest <= nodes:
        r = s - (fewest - 1) * per_node
        out.append((r,) + (per_node,) * (fewest - 1))
        q, rem = divmod(s, fewest)
        out.append((q,) * (fewest - rem) + (q + 1,) * rem)
    if s <= nodes:
        out.append((1,) * s)
    return list(dict.fromkeys(out))


def _caps(table: CostTable, g: int, t: int) -> dict[str, int]:
    return {p: (k.cap_layers if (k := table.kind(g, t, p)) else _MISSING) for p in ("only", "first", "mid", "last")}


def _count_vectors(table: CostTable, seq: tuple[int, ...], t: int, extra: int | None):
    """Stage counts per block of ``seq`` (groups) that hold the model, shallowest depth
    first, up to ``extra`` deeper."""
    L, k = table.num_layers, len(seq)
    groups = table.groups
    caps = [_caps(table, g, t) for g in seq]
    per_node = [groups[g].gpus_per_node // t for g in seq]
    # most stages a block can take: its group's nodes (shared with other blocks of the group)
    most = [min(L, groups[g].nodes * p) for g, p in zip(seq, per_node)]
    out, dmin = [], None
    for d in range(k, L + 1):
        if dmin is not None and extra is not None and d > dmin + extra:
            break
        if k == 1:
            vecs = np.array([[d]]) if d <= most[0] else np.zeros((0, 1), dtype=int)
        else:
            cuts = np.array(list(itertools.combinations(range(1, d), k - 1)), dtype=int).reshape(-1, k - 1)
            bounds = np.hstack([np.zeros((len(cuts), 1), int), cuts, np.full((len(cuts), 1), d)])
            vecs = np.diff(bounds, axis=1)
            vecs = vecs[np.all(vecs <= np.array(most), axis=1)]
        if len(vecs) == 0:
            if d > sum(most):
                break
            continue
        mid = np.array([c["mid"] for c in caps])
        if d == 1:
            capsum = np.full(len(vecs), caps[0]["only"])
        else:
            capsum = vecs @ mid - mid[0] + caps[0]["first"] - mid[-1] + caps[-1]["last"]
        ok = capsum >= L
        nodes_ok = np.ones(len(vecs), dtype=bool)
        for g in set(seq):
            idx = [i for i, x in enumerate(seq) if x == g]
            need = sum(-(-vecs[:, i] // per_node[i]) for i in idx)
            nodes_ok &= need <= groups[g].nodes
        vecs = vecs[ok & nodes_ok]
        if len(vecs):
            dmin = d if dmin is None else dmin
            out.extend(tuple(int(x) for x in v) for v in vecs)
    return out


def _layouts(table: CostTable, seq: tuple[int, ...], t: int, counts: tuple[int, ...], runtime: str):
    """Shapes for one stage-count vector: node splits of each block that the runtime
    launches in this order, each group's chunks on distinct nodes."""
    groups = table.groups
    options = []
    for i, (g, s) in enumerate(zip(seq, counts)):
        splits = node_splits(s, groups[g].gpus_per_node // t, groups[g].nodes)
        if i == 0:  # the head chunk leads: the largest, so the rest ascend from the smallest
            splits = [sp[-1:] + sp[:-1] for sp in splits]
        options.append(splits)
    for combo in itertools.product(*options):
        used: dict[int, int] = {}
        for g, sp in zip(seq, combo):
            used[g] = used.get(g, 0) + len(sp)
        if any(n > groups[g].nodes for g, n in used.items()):
            continue
        chunks = [(g, c * t) for g, sp in zip(seq, combo) for c in sp]
        if runtime == "vllm" and not vllm_order_ok(chunks):
            continue
        yield Shape(tuple(Block(g, t, s, sp) for g, s, sp in zip(seq, counts, combo)))


def enumerate_shapes(table: CostTable, bounds: Bounds, runtime: str = "vllm") -> list[Shape]:
    """Every layout of the search space (module docstring)."""
    out: list[Shape] = []
    all_t = sorted({t for g in table.groups for t in tp_degrees(table.model, g.gpus_per_node)})
    for t in all_t:
        usable = [g.index for g in table.groups if g.gpus_per_node >= t
                  and any(table.kind(g.index, t, p) for p in ("only", "first", "mid", "last"))]
        for k in range(1, min(bounds.max_blocks, table.num_layers) + 1):
            for seq in itertools.product(usable, repeat=k):
                if any(a == b for a, b in zip(seq, seq[1:])):
                    continue
                for counts in _count_vectors(table, seq, t, bounds.extra_stages):
                    out.extend(_layouts(table, seq, t, counts, runtime))
    return out
