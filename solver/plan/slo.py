"""SLO planning: replicas over the pool whose traffic shares meet TTFT/TPOT targets.

Columns are #15's replica layouts (``planner.shape_values``: launchable shapes, best layer
split each); a column's value is the largest Poisson rate (requests/s) one replica of it
serves within the targets (``solver.cost.online.slo.max_rate_under_slo``), its cost the $/h
of its GPUs. The same packing MILP (``PlanMILP``) then
- ``cost``:     min sum_s c_s y_s  s.t.  sum_s r_s y_s >= R  (and the pool's nodes), or
- ``headroom``: max sum_s r_s y_s  (the spare rate is the total minus R; must be >= 0).
Router: replica i gets the share r_i / sum r of the traffic, so every replica runs at the
same fraction R / sum r <= 1 of its SLO rate (each meets the targets when its rate does).

Rates come first from the steady-state model (fast, every column); the replicas the MILP
picks are then re-judged by the scheduler simulation, their columns lowered to the
simulated rate, and the MILP solved again until the picked columns agree (a few rounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from solver.cost.online.simulate import simulate
from solver.cost.online.slo import SLO, RateAtSLO, max_rate_under_slo
from solver.cost.online.steps import StepModel
from solver.cost.online.traffic import Traffic
from solver.cost.serving import serving_config
from solver.cost.stage import memoized_stage_times
from solver.errors import InfeasibleError
from solver.inputs.cluster import Cluster
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload
from solver.plan.assign import place, replica_stages
from solver.plan.candidates import CostTable
from solver.plan.milp import Column, PlanMILP
from solver.plan.nic import with_nic_steps
from solver.plan.planner import layouts
from solver.plan.result import PlacedReplica
from solver.plan.shapes import ShapeValue, shape_stages

SLO_OBJECTIVES = ("cost", "headroom")
# Rounds of "simulate the picked columns, lower them, solve again" before giving up.
MAX_VERIFY_ROUNDS = 6
# Requests simulated to report each picked replica's latency at its assigned rate.
REPORT_SIM_REQUESTS = 300


@dataclass(frozen=True)
class SLOReplica:
    placed: PlacedReplica
    max_rate_per_s: float          # within the targets
    rate_per_s: float              # assigned by the router
    router_weight: float
    latency_ms: dict               # ttft/itl/tpot -> {"p50", "p90"} at the assigned rate
    limit: str                     # what caps max_rate_per_s
    method: str
    serving: object = None         # the engine settings the prediction assumed (ServingConfig)


@dataclass
class SLOPlanResult:
    status: str
    objective: str
    request_rate_per_s: float
    slo: SLO
    replicas: list[SLOReplica]
    usd_per_hour: float
    capacity_per_s: float
    columns: int
    solve_s: float
    gap: float | None
    notes: list = field(default_factory=list)
    search_space: str = ""

    @property
    def spare_rate_per_s(self) -> float:
        return self.capacity_per_s - self.request_rate_per_s


def steps_for(table: CostTable, stages, links) -> StepModel:
    """The online step model of one replica (engine settings: its first stage's profile)."""
    w = table.workload
    return StepModel(table.model, stages, links, dtype=w.dtype, kv_dtype=w.kv_dtype, runtime=table.runtime,
                     serving=serving_config(stages[0].profile))


def column_rates(table: CostTable, values: list[ShapeValue], traffic: Traffic, slo: SLO,
                 simulate_check: bool = False) -> list[RateAtSLO]:
    return [max_rate_under_slo(steps_for(table, *shape_stages(table, v.shape, v.layers)), traffic, slo,
                               simulate_check=simulate_check) for v in values]


def best_per_signature(values: list[ShapeValue], rates: list[RateAtSLO]) -> tuple[list, list]:
    """One layout per resource signature (the same node chunks, hence the same $/h): the one
    with the highest SLO rate (e.g. TP8 beats TP4 x PP2 on TPOT where tokens/s says otherwise)."""
    best: dict[tuple, int] = {}
    for i, v in enumerate(values):
        key = v.shape.signature()  # chunks with their NIC direction (solver.plan.nic)
        if key not in best or rates[i].rate_per_s > rates[best[key]].rate_per_s:
            best[key] = i
    keep = sorted(best.values())
    return [values[i] for i in keep], [rates[i] for i in keep]


def _columns(table: CostTable, values: list[ShapeValue], rates: list[RateAtSLO],
             tokens_per_request: float) -> list[Column]:
    """Columns with NIC rows (``solver.plan.nic``) at each layout's most requests/s x tokens
    per request: the router never sends a replica more than its rate."""
    gpn = [g.gpus_per_node for g in table.groups]
    cols = [Column(r.rate_per_s, sum(b.tp * b.stages * table.groups[b.group].usd_per_gpu_hour for b in v.shape.blocks),
                   tuple(v.shape.chunks(gpn))) for v, r in zip(values, rates)]
    return with_nic_steps(table, cols, [r.rate_per_s * tokens_per_request for r in rates])


def infeasible_reason(rates: list[RateAtSLO], slo: SLO, rate: float, capacity: float | None) -> str:
    """One line: the unreachable target and the best any replica gives, or the rate shortfall."""
    if not any(r.rate_per_s > 0 for r in rates):
        q = f"p{slo.percentile:g} "
        if slo.tpot_ms is not None and all(r.best_tpot_ms > slo.tpot_ms for r in rates):
            best = min(r.best_tpot_ms for r in rates)
            return f"{q}TPOT {slo.tpot_ms:g} ms unreachable: best replica on this pool gives {best:.0f} ms"
        if slo.ttft_ms is not None and all(r.best_ttft_ms > slo.ttft_ms for r in rates):
            best = min(r.best_ttft_ms for r in rates)
            return f"{q}TTFT {slo.ttft_ms:g} ms unreachable: best replica on this pool gives {best:.0f} ms"
        return ("no replica on this pool meets TTFT and TPOT together at any rate "
                f"(best TTFT {min(r.best_ttft_ms for r in rates):.0f} ms, best TPOT {min(r.best_tpot_ms for r in rates):.0f} ms)")
    return (f"--request-rate {rate:g} req/s is out of reach: the pool serves at most {capacity or 0:.3g} req/s "
            f"within the targets")


def plan_slo(model: ModelSpec, workload: Workload, cluster: Cluster, profiles: list[Profile], *,
             rate_per_s: float, slo: SLO, objective: str = "cost", traffic: Traffic | None = None,
             max_replicas: int | None = None, time_limit_s: float = 60.0, solver: str = "cbc",
             runtime: str = "vllm", extra_stages: int | None = -1, max_blocks: int | None = None,
             simulate_check: bool = True) -> SLOPlanResult:
    """Cheapest (or roomiest) set of replicas serving ``rate_per_s`` within ``slo``."""
    if objective not in SLO_OBJECTIVES:
        raise ValueError(f"objective in {SLO_OBJECTIVES}")
    traffic = traffic or Traffic(workload.prompt_len, workload.output_len, rate_per_s=rate_per_s)
    with memoized_stage_times():
        table, bounds, values = layouts(model, workload, cluster, profiles, runtime, extra_stages, max_blocks,
                                        per_signature=False)
        values, rates = best_per_signature(values, column_rates(table, values, traffic, slo))
        nodes, gpn = [g.nodes for g in table.groups], [g.gpus_per_node for g in table.groups]
        verified: set[int] = set()
        for _ in range(MAX_VERIFY_ROUNDS):
            cols = _columns(table, values, rates, sum(traffic.mean_lengths()))
            sol, capacity = _solve(cols, nodes, gpn, objective, rate_per_s, max_replicas, time_limit_s, solver)
            if sol is None:
                raise InfeasibleError(infeasible_reason(rates, slo, rate_per_s, capacity))
            todo = [s for s in sol.counts if s not in verified]
            if not simulate_check or not todo:
                break
            for s in todo:  # re-judge the picked columns with the simulation
                rates[s] = max_rate_under_slo(steps_for(table, *shape_stages(table, values[s].shape, values[s].layers)),
                                              traffic, slo, simulate_check=True)
                verified.add(s)
        picks = [(values[s], n) for s, n in sorted(sol.counts.items())]
        chosen = place(table, picks, sol.node_configs, {v.shape: c.nic_steps for v, c in zip(values, cols)})
        col_rate = [rates[s] for s, n in sorted(sol.counts.items()) for _ in range(n)]
        replicas = _router(table, chosen.replicas, col_rate, rate_per_s, traffic)
    notes = [] if set(sol.counts) <= verified or not simulate_check else \
        [f"the picked columns did not settle in {MAX_VERIFY_ROUNDS} rounds; some rates are steady-state estimates"]
    total = sum(r.max_rate_per_s for r in replicas)
    return SLOPlanResult(sol.status, objective, rate_per_s, slo, replicas, chosen.usd_per_hour, total,
                         len(values), sol.solve_s, sol.gap, notes, bounds.describe(model.num_layers, runtime))


def _solve(cols, nodes, gpn, objective, rate, max_replicas, time_limit_s, solver):
    """(solution or None, the pool's best total rate when the floor is out of reach)."""
    if objective == "cost":
        sol = PlanMILP(cols, nodes, gpn, "cost", rate, max_replicas).solve(solver, time_limit_s)
        if sol.status in ("optimal", "feasible") and sol.counts:
            return sol, None
    sol_max = PlanMILP(cols, nodes, gpn, "throughput", 0.0, max_replicas).solve(solver, time_limit_s)
    capacity = sol_max.objective or 0.0
    if objective == "headroom" and sol_max.counts and capacity >= rate * (1 - 1e-9):
        return sol_max, None
    return None, capacity


def _router(table: CostTable, placed: tuple[PlacedReplica, ...], rates: list[RateAtSLO], total_rate: float,
            traffic: Traffic) -> list[SLOReplica]:
    """Weights r_i / sum r; each replica's latency simulated at its share of the traffic."""
    cap = sum(r.rate_per_s for r in rates)
    out = []
    for rep, r in zip(placed, rates):
        w = r.rate_per_s / cap if cap > 0 else 0.0
        share = total_rate * w
        steps = steps_for(table, *replica_stages(table, list(rep.stages)))
        sim = simulate(steps, traffic.with_rate(share), REPORT_SIM_REQUESTS) if share > 0 else None
        lat = {m: {f"p{q}": (sim.pct(f"{m}_s", q) * 1e3 if sim else math.nan) for q in (50, 90)}
               for m in ("ttft", "itl", "tpot")}
        out.append(SLOReplica(rep, r.rate_per_s, share, w, lat, r.limit, r.method, steps.cfg))
    return out
