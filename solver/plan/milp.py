"""The planner's MILP: how many replicas of each shape, and how nodes are cut into chunks.

Columns come from ``solver.plan.shapes``: shape s has a throughput v_s (tokens/s, from
``estimate_pipeline`` on its best split), a price c_s ($/h of its GPUs) and uses
a_{s,g,z} node chunks of z GPUs in group g. Because every copy of a shape has the same
best split, v_s is a constant: the per-replica bottleneck (1 / cycle time) never enters the
MILP, and what remains is a packing problem that is linear and exact over the shapes
(docs/metrics.md, "planner objective"). Nodes of a group are interchangeable, so a node is
described only by its *configuration* q (a multiset of chunk sizes, sum <= GPUs per node).

NIC rows (``nic_steps``): a chunk that sends to / receives from another node carries its
share of that node's NIC per direction, rounded *up* to a step of 1/NIC_STEPS, so a node
configuration is a multiset of chunk items (GPUs, send steps, receive steps) with
sum GPUs <= GPUs per node, sum send steps <= NIC_STEPS and sum receive steps <= NIC_STEPS
(docs/metrics.md, "planner objective"). Rounding up makes the row sound (never admits an
overloaded NIC) and conservative by at most one step per chunk.

Variables: y_s in Z+ (replicas of shape s); w_{g,q} in Z+ (nodes of group g cut as q).
Symmetry: there are no replica slots or node ids to permute -- counts only.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pulp

from solver.errors import InputError

SOLVERS = ("cbc", "highs")
# Relative gap the solvers stop at (gapRel); "optimal" is what the solver then reports (see _bound).
OPTIMAL_GAP = 1e-6
# Resolution of the NIC rows: a chunk's share of its node's NIC, per direction, is rounded up
# to a multiple of 1/NIC_STEPS (a discretisation of the model, not physics).
NIC_STEPS = 20


@dataclass(frozen=True)
class Column:
    """One shape as the MILP sees it: numbers only."""
    value_tok_s: float
    usd_per_hour: float
    chunks: tuple[tuple[int, int], ...]  # (group, GPUs) per node chunk
    # per chunk (send, receive) NIC steps of its node (``solver.plan.nic``); () = none cross
    nic_steps: tuple[tuple[int, int], ...] = ()

    def items(self, nic_groups: set[int] = frozenset()) -> list[tuple[int, object]]:
        """(group, slot item) per chunk: its GPUs, or in ``nic_groups`` (groups where a NIC
        row can bind) the triple (GPUs, send steps, receive steps)."""
        steps = self.nic_steps or [(0, 0)] * len(self.chunks)
        return [(g, (z, *st) if g in nic_groups else z) for (g, z), st in zip(self.chunks, steps)]

    def chunk_counts(self, nic_groups: set[int] = frozenset()) -> Counter:
        return Counter(self.items(nic_groups))


@dataclass
class MasterSolution:
    status: str               # optimal | feasible | infeasible | no_solution
    objective: float | None   # tokens/s or $/h of the incumbent
    bound: float | None       # best bound proven by the solver (same unit)
    gap: float | None         # |bound - objective| / |objective|
    solve_s: float
    solver: str
    counts: dict = field(default_factory=dict)        # column index -> replicas
    node_configs: dict = field(default_factory=dict)  # (group, config) -> nodes


@contextmanager
def _quiet_stdout():
    """Silence what solver libraries print from C on file descriptor 1 (HiGHS prints its
    banner even with output off), so ``--json`` stays parseable."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def node_configs(sizes: list, gpus_per_node: int) -> list[tuple]:
    """Maximal multisets of chunk items fitting one node (no further item fits). An item is
    a chunk size z, or (z, send steps, receive steps): then the steps of a node sum to at
    most NIC_STEPS per direction as well (sum z <= GPUs per node)."""
    items = sorted(set(sizes), reverse=True)
    need = [(it, 0, 0) if isinstance(it, int) else it for it in items]
    out: list[tuple] = []

    def grow(prefix: tuple, start: int, free: tuple[int, int, int]) -> None:
        added = False
        for i in range(start, len(items)):
            if all(n <= f for n, f in zip(need[i], free)):
                added = True
                grow(prefix + (items[i],), i, tuple(f - n for f, n in zip(free, need[i])))
        if not added and not any(all(n <= f for n, f in zip(nd, free)) for nd in need):
            out.append(prefix)

    grow((), 0, (gpus_per_node, NIC_STEPS, NIC_STEPS))
    return out


class PlanMILP:
    """Build once, solve once. ``objective``: ``throughput`` (max sum v_s y_s) or ``cost``
    (min sum c_s y_s subject to a throughput floor)."""

    def __init__(self, columns: list[Column], nodes: list[int], gpus_per_node: list[int],
                 objective: str = "throughput", min_tok_s: float = 0.0, max_replicas: int | None = None):
        self.columns, self.nodes, self.gpn = columns, nodes, gpus_per_node
        self.objective, self.min_tok_s, self.max_replicas = objective, min_tok_s, max_replicas
        sense = pulp.LpMaximize if objective == "throughput" else pulp.LpMinimize
        self.prob = pulp.LpProblem("placement", sense)
        self._variables()
        self._objective()
        self._node_count()
        self._chunk_supply()
        self._throughput_floor()
        self._replica_cap()

    def _variables(self) -> None:
        self.nic_groups = {g for c in self.columns for (g, _), st in zip(c.chunks, c.nic_steps) if any(st)}
        self.y = {s: pulp.LpVariable(f"y_{s}", 0, self._copies_ub(c), cat="Integer")
                  for s, c in enumerate(self.columns)}
        self.configs = {}
        for g, gpn in enumerate(self.gpn):
            sizes = [it for c in self.columns for (gg, it) in c.items(self.nic_groups) if gg == g]
            if sizes:
                self.configs[g] = node_configs(sizes, gpn)
        self.w = {(g, q): pulp.LpVariable(f"w_{g}_{i}", 0, self.nodes[g], cat="Integer")
                  for g, qs in self.configs.items() for i, q in enumerate(qs)}

    def _copies_ub(self, col: Column) -> int:
        """y_s <= min over groups g of (GPUs of g) // (GPUs s takes in g): a natural bound."""
        per_group = Counter()
        for g, z in col.chunks:
            per_group[g] += z
        return min(self.nodes[g] * self.gpn[g] // n for g, n in per_group.items())

    def _objective(self) -> None:
        # throughput: max sum_s v_s y_s ; cost: min sum_s c_s y_s
        coef = [c.value_tok_s if self.objective == "throughput" else c.usd_per_hour for c in self.columns]
        self.prob += pulp.lpSum(k * self.y[s] for s, k in enumerate(coef))

    def _node_count(self) -> None:
        # sum_q w_{g,q} <= N_g  for every group g: a node is cut one way
        for g in self.configs:
            self.prob += (pulp.lpSum(v for (gg, _), v in self.w.items() if gg == g) <= self.nodes[g],
                          f"nodes_{g}")

    def _chunk_supply(self) -> None:
        # sum_s a_{s,g,z} y_s <= sum_q mult_q(z) w_{g,q}  for every group g and chunk item z:
        # every chunk a replica uses is a slot of some node's configuration. With NIC items
        # z = (GPUs, send steps, receive steps) this is also the NIC capacity row: per node,
        #   sum over its chunks of ceil(NIC_STEPS x demand_bytes_per_s / NIC bytes/s)
        #   <= NIC_STEPS per direction,  demand = tokens/s x activation bytes per token,
        # holds inside every configuration q (``node_configs``), so in every node.
        need: dict[tuple[int, int], list] = {}
        for s, c in enumerate(self.columns):
            for key, n in c.chunk_counts(self.nic_groups).items():
                need.setdefault(key, []).append(n * self.y[s])
        for (g, z), terms in need.items():
            supply = pulp.lpSum(q.count(z) * self.w[(g, q)] for q in self.configs[g] if z in q)
            tag = z if isinstance(z, int) else "_".join(map(str, z))
            self.prob += pulp.lpSum(terms) <= supply, f"chunks_{g}_{tag}"

    def _throughput_floor(self) -> None:
        # sum_s v_s y_s >= --min-throughput  (cost objective only)
        if self.objective == "cost" and self.min_tok_s > 0:
            self.prob += pulp.lpSum(c.value_tok_s * self.y[s] for s, c in enumerate(self.columns)) \
                >= self.min_tok_s, "throughput_floor"

    def _replica_cap(self) -> None:
        # sum_s y_s <= --max-replicas
        if self.max_replicas is not None:
            self.prob += pulp.lpSum(self.y.values()) <= self.max_replicas, "replica_cap"

    def warm_start(self, counts: dict[int, int], configs: dict) -> None:
        """Initial incumbent (CBC only): replica counts and node configurations."""
        for s, v in self.y.items():
            v.setInitialValue(counts.get(s, 0))
        for key, v in self.w.items():
            v.setInitialValue(configs.get(key, 0))

    def solve(self, solver: str = "cbc", time_limit_s: float = 60.0, warm: bool = False) -> MasterSolution:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "cbc.log"
            if solver == "highs":
                cmd = pulp.HiGHS(msg=False, timeLimit=time_limit_s, gapRel=OPTIMAL_GAP)
                if not cmd.available():
                    raise InputError("", "--solver", "highs needs the highspy package: "
                                                     "pip install 'placement-planner[highs]' (or use cbc)")
            else:
                cmd = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=OPTIMAL_GAP,
                                        warmStart=warm, logPath=str(log))
            with _quiet_stdout():
                self.prob.solve(cmd)
            solve_s = time.perf_counter() - t0
            log_text = log.read_text() if log.exists() else ""
        return self._solution(solver, solve_s, log_text)

    def _solution(self, solver: str, solve_s: float, log_text: str) -> MasterSolution:
        status = pulp.LpStatus[self.prob.status]
        if status == "Infeasible":
            return MasterSolution("infeasible", None, None, None, solve_s, solver)
        has_incumbent = self.prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        if not has_incumbent:
            return MasterSolution("no_solution", None, None, None, solve_s, solver)
        obj = float(pulp.value(self.prob.objective) or 0.0)
        bound, proven = self._bound(solver, obj, log_text)
        gap = abs(bound - obj) / abs(obj) if obj else (0.0 if bound == obj else float("inf"))
        counts = {s: int(round(v.value() or 0)) for s, v in self.y.items() if (v.value() or 0) > 0.5}
        configs = {k: int(round(v.value() or 0)) for k, v in self.w.items() if (v.value() or 0) > 0.5}
        return MasterSolution("optimal" if proven else "feasible", obj, bound, gap, solve_s, solver,
                              counts, configs)

    def _bound(self, solver: str, obj: float, log_text: str) -> tuple[float, bool]:
        """(best bound, proven optimal). Proven only when the solver says so (CBC's log
        ``Result - Optimal solution found``, HiGHS model status optimal): CBC prints ``Gap:``
        with two decimals, so ``-0.00`` after a time limit proves nothing. Otherwise the
        bound is CBC's ``Upper/Lower bound:`` line widened by half its last printed digit
        (a valid bound whatever the rounding), else the LP relaxation's."""
        maximize = self.objective == "throughput"
        if solver == "highs":
            # PuLP hands HiGHS a maximisation as min -f: the dual bound comes back negated
            import highspy  # only installed with the [highs] extra
            model = self.prob.solverModel
            bound = float(model.getInfo().mip_dual_bound)
            proven = model.getModelStatus() == highspy.HighsModelStatus.kOptimal
            return (-bound if maximize else bound), proven
        if re.search(r"^Result - Optimal solution found", log_text, re.M):
            return obj, True
        m = re.search(r"^(?:Upper|Lower) bound:\s+(-?\d+(?:\.(\d+))?)\s*$", log_text, re.M)
        if m:
            half_digit = 0.5 * 10.0 ** -len(m.group(2) or "")
            printed = float(m.group(1))
            return (printed + half_digit if maximize else printed - half_digit), False
        return self.lp_bound(), False

    def lp_bound(self) -> float:
        """Optimum of the LP relaxation: a valid bound on the MILP (solved on a copy)."""
        relaxed = self.prob.deepcopy()
        for v in relaxed.variables():
            v.cat = pulp.LpContinuous
        relaxed.solve(pulp.PULP_CBC_CMD(msg=False))
        return float(pulp.value(relaxed.objective) or 0.0)
