"""Candidate stages and their cost table: the numbers the planner works with.

Everything here is computed by the public cost functions (``solver.cost.stage.stage_time``,
``serving.concurrency``, ``comm.p2p_s``, ``pipeline.activation_bytes``); nothing re-derives physics.

A *stage kind* is (node group, TP degree t, position) with position one of ``only``, ``first``,
``mid``, ``last`` (the first stage holds the embedding, the last the LM head). For each kind:
- ``cap_layers``: the most layers with which the serving model can still run one sequence
  (``serving.concurrency(...).seqs >= 1``: weights, the engine's prefill-step activation
  peak and runtime overhead leave KV blocks for one full context within
  gpu_memory_utilization x capacity; the group profile's ``serving`` settings). A larger
  batch runs in waves, as ``estimate_pipeline`` times it. Kinds that cannot hold one layer
  are pruned;
- per batch size b: arrays over n = 0..L of the prefill time of b prompts and of one decode
  step of b sequences (``stage_time``), seconds; and per serving head, the KV blocks a
  stage of n layers leaves (``serving.kv_capacity_tokens``).
Interchangeable GPUs are merged: a stage is "t GPUs of a node of group g", never GPU ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from solver.cost import comm
from solver.cost.serving import KV_BLOCK_TOKENS, concurrency, kv_capacity_tokens, serving_config
from solver.cost.stage import Stage, activation_bytes, stage_time
from solver.cost.warn import note
from solver.inputs.cluster import Cluster, NodeGroup
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile, profile_for
from solver.inputs.workload import Workload
from solver.errors import InputError

POSITIONS = ("only", "first", "mid", "last")
_FLAGS = {"only": (True, True), "first": (True, False), "mid": (False, False), "last": (False, True)}
# Relative tolerance of the "time is affine in the layer count" check (float rounding only).
_AFFINE_RTOL = 1e-9


def tp_degrees(model: ModelSpec, gpus_per_node: int) -> list[int]:
    """Powers of two dividing the attention heads, at most one node (a TP group never spans
    nodes: design.md section 1)."""
    out, t = [], 1
    while t <= gpus_per_node:
        if model.num_heads % t == 0:
            out.append(t)
        t *= 2
    return out


@dataclass(frozen=True)
class Group:
    """One node group of the cluster with its profile; ``index`` is its position in the pool."""
    index: int
    spec: NodeGroup
    profile: Profile

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def gpus_per_node(self) -> int:
        return self.spec.gpus_per_node

    @property
    def nodes(self) -> int:
        return self.spec.count

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.spec.usd_per_gpu_hour or 0.0


def pool_groups(cluster: Cluster, profiles: list[Profile]) -> list[Group]:
    """Pair every node group with its profile; every GPU type without one is named at once.
    A group whose ``interconnect`` differs from its profile's is planned with the profile's
    measured TP times, and a CalibrationWarning says so."""
    missing = sorted({g.gpu for g in cluster.node_groups if not any(p.matches(g.gpu) for p in profiles)})
    if missing:
        have = ", ".join(p.gpu_name for p in profiles) or "none"
        raise InputError(cluster.where, "gpu", f"no profile for GPU type(s) {', '.join(missing)}; "
                                               f"profiles given: {have}; add --profile profiles/<gpu>.json")
    groups = [Group(i, g, profile_for(g.gpu, profiles)) for i, g in enumerate(cluster.node_groups)]
    for g in groups:
        if g.spec.interconnect != g.profile.interconnect:
            note(f"{cluster.where}: node group {g.name} has interconnect {g.spec.interconnect}, its profile "
                 f"{g.profile.path} was measured on {g.profile.interconnect}; TP communication times are "
                 f"the profile's (re-profile on {g.spec.interconnect} nodes)")
    return groups


@dataclass
class StageKindTable:
    group: int
    tp: int
    position: str
    cap_layers: int
    # batch -> (prefill_s[n], decode_s[n]) for n = 0..L (index 0 unused, inf)
    times: dict = field(default_factory=dict)


class CostTable:
    """Memory caps, stage times and link times for one (model, workload, pool)."""

    def __init__(self, model: ModelSpec, workload: Workload, groups: list[Group], cluster: Cluster,
                 runtime: str = "vllm"):
        self.model, self.workload, self.groups, self.cluster, self.runtime = model, workload, groups, cluster, runtime
        self.num_layers = model.num_layers
        self.kinds: dict[tuple[int, int, str], StageKindTable] = {}
        for g in groups:
            for t in tp_degrees(model, g.gpus_per_node):
                for pos in POSITIONS:
                    cap = self._cap_layers(g.profile, t, pos)
                    if cap >= 1:
                        self.kinds[(g.index, t, pos)] = StageKindTable(g.index, t, pos, cap)
        self._links: dict = {}
        self._batch_caps: dict = {}
        self._kv: dict = {}
        self.memo: dict = {}  # derived arrays of the split search (solver.plan.split), by their inputs

    def _stage(self, profile: Profile, tp: int, n: int, pos: str) -> Stage:
        first, last = _FLAGS[pos]
        return Stage(profile, tp, n, first, last)

    def _cap_layers(self, profile: Profile, tp: int, pos: str, seqs: int = 1) -> int:
        """Largest n with which the stage still runs ``seqs`` sequences at once (memory grows
        with n: bisection); an ``only`` stage must hold every layer."""
        if pos == "only":
            return self.num_layers if self._fits(profile, tp, self.num_layers, pos, seqs) else 0
        lo, hi = 0, self.num_layers
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._fits(profile, tp, mid, pos, seqs):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _fits(self, profile: Profile, tp: int, n: int, pos: str, seqs: int = 1) -> bool:
        """The serving model runs at least ``seqs`` sequences at once on this stage
        (docs/metrics.md); the planner's rule is ``seqs`` = 1."""
        stage = self._stage(profile, tp, n, pos)
        return concurrency([stage], self.model, self.workload, serving_config(profile)).seqs >= seqs

    def batch_cap_layers(self, group: int, tp: int, pos: str) -> int:
        """Most layers with which the stage keeps the whole batch resident (capped by the
        engine's max_num_seqs): the budget a memory-greedy baseline fills up to."""
        key = (group, tp, pos)
        if key not in self._batch_caps:
            prof = self.groups[group].profile
            seqs = min(self.workload.batch, serving_config(prof).max_num_seqs)
            self._batch_caps[key] = self._cap_layers(prof, tp, pos, seqs)
        return self._batch_caps[key]

    def kind(self, group: int, tp: int, pos: str) -> StageKindTable | None:
        return self.kinds.get((group, tp, pos))

    def times(self, group: int, tp: int, pos: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(prefill_s[n], decode_s[n]) of ``batch`` sequences (one prefill pass of their
        prompts, one decode step) on a stage of n layers; inf beyond the memory cap.
        Computed with ``stage_time``; when the time is affine in n (checked at three points)
        the rest is filled by the same line, else every n is evaluated."""
        k = self.kinds[(group, tp, pos)]
        if batch in k.times:
            return k.times[batch]
        prof, mb, L = self.groups[group].profile, batch, self.num_layers
        pre, dec = np.full(L + 1, np.inf), np.full(L + 1, np.inf)

        def at(n: int):
            st = stage_time(self._stage(prof, tp, n, pos), self.model, self.workload, mb, self.runtime)
            return st.prefill_s, st.decode_step_s

        ns = sorted({1, min(2, k.cap_layers), k.cap_layers})
        pts = {n: at(n) for n in ns}
        if len(ns) == 3 and _affine(pts, ns):
            (p1, d1), (p2, d2) = pts[ns[0]], pts[ns[1]]
            n = np.arange(1, k.cap_layers + 1)
            pre[1:k.cap_layers + 1] = p1 + (n - 1) * (p2 - p1)
            dec[1:k.cap_layers + 1] = d1 + (n - 1) * (d2 - d1)
        else:
            for n in range(1, k.cap_layers + 1):
                pre[n], dec[n] = pts[n] if n in pts else at(n)
        k.times[batch] = (pre, dec)
        return pre, dec

    def link_times(self, sender: int, receiver: int, same_node: bool, batch: int,
                   sender_tp: int = 1) -> tuple[float, float]:
        """(prefill_s, decode_s): ``batch`` sequences' activations (their prompts; one token
        each) from a stage of group ``sender`` (TP ``sender_tp``: one chunk per rank) to the
        next stage; ``same_node``: inside one node (no NIC)."""
        key = (sender, receiver, same_node, batch, sender_tp)
        if key not in self._links:
            a, b = self.groups[sender], self.groups[receiver]
            gbps = None if same_node else self.cluster.link_gbps(a.spec, b.spec)
            pre = activation_bytes(self.model, batch * self.workload.prompt_len, self.workload, self.runtime)
            dec = activation_bytes(self.model, batch, self.workload, self.runtime)
            self._links[key] = (comm.p2p_s(a.profile, pre, gbps, senders=sender_tp),
                                comm.p2p_s(a.profile, dec, gbps, senders=sender_tp))
        return self._links[key]

    def kv_blocks(self, group: int, tp: int, pos: str, head: int) -> np.ndarray:
        """KV blocks the engine finds on one GPU of a stage of n layers (index n = 0..L; 0
        beyond the kind's memory cap), under the serving settings of group ``head``'s
        profile (the engine is one process: its first stage's settings), by
        ``serving.kv_capacity_tokens``."""
        cfg = serving_config(self.groups[head].profile)
        key = (group, tp, pos, cfg)
        if key not in self._kv:
            prof, cap = self.groups[group].profile, self.kinds[(group, tp, pos)].cap_layers
            out = np.zeros(self.num_layers + 1, dtype=np.int64)
            for n in range(1, cap + 1):
                stage = self._stage(prof, tp, n, pos)
                out[n] = kv_capacity_tokens([stage], self.model, self.workload, cfg) // KV_BLOCK_TOKENS
            self._kv[key] = out
        return self._kv[key]


def _affine(pts: dict, ns: list[int]) -> bool:
    (n0, n1, n2) = ns
    for i in (0, 1):
        y0, y1, y2 = pts[n0][i], pts[n1][i], pts[n2][i]
        slope = (y1 - y0) / (n1 - n0)
        pred = y0 + slope * (n2 - n0)
        if abs(pred - y2) > _AFFINE_RTOL * max(abs(y2), 1e-30):
            return False
    return True
