"""Brute force over every plan of a small pool: the reference the MILP is checked against.

Shares nothing with the MILP's shape space: a replica is *any* sequence of stages, each
``t`` GPUs (power of two dividing the heads; one t per replica) of *any* node with that
many free GPUs, in any order the runtime launches (a node's stages consecutive; for vLLM
the nodes after the first by increasing GPU count, equal counts of one group: the rule of
``solver.plan.launch``, re-implemented here), with *any* split of the layers (every composition whose stages fit in memory by
``stage_mem``), valued by ``estimate_pipeline``. Plans are sets of replicas, each serving its own batch (``best``) or
sharing one (``best_shared``: every replica its own split per share, the least makespan by
a DP over shares); the search is a memoised recursion over the free GPUs per node (nodes of a group with equal free GPUs
are interchangeable, which is the only symmetry it removes). Exponential: pools of about a
dozen GPUs and models of a few layers.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from functools import lru_cache

from solver.cost.pipeline import estimate_pipeline
from solver.cost.stage import Stage
from solver.inputs.cluster import Cluster
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile, profile_for
from solver.inputs.workload import Workload


def _compositions(total: int, parts: int):
    for cuts in itertools.combinations(range(1, total), parts - 1):
        bounds = (0,) + cuts + (total,)
        yield tuple(b - a for a, b in zip(bounds, bounds[1:]))


class Exhaustive:
    def __init__(self, model: ModelSpec, workload: Workload, cluster: Cluster, profiles: list[Profile],
                 runtime: str = "vllm", max_replicas: int | None = None):
        self.model, self.workload, self.cluster, self.runtime = model, workload, cluster, runtime
        self.groups = list(cluster.node_groups)
        self.prof = [profile_for(g.gpu, profiles) for g in self.groups]
        self.nodes = [(gi, i) for gi, g in enumerate(self.groups) for i in range(g.count)]
        self.max_replicas = max_replicas
        self.value = lru_cache(maxsize=None)(self._value)
        self.frontier = lru_cache(maxsize=None)(self._frontier)
        self.batch_times = lru_cache(maxsize=None)(self._batch_times)
        self.shared_frontier = lru_cache(maxsize=None)(self._shared_frontier)

    def _tps(self, gi: int) -> list[int]:
        g = self.groups[gi]
        return [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= g.gpus_per_node and self.model.num_heads % t == 0]

    def _value(self, sig: tuple) -> tuple[float, tuple]:
        """Best (throughput, layers) of a replica signature ((group, tp, same_node_as_prev), ...)."""
        m, L = len(sig), self.model.num_layers
        links = [None if same else self.cluster.link_gbps(self.groups[a[0]], self.groups[g])
                 for a, (g, _, same) in zip(sig, sig[1:])]
        best = (0.0, ())
        for split in _compositions(L, m):
            stages = [Stage(self.prof[g], t, n, k == 0, k == m - 1) for k, ((g, t, _), n) in enumerate(zip(sig, split))]
            tok_s = estimate_pipeline(self.model, self.workload, stages, links, self.runtime).throughput_tok_s
            if tok_s > best[0]:
                best = (tok_s, split)
        return best

    def _replicas(self, free: tuple[int, ...]):
        """Every replica placeable on ``free``: (signature, [(node, tp), ...], GPUs left)."""
        L = self.model.num_layers
        out = []

        def grow(stages: list, left: list[int], touched: set):
            if stages and self._launchable(stages):
                sig = tuple((self.nodes[n][0], t, k > 0 and stages[k - 1][0] == n)
                            for k, (n, t) in enumerate(stages))
                out.append((sig, tuple(stages), tuple(left)))
            if len(stages) == L:
                return
            seen = set()
            for n, (gi, _) in enumerate(self.nodes):
                key = (gi, left[n])
                if n in touched and n != stages[-1][0]:
                    continue  # a node's stages are consecutive
                if n not in touched and key in seen:
                    continue  # an untouched node equal to one already tried
                if n not in touched:
                    seen.add(key)
                for t in self._tps(gi):
                    if stages and t != stages[0][1]:
                        continue  # one TP size per replica
                    if left[n] >= t:
                        left[n] -= t
                        grow(stages + [(n, t)], left, touched | {n})
                        left[n] += t

        grow([], list(free), set())
        return out

    def _launchable(self, stages: list) -> bool:
        """vLLM's Ray rank order: after the first node, nodes by increasing GPU count, equal
        counts within one node group."""
        if self.runtime != "vllm":
            return True
        runs: list[list] = []
        for n, t in stages:
            if runs and runs[-1][0] == n:
                runs[-1][1] += t
            else:
                runs.append([n, t])
        rest = [(self.nodes[n][0], z) for n, z in runs[1:]]
        return all(zb > za or (zb == za and ga == gb) for (ga, za), (gb, zb) in zip(rest, rest[1:]))

    def _canon(self, free: tuple[int, ...]) -> tuple[int, ...]:
        out = []
        for gi, g in enumerate(self.groups):
            out.extend(sorted((f for (gg, _), f in zip(self.nodes, free) if gg == gi), reverse=True))
        return tuple(out)

    def _frontier(self, free: tuple[int, ...], budget: int) -> tuple:
        """Pareto set of (tokens/s, $/h, replicas) over plans on ``free`` with <= budget replicas."""
        points = {(0.0, 0.0, ())}
        if budget > 0:
            for sig, stages, left in self._replicas(free):
                tok_s, split = self.value(sig)
                if tok_s <= 0:
                    continue
                usd = sum(t * (self.groups[self.nodes[n][0]].usd_per_gpu_hour or 0.0) for n, t in stages)
                rep = (stages, split)
                for a, b, reps in self.frontier(self._canon(left), budget - 1):
                    points.add((a + tok_s, b + usd, reps + (rep,)))
        return tuple(_pareto(points))

    def _batch_times(self, sig: tuple) -> tuple:
        """Least elapsed seconds of a replica signature serving b = 0..B sequences, over every
        split (its own split per b)."""
        m, L, B = len(sig), self.model.num_layers, self.workload.batch
        links = [None if same else self.cluster.link_gbps(self.groups[a[0]], self.groups[g])
                 for a, (g, _, same) in zip(sig, sig[1:])]
        out = [0.0] + [math.inf] * B
        for split in _compositions(L, m):
            stages = [Stage(self.prof[g], t, n, k == 0, k == m - 1) for k, ((g, t, _), n) in enumerate(zip(sig, split))]
            for b in range(1, B + 1):
                wl = dataclasses.replace(self.workload, batch=b)
                out[b] = min(out[b], estimate_pipeline(self.model, wl, stages, links, self.runtime).elapsed_s)
        return tuple(out)

    def _shared_frontier(self, free: tuple[int, ...]) -> tuple:
        """Makespan vectors (index b: least time for b sequences) of plans on ``free``, Pareto-min."""
        B = self.workload.batch
        vectors = {(0.0,) + (math.inf,) * B}
        for sig, _, left in self._replicas(free):
            e = self.batch_times(sig)
            if not math.isfinite(e[1]):
                continue
            for f in self.shared_frontier(self._canon(left)):
                vectors.add(_combine(f, e))
        return tuple(_pareto_min(vectors))

    def best_shared(self) -> float:
        """Best throughput when the plan's replicas share the batch: B (prompt + output) over
        the least makespan (0 when nothing serves it). No replica cap."""
        start = tuple(g.gpus_per_node for g in self.groups for _ in range(g.count))
        span = min(f[-1] for f in self.shared_frontier(self._canon(start)))
        w = self.workload
        return w.batch * (w.prompt_len + w.output_len) / span if math.isfinite(span) else 0.0

    def best(self, objective: str = "throughput", min_tok_s: float = 0.0):
        """(tokens/s, $/h, replicas) of the best plan, or None (cost: no plan reaches the floor).
        Replicas are ((node, tp) per stage, layers per stage); nodes index ``self.nodes``."""
        start = tuple(g.gpus_per_node for g in self.groups for _ in range(g.count))
        budget = self.max_replicas if self.max_replicas is not None else sum(start)
        pts = self.frontier(self._canon(start), budget)
        if objective == "throughput":
            return max(pts, key=lambda p: (p[0], -p[1]))
        ok = [p for p in pts if p[0] >= min_tok_s * (1 - 1e-12)]
        return min(ok, key=lambda p: (p[1], -p[0])) if ok else None


def _combine(f: tuple, e: tuple) -> tuple:
    """Least makespan for b sequences over a plan (``f``) plus one replica (``e``): the
    replica takes k of them, k = 0..b."""
    return tuple(min(max(e[k], f[b - k]) for k in range(b + 1)) for b in range(len(f)))


def _pareto_min(vectors) -> list:
    """Vectors not beaten everywhere by another (smaller is better)."""
    vs = sorted(set(vectors))
    return [v for v in vs if not any(w != v and all(a <= b for a, b in zip(w, v)) for w in vs)]


def _pareto(points) -> list:
    """Keep plans not beaten on both throughput (higher) and cost (lower)."""
    pts = sorted(points, key=lambda p: (-p[0], p[1]))
    out, best_cost = [], float("inf")
    for p in pts:
        if p[1] < best_cost - 1e-12:
            out.append(p)
            best_cost = p[1]
    return out
