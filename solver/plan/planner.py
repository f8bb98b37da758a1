"""``plan()``: inputs -> cost table -> shapes -> MILP -> placement -> validation.

The one entry point of ``solver plan``, the tests and the benchmark.
"""

from __future__ import annotations

import dataclasses

from tqdm import tqdm

from solver.cost.memory import kv_blocks, kv_bytes_per_token, stage_weight_bytes
from solver.cost.serving import serving_config
from solver.errors import InfeasibleError, InputError
from solver.inputs.cluster import Cluster
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload
from solver.plan import heuristics
from solver.plan.assign import evaluate_replica, place, share_batch
from solver.plan.makespan import SharedBatchMaster
from solver.plan.candidates import CostTable, pool_groups
from solver.plan.milp import SOLVERS, Column, PlanMILP
from solver.plan.nic import with_nic_steps
from solver.plan.result import Plan, PlanResult
from solver.plan.shapes import ShapeValue, evaluate
from solver.plan.space import Bounds, enumerate_shapes
from solver.plan.validate_plan import PlanInvalid, validate
from solver.cost.stage import memoized_stage_times
from solver.units import GIB

OBJECTIVES = ("throughput", "cost")
# Most nodes in one pool: the placement, the baselines and the validator name every node and
# replica (about 15 ms per node), so larger pools are refused rather than run for hours.
MAX_POOL_NODES = 1024


def check_pool_size(cluster: Cluster) -> None:
    nodes = sum(g.count for g in cluster.node_groups)
    if nodes > MAX_POOL_NODES:
        raise InputError(cluster.where, "node_groups[].count",
                         f"the pool has {nodes:,} nodes; the planner takes at most {MAX_POOL_NODES:,} "
                         "(plan a representative slice of identical nodes and repeat it)")


def _gib(x: float) -> str:
    return f"{x / GIB:,.0f} GiB"


def _no_shape_reason(model: ModelSpec, workload: Workload, table: CostTable) -> str:
    """Why no layout holds the model under the serving model's memory rule: the weights
    alone exceed the pool, or no pipeline leaves KV blocks for one sequence."""
    weights = stage_weight_bytes(model, 1, model.num_layers, True, True, workload.weight_bytes)
    pool = sum(g.nodes * g.gpus_per_node * g.profile.memory_gib.value * GIB for g in table.groups)
    if weights > pool:
        return f"{model.name} needs {_gib(weights)} of weights; the pool has {_gib(pool)}"
    cfgs = {g.name: serving_config(g.profile) for g in table.groups}
    block = min(c.block_size for c in cfgs.values())  # the version's (64 from vLLM 0.34)
    per_seq = kv_blocks(workload.context_len, block) * block
    kv = per_seq * kv_bytes_per_token(model, 1, model.num_layers, workload.kv_bytes, workload.context_len)
    # vLLM's budget: gpu_memory_utilization x the CUDA total (engine_memory.kv_cache_bytes)
    usable = sum(g.nodes * g.gpus_per_node * g.profile.cuda_total_gib().value * GIB
                 * cfgs[g.name].gpu_memory_utilization for g in table.groups)
    step = max(c.batched_tokens(workload) for c in cfgs.values())
    return (f"{model.name} needs {_gib(weights)} of weights + {_gib(kv)} of KV cache for one sequence of "
            f"{workload.context_len} tokens, plus activations of a {step}-token prefill step on every stage; "
            f"no pipeline of the pool's GPUs ({_gib(usable)} usable at gpu_memory_utilization) leaves room "
            f"for it -- shorten --prompt-len/--output-len or add GPUs")


def shape_values(table: CostTable, bounds: Bounds, progress: bool = False,
                 per_signature: bool = True) -> list[ShapeValue]:
    """Evaluated shapes, one per resource signature (``Shape.signature``: the best one), best first. Shapes that
    differ only in where their inter-node links fall share one evaluation. ``progress``: a
    bar on stderr once the work has taken 2 s. ``per_signature=False`` keeps every distinct
    layout (the SLO mode ranks layouts of the same GPUs by their SLO rate, not tokens/s)."""
    best: dict[tuple, ShapeValue] = {}
    done: dict[tuple, ShapeValue | None] = {}
    shapes = enumerate_shapes(table, bounds, table.runtime)
    for shape in tqdm(shapes, desc="layouts", unit="layout", delay=2.0, disable=not progress, leave=False):
        vk = shape.value_key()
        if vk not in done:
            done[vk] = evaluate(table, shape)
        sv = done[vk]
        # estimate_pipeline has the last word on memory: a layout it cannot run even one
        # sequence on (e.g. a mixed-GPU pipeline under the first stage's serving settings)
        # scores 0 and must never become a replica
        if sv is None or sv.throughput_tok_s <= 0:
            continue
        if sv.shape != shape:
            sv = dataclasses.replace(sv, shape=shape)
        key = shape.signature() if per_signature else shape.value_key()
        if key not in best or sv.throughput_tok_s > best[key].throughput_tok_s:
            best[key] = sv
    return sorted(best.values(), key=lambda v: -v.throughput_tok_s)


def _best_per_chunks(values: list[ShapeValue]) -> list[ShapeValue]:
    """The best of ``values`` (sorted best first) per multiset of chunks (group, GPUs)."""
    seen, out = set(), []
    for sv in values:
        key = tuple(sorted(sv.shape.chunks()))
        if key not in seen:
            seen.add(key)
            out.append(sv)
    return out


def _columns(table: CostTable, values: list[ShapeValue]) -> list[Column]:
    gpn = [g.gpus_per_node for g in table.groups]
    return [Column(sv.throughput_tok_s,
                   sum(b.tp * b.stages * table.groups[b.group].usd_per_gpu_hour for b in sv.shape.blocks),
                   tuple(sv.shape.chunks(gpn))) for sv in values]


def layouts(model: ModelSpec, workload: Workload, cluster: Cluster, profiles: list[Profile], runtime: str,
            extra_stages: int | None, max_blocks: int | None,
            progress: bool = False, per_signature: bool = True) -> tuple[CostTable, Bounds, list[ShapeValue]]:
    """The cost table, the search bounds and the evaluated replica layouts (best first) --
    the columns of every planning mode (throughput, cost, SLO); InfeasibleError when none
    holds the model."""
    check_pool_size(cluster)
    table = CostTable(model, workload, pool_groups(cluster, profiles), cluster, runtime)
    bounds = Bounds.default(model.num_layers, cluster.num_gpus, max_blocks, extra_stages)
    values = shape_values(table, bounds, progress, per_signature)
    if not values:
        raise InfeasibleError(_no_shape_reason(model, workload, table))
    return table, bounds, values


def plan(model: ModelSpec, workload: Workload, cluster: Cluster, profiles: list[Profile], **options) -> PlanResult:
    """Plan replicas for ``model`` on ``cluster`` (options as :func:`_plan`); stage times are
    memoised for the duration of the call."""
    with memoized_stage_times():
        return _plan(model, workload, cluster, profiles, **options)


def _plan(model: ModelSpec, workload: Workload, cluster: Cluster, profiles: list[Profile], *,
          objective: str = "throughput", min_tok_s: float = 0.0, max_replicas: int | None = None,
          time_limit_s: float = 60.0, solver: str = "cbc", runtime: str = "vllm",
          extra_stages: int | None = -1, max_blocks: int | None = None, progress: bool = False,
          batch_per_replica: bool = False) -> PlanResult:
    """``batch_per_replica``: every replica serves the workload's batch (throughput sums
    over replicas); default: the replicas share it (``solver.plan.share``)."""
    if objective not in OBJECTIVES or solver not in SOLVERS:
        raise ValueError(f"objective in {OBJECTIVES}, solver in {SOLVERS}")
    table, bounds, oriented = layouts(model, workload, cluster, profiles, runtime, extra_stages, max_blocks,
                                      progress)
    # the best layout per chunk multiset first; where a NIC row can bind, every orientation
    # (which chunk sends, which receives: solver.plan.nic) is a column of its own
    for values in (_best_per_chunks(oriented), oriented):
        if batch_per_replica:
            columns = with_nic_steps(table, _columns(table, values), [sv.throughput_tok_s for sv in values])
        else:
            copies = [heuristics.copies_that_fit(table, sv) if len({b.group for b in sv.shape.blocks}) == 1 else 0
                      for sv in values]
            master = SharedBatchMaster(table, values, _columns(table, values), max_replicas, solver,
                                       time_limit_s, copies)
            columns = master.columns
        if not any(c.nic_steps for c in columns):
            break
    pick = heuristics.best_homogeneous(table, values, objective, min_tok_s, max_replicas)
    if batch_per_replica:
        milp = PlanMILP(columns, [g.nodes for g in table.groups], [g.gpus_per_node for g in table.groups],
                        objective, min_tok_s, max_replicas)
        start = heuristics.warm_start(milp, values, pick)
        if start is not None:
            milp.warm_start(*start)
        sol = milp.solve(solver, time_limit_s, warm=start is not None)
    else:
        sol = master.throughput() if objective == "throughput" else master.cost(min_tok_s)
    if sol is None or sol.status == "infeasible" or not sol.counts:
        raise InfeasibleError(_master_reason(table, columns, objective, min_tok_s, max_replicas,
                                             sol.status if sol else "infeasible",
                                             None if batch_per_replica else master))
    baselines = {"homogeneous": heuristics.homogeneous_plan(table, pick),
                 "greedy": heuristics.greedy_layer_filling(table, objective, min_tok_s, max_replicas)}
    steps = {sv.shape: c.nic_steps for sv, c in zip(values, columns)}
    if batch_per_replica:
        chosen = place(table, [(values[s], n) for s, n in sorted(sol.counts.items())], sol.node_configs, steps)
    else:
        shared = master.replicas(sol.counts)
        placed = place(table, [(sv, 1) for sv, _ in shared], sol.node_configs, steps)
        chosen = Plan(tuple(evaluate_replica(table, list(r.stages), r.shape, b)
                            for r, (_, b) in zip(placed.replicas, shared)),
                      workload.prompt_len + workload.output_len)
        baselines = {name: share_batch(table, b) for name, b in baselines.items()}
    try:
        verdict = validate(chosen, model, workload, cluster, profiles, runtime, min_tok_s, max_replicas)
    except PlanInvalid as e:  # never hand out a plan the independent check refuses
        raise InfeasibleError(f"the validator refused the best plan found: {e}") from None
    notes = []
    for name, p in list(baselines.items()):
        try:
            if p is not None:
                validate(p, model, workload, cluster, profiles, runtime, 0.0, max_replicas)
        except PlanInvalid as e:  # a baseline is a yardstick: report it, never ship it
            baselines[name] = None
            notes.append(f"{name} baseline dropped: the validator rejected it ({str(e)[:160]})")
    if sol.objective and objective == "throughput" and abs(chosen.throughput_tok_s - sol.objective) > 1e-6 * sol.objective:
        notes.append(f"placement put chunks of one replica on one node: throughput {chosen.throughput_tok_s:,.1f} "
                     f"vs the MILP's {sol.objective:,.1f} tokens/s")
    return PlanResult(sol.status, objective, sol.objective, sol.bound, sol.gap, sol.solve_s, sol.solver,
                      chosen, baselines, len(columns), notes,
                      heuristic_splits=(sum(not v.exact_split for v in values) if batch_per_replica
                                        else master.heuristic_splits()),
                      search_space=bounds.describe(model.num_layers, runtime), validator=verdict)


def _master_reason(table, columns, objective, min_tok_s, max_replicas, status, shared=None) -> str:
    if objective == "cost":
        best = shared.throughput() if shared is not None else PlanMILP(
            columns, [g.nodes for g in table.groups],
            [g.gpus_per_node for g in table.groups], "throughput", 0.0, max_replicas).solve()
        top = (best.objective if best is not None else 0.0) or 0.0
        return (f"--min-throughput {min_tok_s:,.0f} tokens/s is out of reach: the pool gives at most "
                f"{top:,.0f} tokens/s" + (f" with --max-replicas {max_replicas}" if max_replicas else ""))
    if max_replicas == 0:
        return "--max-replicas 0 allows no replica"
    return f"the solver found no plan (status {status}); try a longer --time-limit"

