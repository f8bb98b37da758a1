"""Replica shapes: the columns of the planner's MILP, each with its best layer split.

A *shape* is a replica's pipeline without node ids: one TP degree and a sequence of
*blocks*, a block being ``stages`` consecutive stages on nodes of one group, cut into node
*chunks* (consecutive stages on one node: links inside a chunk stay in the node); the first
block holds the first stage, the last block the last stage. A shape's resource use is its
list of chunks (group, GPUs). ``solver.plan.space`` enumerates the shapes.

Best split: ``solver.plan.split`` (``estimate_pipeline``'s own elapsed time, vectorised over
every split, KV-limited waves included; coarse to fine where the grid is too large, marked
heuristic). The shape's value is that elapsed time's throughput.
"""

from __future__ import annotations

from dataclasses import dataclass

from solver.cost.pipeline import estimate_pipeline
from solver.cost.stage import Stage
from solver.plan.candidates import CostTable
from solver.plan.split import best_split


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

    def signature(self) -> tuple:
        """What a copy takes from the pool: its chunks (group, GPUs) with whether each sends
        to / receives from another node (the NIC rows see the direction), sorted."""
        ch = self.chunks()
        return tuple(sorted((g, z, i < len(ch) - 1, i > 0) for i, (g, z) in enumerate(ch)))

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
    throughput_tok_s: float  # estimate_pipeline's throughput on this split (the MILP's v_s)
    bottleneck: str          # "" until placed (exact splits)
    exact_split: bool = True  # False: grid too large, searched coarse to fine


def shape_links(table: CostTable, shape: Shape) -> list[tuple[int, int, bool, int]]:
    """(sender group, receiver group, same node, sender TP) for each link of the shape."""
    st = shape.stages()
    ch = shape.chunk_of_stage([g.gpus_per_node for g in table.groups])
    return [(st[k][0], st[k + 1][0], ch[k] == ch[k + 1], st[k][1]) for k in range(len(st) - 1)]


def shape_stages(table: CostTable, shape: Shape, layers: tuple[int, ...]) -> tuple[list[Stage], list]:
    """Cost-model stages of ``shape`` split as ``layers``, and the link GB/s between them
    (None inside a node): what ``estimate_pipeline`` and the online model take."""
    stages = [Stage(table.groups[g].profile, t, n, pos in ("only", "first"), pos in ("only", "last"))
              for (g, t, pos), n in zip(shape.stages(), layers)]
    gbps = [None if same else table.cluster.link_gbps(table.groups[a].spec, table.groups[b].spec)
            for a, b, same, _ in shape_links(table, shape)]
    return stages, gbps


def _estimate(table: CostTable, shape: Shape, layers: tuple[int, ...]):
    stages, gbps = shape_stages(table, shape, layers)
    return estimate_pipeline(table.model, table.workload, stages, gbps, table.runtime)


def _fits(table: CostTable, shape: Shape, layers: tuple[int, ...]) -> bool:
    return all(n <= table.kinds[k].cap_layers for k, n in zip(shape.stages(), layers))


def evaluate(table: CostTable, shape: Shape) -> ShapeValue | None:
    """Best split of ``shape`` (``solver.plan.split``) and its throughput: the split search's
    elapsed time is ``estimate_pipeline``'s (the same formula, tested), so it is the value.
    The bottleneck is named when a replica is placed (``assign.evaluate_replica``)."""
    found = best_split(table, shape.stages(), shape_links(table, shape))
    if found is None:
        return None
    layers, elapsed_s, exact = found
    tokens = table.workload.batch * (table.workload.prompt_len + table.workload.output_len)
    return ShapeValue(shape, layers, tokens / elapsed_s, "", exact_split=exact)
