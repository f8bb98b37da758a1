"""Put replicas of shapes on concrete nodes.

The MILP decides how many nodes of each group are cut into which chunk configuration;
here those nodes get indices and every replica's chunks get a node. Chunks of one replica
go to different nodes where possible, so the links the shape assumed between chunks are
the links it gets; the reported throughput is recomputed on the placement anyway.
"""

from __future__ import annotations

import dataclasses

from solver.cost.pipeline import estimate_pipeline
from solver.cost.stage import Stage
from solver.errors import InfeasibleError
from solver.plan.candidates import CostTable
from solver.plan.result import PlacedReplica, PlacedStage, Plan
from solver.plan.share import envelope, split_batch
from solver.plan.shapes import ShapeValue
from solver.plan.split import batch_elapsed


def _slots_from_configs(table: CostTable, configs: dict) -> dict[int, list[list[int]]]:
    """group -> per node, the chunk sizes still free on it."""
    slots = {g.index: [] for g in table.groups}
    for (g, q), count in sorted(configs.items()):
        slots[g].extend([list(q) for _ in range(count)])
    return slots


def _free_gpus(table: CostTable) -> dict[int, list[list[int]]]:
    """Without configurations: each node is one free pool of GPUs (first fit)."""
    return {g.index: [[g.gpus_per_node] for _ in range(g.nodes)] for g in table.groups}


def _take(nodes: list[list[int]], size: int, avoid: set[int], exact: bool) -> int | None:
    order = [i for i in range(len(nodes)) if i not in avoid] + sorted(avoid)
    for i in order:
        free = nodes[i]
        if exact and size in free:
            free.remove(size)
            return i
        if not exact and free[0] >= size:
            free[0] -= size
            return i
    return None


def place(table: CostTable, picks: list[tuple[ShapeValue, int]], configs: dict | None = None,
          nic_steps: dict | None = None) -> Plan:
    """Replicas for ``picks`` ((shape value, copies)) on concrete nodes; with ``configs``
    (the MILP's node configurations) chunks fill configured slots, else first fit. In a
    group whose slots carry NIC steps (``milp.Column.items``) a chunk takes the slot of its
    (GPUs, send, receive) steps, ``nic_steps``: shape -> steps per chunk."""
    exact = configs is not None
    nodes = _slots_from_configs(table, configs) if exact else _free_gpus(table)
    nic_groups = {g for (g, q) in (configs or {}) if any(not isinstance(it, int) for it in q)}
    gpn = [g.gpus_per_node for g in table.groups]
    replicas = []
    for sv, copies in picks:
        stages = sv.shape.stages()
        chunk_of = sv.shape.chunk_of_stage(gpn)
        steps = (nic_steps or {}).get(sv.shape) or [(0, 0)] * len(sv.shape.chunks(gpn))
        for _ in range(copies):
            used: dict[int, set[int]] = {}
            node_of_chunk = {}
            for c, ((g, z), st) in enumerate(zip(sv.shape.chunks(gpn), steps)):
                i = _take(nodes[g], (z, *st) if g in nic_groups else z, used.setdefault(g, set()), exact)
                if i is None:
                    raise InfeasibleError(f"internal: no free node of group {table.groups[g].name} "
                                          f"for a chunk of {z} GPUs")
                used[g].add(i)
                node_of_chunk[c] = i
            placed, first = [], 0
            for (g, t, _), n, c in zip(stages, sv.layers, chunk_of):
                grp = table.groups[g]
                placed.append(PlacedStage(grp.name, node_of_chunk[c], grp.spec.gpu, t, first, n))
                first += n
            replicas.append(evaluate_replica(table, placed, sv.shape.label([g.name for g in table.groups])))
    return Plan(tuple(replicas))


def replica_stages(table: CostTable, stages: list[PlacedStage]) -> tuple[list[Stage], list]:
    """Cost-model stages of a placed replica and the link GB/s between them (None inside a node)."""
    by_name = {g.name: g for g in table.groups}
    m = len(stages)
    cost_stages = [Stage(by_name[s.group].profile, s.tp, s.n_layers, k == 0, k == m - 1)
                   for k, s in enumerate(stages)]
    links = []
    for a, b in zip(stages, stages[1:]):
        same = a.node_id == b.node_id
        links.append(None if same else table.cluster.link_gbps(by_name[a.group].spec, by_name[b.group].spec))
    return cost_stages, links


def evaluate_replica(table: CostTable, stages: list[PlacedStage], label: str = "",
                     batch: int | None = None) -> PlacedReplica:
    """Throughput of a placed replica by ``estimate_pipeline`` (links from its nodes), serving
    the workload's batch or, given ``batch``, its share of a shared batch."""
    by_name = {g.name: g for g in table.groups}
    cost_stages, links = replica_stages(table, stages)
    wl = table.workload if batch is None else dataclasses.replace(table.workload, batch=batch)
    est = estimate_pipeline(table.model, wl, cost_stages, links, table.runtime)
    usd = sum(s.tp * by_name[s.group].usd_per_gpu_hour for s in stages)
    conc = est.concurrency
    return PlacedReplica(tuple(stages), est.throughput_tok_s, usd, est.bottleneck, label,
                         conc.seqs if conc else 0, conc.waves if conc else (), batch or 0, est.elapsed_s)


def _kinds_and_links(table: CostTable, stages: list[PlacedStage]):
    """(group, TP, position) per stage and (sender, receiver, same node, sender TP) per link."""
    index = {g.name: g.index for g in table.groups}
    m = len(stages)
    kinds = [(index[s.group], s.tp, "only" if m == 1 else "first" if k == 0 else "last" if k == m - 1 else "mid")
             for k, s in enumerate(stages)]
    links = [(index[a.group], index[b.group], a.node_id == b.node_id, a.tp) for a, b in zip(stages, stages[1:])]
    return kinds, links


def share_batch(table: CostTable, plan: Plan | None) -> Plan | None:
    """``plan``'s replicas sharing the workload's batch: the makespan-optimal split
    (``share.split_batch``), each replica re-evaluated on its share; replicas left without
    a sequence are dropped. None when the replicas cannot serve the batch."""
    if plan is None or not plan.replicas:
        return None
    envs = []
    for rep in plan.replicas:
        kinds, links = _kinds_and_links(table, list(rep.stages))
        envs.append(envelope(batch_elapsed(table, kinds, links, tuple(s.n_layers for s in rep.stages))))
    found = split_batch(envs, table.workload.batch)
    if found is None:
        return None
    _, shares = found
    reps = tuple(evaluate_replica(table, list(r.stages), r.shape, b) for r, b in zip(plan.replicas, shares) if b > 0)
    wl = table.workload
    return Plan(reps, wl.prompt_len + wl.output_len)
