"""Independent check of a plan: shares no code with the MILP, the candidates or the
heuristics -- it reads the placed plan and recomputes everything from the cost model.

Checks: every replica holds each layer exactly once, in order; each stage is a power-of-two
TP group dividing the heads, inside one real node; no GPU is used twice; every replica is
launchable by the runtime (``_launch_problems``: one TP size; for vLLM each node's stages
consecutive and the nodes in the order vLLM ranks Ray workers); memory per GPU
fits the serving model's rule, by its own sum of ``solver.cost.memory`` terms: weights +
runtime overhead + the activation peak of one engine prefill step (``max_num_batched_tokens``
tokens) + KV blocks for the concurrency the replica reports, at full context, <=
gpu_memory_utilization x capacity, with at least one sequence; the concurrency, waves,
throughput and $/h each replica reports equal ``estimate_pipeline`` on its placement
(links: same node -> inside the node, else the cluster's NIC rate between the two nodes'
groups); every node's NIC carries, per direction, at most its nic_gbps: the sum over the
replicas' links leaving (entering) the node of recomputed tokens/s x activation bytes per
token (``solver.cost.stage.activation_bytes``), a time average over the run.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

from solver.cost.engine_memory import stage_budget
from solver.cost.memory import StageMemory, kv_bytes_per_token
from solver.cost.pipeline import estimate_pipeline
from solver.cost.serving import ServingConfig, serving_config
from solver.cost.stage import Stage, activation_bytes
from solver.inputs.cluster import Cluster
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile, profile_for
from solver.inputs.workload import Workload
from solver.units import GB

# Relative tolerance on recomputed throughput: the same deterministic arithmetic, so only
# float noise from summation order is allowed.
REL_TOL = 1e-9


class PlanInvalid(AssertionError):
    """A plan that breaks a rule; the message lists every problem found."""


def _stage_problems(r: int, stages, model: ModelSpec, groups: dict) -> list[str]:
    out, expect = [], 0
    for k, s in enumerate(stages):
        where = f"replica {r} stage {k}"
        g = groups.get(s.group)
        if g is None:
            out.append(f"{where}: unknown node group {s.group!r}")
            continue
        if not 0 <= s.node_index < g.count:
            out.append(f"{where}: node {s.node_id} does not exist (group has {g.count})")
        if s.tp < 1 or s.tp & (s.tp - 1) or model.num_heads % s.tp or s.tp > g.gpus_per_node:
            out.append(f"{where}: TP {s.tp} is not a power of two dividing {model.num_heads} heads "
                       f"within {g.gpus_per_node} GPUs per node")
        if s.first_layer != expect or s.n_layers < 1:
            out.append(f"{where}: layers start at {s.first_layer} (expected {expect}), count {s.n_layers}")
        expect = s.first_layer + s.n_layers
    if expect != model.num_layers:
        out.append(f"replica {r}: holds layers 0..{expect - 1}, the model has {model.num_layers}")
    return out


def _launch_problems(r: int, stages, runtime: str, groups: dict) -> list[str]:
    """One TP size per replica (vLLM and Megatron take one --tensor-parallel-size). vLLM
    with Ray ranks workers by (not the driver node, workers on the node, node IP): the
    first stage's node leads, then nodes by increasing GPU count; nodes with equal counts
    go by IP, unknown here, so they must be of one node group; a node's stages are
    consecutive ranks."""
    tps = sorted({s.tp for s in stages})
    out = []
    if len(tps) > 1:
        out.append(f"replica {r}: stages use TP {' and '.join(map(str, tps))}; {runtime} launches one "
                   "tensor-parallel size per replica")
    if runtime != "vllm":
        return out
    runs: list[list] = []  # [node id, group, GPUs] per run of consecutive stages on one node
    for s in stages:
        if runs and runs[-1][0] == s.node_id:
            runs[-1][2] += s.tp
        else:
            runs.append([s.node_id, s.group, s.tp])
    nodes = [x[0] for x in runs]
    if len(set(nodes)) < len(nodes):
        out.append(f"replica {r}: a node holds non-consecutive stages ({', '.join(nodes)}); vLLM gives a "
                   "node's GPUs consecutive ranks")
    for a, b in zip(runs[1:], runs[2:]):
        if b[2] < a[2] or (b[2] == a[2] and a[1] != b[1]):
            out.append(f"replica {r}: node {b[0]} ({b[2]} GPUs) follows {a[0]} ({a[2]} GPUs); vLLM ranks the "
                       "nodes after the head by increasing GPU count (equal counts by IP)")
            break
    return out


def served_stage_memory(st: Stage, model: ModelSpec, workload: Workload, cfg: ServingConfig,
                        kv_tokens: int, pp: int = 1) -> StageMemory:
    """Bytes on one GPU of ``st`` when the engine holds ``kv_tokens`` tokens of KV cache;
    ``capacity`` is the usable gpu_memory_utilization x the CUDA total. Weights, non-torch memory and
    the profile run's peak are vLLM's accounting (solver.cost.engine_memory.stage_budget)."""
    b = stage_budget(st.profile, model, st.tp, pp, st.n_layers, st.first, st.last, workload, cfg)
    return StageMemory(
        weights=b.weights,
        kv_cache=kv_tokens * kv_bytes_per_token(model, st.tp, st.n_layers, workload.kv_bytes,
                                                workload.context_len, st.first, st.last),
        activation_peak=b.activation_peak, runtime_overhead=b.non_torch, capacity=b.budget)


def _memory_problems(r: int, rep, cost: list[Stage], model, workload) -> list[str]:
    cfg = serving_config(cost[0].profile)  # the engine is one process: the first stage's settings
    out = []
    if rep.concurrency < 1:
        out.append(f"replica {r}: reports concurrency {rep.concurrency}; it must run at least one sequence")
    seqs = max(1, rep.concurrency)
    kv_tokens = seqs * math.ceil(workload.context_len / cfg.block_size) * cfg.block_size
    for k, st in enumerate(cost):
        mem = served_stage_memory(st, model, workload, cfg, kv_tokens, pp=len(cost))
        if mem.total > mem.capacity:
            out.append(f"replica {r} stage {k}: needs {mem.total / 2**30:.2f} GiB per GPU with KV for {seqs} "
                       f"sequences, usable {mem.capacity / 2**30:.2f} "
                       f"({cfg.gpu_memory_utilization:g} x {st.profile.cuda_total_gib().value:g})")
    return out


def check_plan(plan, model: ModelSpec, workload: Workload, cluster: Cluster, profiles: list[Profile],
               runtime: str = "vllm") -> list[str]:
    """Every problem with ``plan`` (a ``solver.plan.result.Plan``), empty when valid."""
    groups = {g.name: g for g in cluster.node_groups}
    prof = {g.name: (profile_for(g.gpu, profiles) if any(p.matches(g.gpu) for p in profiles) else None)
            for g in cluster.node_groups}
    problems: list[str] = _share_problems(plan, workload)
    used: Counter = Counter()
    nic: Counter = Counter()  # (node, "send" | "receive") -> bytes/s
    for r, rep in enumerate(plan.replicas):
        wl = dataclasses.replace(workload, batch=rep.batch) if plan.shared and rep.batch >= 1 else workload
        stages = list(rep.stages)
        if not stages:
            problems.append(f"replica {r}: no stages")
            continue
        bad = _stage_problems(r, stages, model, groups)
        problems += bad + _launch_problems(r, stages, runtime, groups)
        for s in stages:
            used[s.node_id] += s.tp
        if bad or any(prof[s.group] is None for s in stages):
            continue
        m = len(stages)
        cost = [Stage(prof[s.group], s.tp, s.n_layers, k == 0, k == m - 1) for k, s in enumerate(stages)]
        problems += _memory_problems(r, rep, cost, model, wl)
        links = [None if a.node_id == b.node_id else cluster.link_gbps(groups[a.group], groups[b.group])
                 for a, b in zip(stages, stages[1:])]
        est = estimate_pipeline(model, wl, cost, links, runtime)
        if plan.shared and abs(est.elapsed_s - rep.elapsed_s) > REL_TOL * est.elapsed_s:
            problems.append(f"replica {r}: reports {rep.elapsed_s:.6g} s for its {rep.batch} sequences, "
                            f"recomputed {est.elapsed_s:.6g}")
        if (rep.concurrency, tuple(rep.waves)) != (est.concurrency.seqs, est.concurrency.waves):
            problems.append(f"replica {r}: reports concurrency {rep.concurrency} in waves {list(rep.waves)}, "
                            f"the serving model runs {est.concurrency.seqs} in {list(est.concurrency.waves)}")
        tok_s = est.throughput_tok_s
        link_bytes_per_s = tok_s * activation_bytes(model, 1, wl, runtime)  # every token crosses once
        for a, b in zip(stages, stages[1:]):
            if a.node_id != b.node_id:
                nic[(a.node_id, "send")] += link_bytes_per_s
                nic[(b.node_id, "receive")] += link_bytes_per_s
        if abs(tok_s - rep.throughput_tok_s) > REL_TOL * max(tok_s, 1.0):
            problems.append(f"replica {r}: reports {rep.throughput_tok_s:.6g} tokens/s, recomputed {tok_s:.6g}")
        usd = sum(s.tp * (groups[s.group].usd_per_gpu_hour or 0.0) for s in stages)
        if abs(usd - rep.usd_per_hour) > 1e-9 * max(usd, 1.0):
            problems.append(f"replica {r}: reports {rep.usd_per_hour:.6g} $/h, recomputed {usd:.6g}")
    for node, n in sorted(used.items()):
        g = groups.get(node.rsplit("/", 1)[0])
        if g is not None and n > g.gpus_per_node:
            problems.append(f"node {node}: {n} GPUs assigned, it has {g.gpus_per_node}")
    for (node, way), load in sorted(nic.items()):
        g = groups.get(node.rsplit("/", 1)[0])
        if g is not None and load > g.nic_gbps * GB * (1 + REL_TOL):
            problems.append(f"node {node}: its replicas {way} {load / GB:.6g} GB/s through the NIC, "
                            f"it has {g.nic_gbps:g} GB/s per direction")
    return problems


def _share_problems(plan, workload: Workload) -> list[str]:
    """A shared batch: every replica serves at least one sequence, all of them B in total."""
    if not plan.shared:
        return []
    out = [f"replica {r}: serves {rep.batch} sequences of the shared batch" for r, rep in enumerate(plan.replicas)
           if rep.batch < 1]
    total = sum(rep.batch for rep in plan.replicas)
    if total != workload.batch:
        out.append(f"replicas serve {total} sequences in all, the batch is {workload.batch}")
    if plan.tokens_per_seq != workload.prompt_len + workload.output_len:
        out.append(f"plan counts {plan.tokens_per_seq} tokens per sequence, the workload "
                   f"{workload.prompt_len + workload.output_len}")
    return out


def objective_problems(plan, min_tok_s: float = 0.0, max_replicas: int | None = None) -> list[str]:
    """The user's limits: total tokens/s >= --min-throughput, replicas <= --max-replicas.
    Total: a batch each, the sum over replicas; a shared batch, its tokens over the slowest
    replica's time (recomputed here from the replicas' shares and times)."""
    out = []
    if plan.shared:
        span = max((r.elapsed_s for r in plan.replicas), default=0.0)
        total = sum(r.batch for r in plan.replicas) * plan.tokens_per_seq / span if span > 0 else 0.0
    else:
        total = sum(r.throughput_tok_s for r in plan.replicas)
    if total < min_tok_s * (1 - REL_TOL):
        out.append(f"plan gives {total:,.1f} tokens/s, below --min-throughput {min_tok_s:,.1f}")
    if max_replicas is not None and len(plan.replicas) > max_replicas:
        out.append(f"plan has {len(plan.replicas)} replicas, --max-replicas is {max_replicas}")
    return out


def validate(plan, model, workload, cluster, profiles, runtime: str = "vllm", min_tok_s: float = 0.0,
             max_replicas: int | None = None) -> str:
    """``"ok"``, or PlanInvalid listing every problem."""
    problems = check_plan(plan, model, workload, cluster, profiles, runtime)
    problems += objective_problems(plan, min_tok_s, max_replicas)
    if problems:
        raise PlanInvalid("; ".join(problems))
    return "ok"
