"""Baselines the planner reports beside its answer, and its warm start.

- ``best_homogeneous``: the best single pipeline shape of one GPU type (packed on nodes),
  replicated as often as that type's nodes allow (what one picks without a planner).
- ``greedy_layer_filling``: Petals-style: GPU groups fastest first (HBM bandwidth: decode is
  memory-bound), each stage the smallest TP degree that holds a layer, filled with as many
  layers as its memory takes, until a replica holds the model; repeat while GPUs last.
- ``warm_start``: the homogeneous plan written as MILP variables.
"""

from __future__ import annotations

import dataclasses
import math

from solver.plan.assign import evaluate_replica, place
from solver.plan.candidates import CostTable, tp_degrees
from solver.plan.result import PlacedStage, Plan
from solver.plan.shapes import ShapeValue


def copies_that_fit(table: CostTable, sv: ShapeValue) -> int:
    """Replicas of a one-type shape its group can host (first fit of its chunks)."""
    g = sv.shape.blocks[0].group
    gpn = table.groups[g].gpus_per_node
    free = [gpn] * table.groups[g].nodes
    sizes = [z for _, z in sv.shape.chunks([x.gpus_per_node for x in table.groups])]
    copies = 0
    while True:
        trial = list(free)
        for z in sizes:
            i = next((i for i, f in enumerate(trial) if f >= z), None)
            if i is None:
                return copies
            trial[i] -= z
        free, copies = trial, copies + 1


def _packed(table: CostTable, block) -> bool:
    """The block sits on the fewest nodes its stages fit."""
    per_node = table.groups[block.group].gpus_per_node // block.tp
    return len(block.chunks) == -(-block.stages // per_node)


def best_homogeneous(table: CostTable, values: list[ShapeValue], objective: str = "throughput",
                     min_tok_s: float = 0.0, max_replicas: int | None = None) -> tuple[ShapeValue, int] | None:
    """(shape, copies) of the best one-type packed plan; None when no such plan exists."""
    best, best_key = None, None
    for sv in values:
        if len(sv.shape.blocks) != 1 or not _packed(table, sv.shape.blocks[0]):
            continue
        most = copies_that_fit(table, sv)
        if max_replicas is not None:
            most = min(most, max_replicas)
        if most == 0:
            continue
        if objective == "throughput":
            copies = most
            key = -copies * sv.throughput_tok_s
        else:
            copies = max(1, math.ceil(min_tok_s / sv.throughput_tok_s - 1e-12))
            if copies > most:
                continue
            usd = copies * sum(b.tp * b.stages * table.groups[b.group].usd_per_gpu_hour for b in sv.shape.blocks)
            key = (usd, -copies * sv.throughput_tok_s)
        if best_key is None or key < best_key:
            best, best_key = (sv, copies), key
    return best


def homogeneous_plan(table: CostTable, pick: tuple[ShapeValue, int] | None) -> Plan | None:
    return None if pick is None else place(table, [pick])


def _group_order(table: CostTable) -> list[int]:
    return sorted(range(len(table.groups)), key=lambda i: -table.groups[i].profile.hbm_gbps.value)




def _greedy_cap(table: CostTable, g: int, t: int, pos: str) -> int:
    """Layers a greedy stage takes: as many as keep the whole batch resident (Petals-style
    servers fill memory with blocks but keep room for the attention caches they serve),
    else as many as leave room for one sequence."""
    return table.batch_cap_layers(g, t, pos) or table.kind(g, t, pos).cap_layers


def _one_greedy_replica(table: CostTable, free: dict[int, list[int]]) -> list[PlacedStage] | None:
    """The first TP degree (smallest first) with which greedy filling holds the model."""
    degrees = sorted({t for g in table.groups for t in tp_degrees(table.model, g.gpus_per_node)})
    for t in degrees:
        stages = _greedy_fill(table, free, t)
        if stages is not None:
            return _rank_order(stages)
    return None


def _rank_order(stages: list[PlacedStage]) -> list[PlacedStage]:
    """The same stages with their nodes in the order vLLM ranks them (solver/plan/launch.py):
    the first node leads, the others by increasing GPU count; layers re-numbered in that
    order, each stage keeping its count. (The validator refuses the replica if a stage no
    longer fits at its new position.)"""
    runs: list[list[PlacedStage]] = []
    for s in stages:
        if runs and runs[-1][0].node_id == s.node_id:
            runs[-1].append(s)
        else:
            runs.append([s])
    ordered = runs[:1] + sorted(runs[1:], key=lambda r: (sum(s.tp for s in r), r[0].group))
    out, first = [], 0
    for s in (s for run in ordered for s in run):
        out.append(dataclasses.replace(s, first_layer=first))
        first += s.n_layers
    return out


def _greedy_fill(table: CostTable, free: dict[int, list[int]], t: int) -> list[PlacedStage] | None:
    """Fill stages of TP ``t`` until the model is held (one TP per replica: what vLLM
    launches); takes GPUs from ``free`` only on success."""
    L, stages, layer = table.num_layers, [], 0
    trial = {g: list(v) for g, v in free.items()}
    for g in _group_order(table):
        grp = table.groups[g]
        if t > grp.gpus_per_node or table.kind(g, t, "mid" if L > 1 else "only") is None:
            continue
        for i in range(grp.nodes):
            while trial[g][i] >= t and layer < L:
                first = layer == 0
                last_pos = "only" if first else "last"
                rest = L - layer
                if table.kind(g, t, last_pos) is not None and _greedy_cap(table, g, t, last_pos) >= rest:
                    n = rest
                else:
                    pos = "first" if first else "mid"
                    if table.kind(g, t, pos) is None:
                        break
                    n = min(_greedy_cap(table, g, t, pos), rest - 1)
                    if n < 1:
                        break
                trial[g][i] -= t
                stages.append(PlacedStage(grp.name, i, grp.spec.gpu, t, layer, n))
                layer += n
            if layer >= L:
                free.update(trial)
                return stages
    return None


def greedy_layer_filling(table: CostTable, objective: str = "throughput", min_tok_s: float = 0.0,
                         max_replicas: int | None = None) -> Plan | None:
    free = {g.index: [g.gpus_per_node] * g.nodes for g in table.groups}
    replicas = []
    while max_replicas is None or len(replicas) < max_replicas:
        if objective == "cost" and sum(r.throughput_tok_s for r in replicas) >= min_tok_s:
            break
        stages = _one_greedy_replica(table, free)
        if stages is None:
            break
        replica = evaluate_replica(table, stages, "greedy")
        # a pipeline that fills memory layer by layer can leave no room for one sequence's
        # KV under the serving model (estimate_pipeline scores it 0): its GPUs stay unused
        if replica.throughput_tok_s > 0:
            replicas.append(replica)
    return Plan(tuple(replicas)) if replicas else None


def warm_start(milp, columns_shapes: list[ShapeValue], pick: tuple[ShapeValue, int] | None):
    """(counts, node configurations) for ``milp`` from the homogeneous pick, or None."""
    if pick is None:
        return None
    sv, copies = pick
    try:
        s = next(i for i, c in enumerate(columns_shapes) if c.shape == sv.shape)
    except StopIteration:
        return None
    gpn = milp.gpn
    g = sv.shape.blocks[0].group
    free = [[] for _ in range(milp.nodes[g])]
    for _ in range(copies):
        for _, z in sv.shape.chunks(gpn):
            i = next(i for i, used in enumerate(free) if sum(used) + z <= gpn[g])
            free[i].append(z)
    configs: dict = {}
    for used in free:
        if not used:
            continue
        q = next((q for q in milp.configs[g] if all(q.count(z) >= used.count(z) for z in used)), None)
        if q is None:
            return None
        configs[(g, q)] = configs.get((g, q), 0) + 1
    return {s: copies}, configs

