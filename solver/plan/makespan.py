"""The MILP for a batch shared by the pool (``solver.plan.share``): the smallest makespan T at
which the replicas a packing MILP picks can take all B sequences.

At a trial T every layout s can take cap_s(T) sequences; the packing MILP of
``solver.plan.milp`` (same node-configuration rows, same --max-replicas row) then
- throughput objective: maximises sum_s cap_s(T) y_s; T is feasible iff the optimum >= B.
  T is searched by bisection over the finitely many envelope values (``share.candidate_times``),
  most steps settled without a MILP by two bounds: no plan beats every GPU running the
  layout with the most sequences per GPU (an upper bound), and copies of one single-group
  layout that fit its nodes are a plan (a lower bound). The optimum is B (P + O) / T*;
  it is proven when every MILP the bisection needed was solved to optimality.
- cost objective: T = B (P + O) / --min-throughput, minimise sum_s c_s y_s subject to
  sum_s cap_s(T) y_s >= B (one MILP).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from solver.plan.candidates import CostTable
from solver.plan.milp import Column, MasterSolution, PlanMILP
from solver.plan.nic import with_nic_steps
from solver.plan.share import candidate_times, capacity, envelope, split_batch
from solver.plan.shapes import ShapeValue, shape_links
from solver.plan.split import splits_by_batch


def layout_splits(table: CostTable, values: list[ShapeValue]):
    """Per layout: (E[b], layers[b], exact) -- ``split.splits_by_batch``."""
    return [splits_by_batch(table, sv.shape.stages(), shape_links(table, sv.shape), sv.layers) for sv in values]


class SharedBatchMaster:
    def __init__(self, table: CostTable, values: list[ShapeValue], columns: list[Column],
                 max_replicas: int | None, solver: str, time_limit_s: float, single_copies: list[int]):
        self.table, self.values = table, values
        self.max_replicas, self.solver, self.time_limit_s = max_replicas, solver, time_limit_s
        self.splits = layout_splits(table, values)
        self.envs = [envelope(e) for e, _, _ in self.splits]
        self.B = table.workload.batch
        self.tokens = self.B * (table.workload.prompt_len + table.workload.output_len)
        # NIC rows at the fastest a layout runs over every share b: max_b b (P + O) / E[b]
        per_seq = table.workload.prompt_len + table.workload.output_len
        rates = [max((b * per_seq / t for b, t in enumerate(e) if b > 0 and 0 < t < np.inf), default=0.0)
                 for e, _, _ in self.splits]
        self.columns = with_nic_steps(table, columns, rates)
        # a layout with NIC steps may not fit as many copies as GPUs allow: no lower bound from it
        single_copies = [0 if c.nic_steps else n for c, n in zip(self.columns, single_copies)]
        self.gpus = np.array([sum(z for _, z in c.chunks) for c in columns], dtype=float)
        self.pool_gpus = sum(g.nodes * g.gpus_per_node for g in table.groups)
        self.single_copies = single_copies  # copies that fit, for single-group layouts (else 0)
        self.solve_s, self.all_proven = 0.0, True

    def _milp(self, t_s: float, objective: str):
        caps = [capacity(e, t_s) for e in self.envs]
        keep = [i for i, c in enumerate(caps) if c > 0]
        cols = [dataclasses.replace(self.columns[i], value_tok_s=float(caps[i])) for i in keep]
        milp = PlanMILP(cols, [g.nodes for g in self.table.groups], [g.gpus_per_node for g in self.table.groups],
                        objective, float(self.B) if objective == "cost" else 0.0, self.max_replicas)
        sol = milp.solve(self.solver, self.time_limit_s)
        self.solve_s += sol.solve_s
        sol.counts = {keep[i]: n for i, n in sol.counts.items()}
        return sol

    def _bounds(self, t_s: float) -> tuple[int, int]:
        """(sequences some plan surely takes, most any plan takes) within ``t_s``."""
        caps = np.array([capacity(e, t_s) for e in self.envs], dtype=float)
        hi = self.pool_gpus * float(np.max(caps / self.gpus)) if len(caps) else 0.0
        if self.max_replicas is not None:
            hi = min(hi, self.max_replicas * float(caps.max(initial=0.0)))
        copies = np.array(self.single_copies, dtype=float)
        if self.max_replicas is not None:
            copies = np.minimum(copies, self.max_replicas)
        lo = float(np.max(caps * copies, initial=0.0))
        return int(lo), int(hi)

    def throughput(self) -> MasterSolution | None:
        times = candidate_times(self.envs)
        lo, hi = 0, len(times) - 1
        if hi < 0:
            return None
        top = self._feasible(times[hi])
        if top is None:
            return None
        best_t, best_sol = times[hi], top
        while lo < hi:
            mid = (lo + hi) // 2
            sol = self._feasible(times[mid])
            if sol is not None:
                hi, best_t, best_sol = mid, times[mid], sol
            else:
                lo = mid + 1
        feasible_sol = best_sol if best_sol is not True else self._milp(best_t, "throughput")
        if feasible_sol.status != "optimal":
            self.all_proven = False
        value = self.tokens / float(best_t)
        # unproven: the fastest makespan of any layout bounds the throughput from above
        bound = value if self.all_proven else self.tokens / float(times[0])
        return MasterSolution("optimal" if self.all_proven else "feasible", value, bound, (bound - value) / value,
                              self.solve_s, self.solver, feasible_sol.counts, feasible_sol.node_configs)

    def _feasible(self, t_s: float):
        """A solution (or True when a bound settles it) if all B sequences fit within t_s, else None."""
        lo, hi = self._bounds(t_s)
        if hi < self.B:
            return None
        if lo >= self.B:
            return True
        sol = self._milp(t_s, "throughput")
        if sol.status != "optimal":
            self.all_proven = False
        return sol if (sol.objective or 0.0) >= self.B - 1e-9 else None

    def cost(self, min_tok_s: float) -> MasterSolution:
        return self._milp(self.tokens / min_tok_s, "cost")

    def heuristic_splits(self) -> int:
        """Layouts whose split per batch share was not searched over every split."""
        return sum(not exact for _, _, exact in self.splits)

    def replicas(self, counts: dict[int, int]) -> list[tuple[ShapeValue, int]]:
        """(layout with the split for its share, share) per replica of the MILP's ``counts``,
        shares from the makespan-optimal split of the batch (replicas left without a
        sequence dropped)."""
        order = [s for s, n in sorted(counts.items()) for _ in range(n)]
        found = split_batch([self.envs[s] for s in order], self.B)
        if found is None:
            return []
        return [(dataclasses.replace(self.values[s], layers=self.splits[s][1][b]), b)
                for s, b in zip(order, found[1]) if b > 0]
