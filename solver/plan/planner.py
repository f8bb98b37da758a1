"""``plan()``: inputs -> cost table -> shapes -> MILP -> placement -> validation.

The one entry point of ``solver plan``, the tests and the benchmark.
"""

from __future__ import annotations

from solver.cost.memory import stage_kv_bytes
from solver.errors import InfeasibleError
from solver.inputs.cluster import Cluster
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload
from solver.plan import heuristics
from solver.plan.assign import place
from solver.plan.candidates import CostTable, pool_groups
from solver.plan.milp import SOLVERS, Column, PlanMILP
from solver.plan.result import PlanResult
from solver.plan.shapes import ShapeValue, enumerate_shapes, evaluate
from solver.plan.validate_plan import validate
from solver.units import GIB

OBJECTIVES = ("throughput", "cost")


def _gib(x: float) -> str:
    return f"{x / GIB:,.0f} GiB"


def _no_shape_reason(model: ModelSpec, workload: Workload, table: CostTable) -> str:
    weights = model.total_params() * workload.weight_bytes
    pool = sum(g.nodes * g.gpus_per_node * g.profile.memory_gib.value * GIB for g in table.groups)
    if weights > pool:
        return f"{model.name} needs {_gib(weights)} of weights; the pool has {_gib(pool)}"
    kv = stage_kv_bytes(model, 1, model.num_layers, workload.batch, workload.context_len, workload.kv_bytes)
    return (f"{model.name} needs {_gib(weights)} of weights + {_gib(kv)} of KV cache for batch "
            f"{workload.batch} x {workload.context_len} tokens per replica, plus activations; no pipeline "
            f"of the pool's GPUs ({_gib(pool)} in all) holds it -- lower --batch or add GPUs")


def shape_values(table: CostTable, extra_stages: int = 2, max_blocks: int | None = None) -> list[ShapeValue]:
    """Evaluated shapes, one per resource signature (the best one), best first."""
    gpn = [g.gpus_per_node for g in table.groups]
    best: dict[tuple, ShapeValue] = {}
    for shape in enumerate_shapes(table, extra_stages, max_blocks):
        sv = evaluate(table, shape)
        if sv is None:
            continue
        key = tuple(sorted(shape.chunks(gpn)))
        if key not in best or sv.throughput_tok_s > best[key].throughput_tok_s:
            best[key] = sv
    return sorted(best.values(), key=lambda v: -v.throughput_tok_s)


def _columns(table: CostTable, values: list[ShapeValue]) -> list[Column]:
    gpn = [g.gpus_per_node for g in table.groups]
    return [Column(sv.throughput_tok_s,
                   sum(b.tp * b.stages * table.groups[b.group].usd_per_gpu_hour for b in sv.shape.blocks),
                   tuple(sv.shape.chunks(gpn))) for sv in values]


def plan(model: ModelSpec, workload: Workload, cluster: Cluster, profiles: list[Profile], *,
         objective: str = "throughput", min_tok_s: float = 0.0, max_replicas: int | None = None,
         time_limit_s: float = 60.0, solver: str = "cbc", runtime: str = "vllm",
         extra_stages: int = 2, max_blocks: int | None = None) -> PlanResult:
    if objective not in OBJECTIVES or solver not in SOLVERS:
        raise ValueError(f"objective in {OBJECTIVES}, solver in {SOLVERS}")
    table = CostTable(model, workload, pool_groups(cluster, profiles), cluster, runtime)
    values = shape_values(table, extra_stages, max_blocks)
    if not values:
        raise InfeasibleError(_no_shape_reason(model, workload, table))
    columns = _columns(table, values)
    milp = PlanMILP(columns, [g.nodes for g in table.groups], [g.gpus_per_node for g in table.groups],
                    objective, min_tok_s, max_replicas)
    pick = heuristics.best_homogeneous(table, values, objective, min_tok_s, max_replicas)
    start = heuristics.warm_start(milp, values, pick)
    if start is not None:
        milp.warm_start(*start)
    sol = milp.solve(solver, time_limit_s, warm=start is not None)
    if sol.status == "infeasible" or not sol.counts:
        raise InfeasibleError(_master_reason(table, values, objective, min_tok_s, max_replicas, sol.status))
    picks = [(values[s], n) for s, n in sorted(sol.counts.items())]
    chosen = place(table, picks, sol.node_configs)
    baselines = {"homogeneous": heuristics.homogeneous_plan(table, pick),
                 "greedy": heuristics.greedy_layer_filling(table, objective, min_tok_s, max_replicas)}
    for p in [chosen, *baselines.values()]:
        if p is not None:
            validate(p, model, workload, cluster, profiles, runtime)
    notes = []
    if sol.objective and objective == "throughput" and abs(chosen.throughput_tok_s - sol.objective) > 1e-6 * sol.objective:
        notes.append(f"placement put chunks of one replica on one node: throughput {chosen.throughput_tok_s:,.1f} "
                     f"vs the MILP's {sol.objective:,.1f} tokens/s")
    return PlanResult(sol.status, objective, sol.objective, sol.bound, sol.gap, sol.solve_s, sol.solver,
                      chosen, baselines, len(columns), notes)


def _master_reason(table, values, objective, min_tok_s, max_replicas, status) -> str:
    if objective == "cost":
        best = PlanMILP(_columns(table, values), [g.nodes for g in table.groups],
                        [g.gpus_per_node for g in table.groups], "throughput", 0.0, max_replicas).solve()
        top = best.objective or 0.0
        return (f"--min-throughput {min_tok_s:,.0f} tokens/s is out of reach: the pool gives at most "
                f"{top:,.0f} tokens/s" + (f" with --max-replicas {max_replicas}" if max_replicas else ""))
    if max_replicas == 0:
        return "--max-replicas 0 allows no replica"
    return f"the solver found no plan (status {status}); try a longer --time-limit"

