"""What the planner returns: plans on concrete nodes, solver status and baselines.

Plain data: the validator, the reports and the JSON writer read these and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class PlacedStage:
    """``tp`` GPUs of node ``node_index`` of group ``group`` holding layers
    [first_layer, first_layer + n_layers)."""
    group: str
    node_index: int
    gpu: str
    tp: int
    first_layer: int
    n_layers: int

    @property
    def node_id(self) -> str:
        return f"{self.group}/{self.node_index}"


@dataclass(frozen=True)
class PlacedReplica:
    stages: tuple[PlacedStage, ...]
    throughput_tok_s: float   # estimate_pipeline on this placement
    usd_per_hour: float
    bottleneck: str
    shape: str = ""
    concurrency: int = 0           # sequences the serving model runs at once (0: not reported)
    waves: tuple[int, ...] = ()    # sequences per wave; the replica's batch in order
    batch: int = 0                 # its share of a batch shared by the pool (0: the workload's batch)
    elapsed_s: float = 0.0         # estimate_pipeline's time for its batch

    @property
    def gpus(self) -> int:
        return sum(s.tp for s in self.stages)


@dataclass(frozen=True)
class Plan:
    replicas: tuple[PlacedReplica, ...]
    tokens_per_seq: int = 0  # prompt + output when the replicas share one batch (0: a batch each)

    @property
    def shared(self) -> bool:
        return self.tokens_per_seq > 0

    @property
    def throughput_tok_s(self) -> float:
        """A batch each: the sum over replicas. A shared batch: all its tokens over the
        makespan (the slowest replica's time), docs/metrics.md."""
        if not self.shared:
            return sum(r.throughput_tok_s for r in self.replicas)
        span = max((r.elapsed_s for r in self.replicas), default=0.0)
        return sum(r.batch for r in self.replicas) * self.tokens_per_seq / span if span > 0 else 0.0

    @property
    def usd_per_hour(self) -> float:
        return sum(r.usd_per_hour for r in self.replicas)

    @property
    def gpus(self) -> int:
        return sum(r.gpus for r in self.replicas)


@dataclass
class PlanResult:
    """``status`` is ``optimal`` only when the MILP solver proved it over its columns
    (docs/metrics.md); with ``heuristic_splits`` > 0 some columns' layer splits were searched
    coarse to fine, so the optimum is over the searched layouts only;
    ``objective``/``best_bound`` are in tokens/s (throughput) or
    $/h (cost); ``gap`` = |bound - objective| / |objective|."""
    status: str
    objective: str
    objective_value: float | None
    best_bound: float | None
    gap: float | None
    solve_s: float
    solver: str
    plan: Plan
    baselines: dict = field(default_factory=dict)  # name -> Plan or None
    columns: int = 0
    notes: list = field(default_factory=list)
    heuristic_splits: int = 0  # columns whose layer split was not searched exhaustively
    search_space: str = ""     # what the shapes (columns) range over
    validator: str = ""        # the independent validator's verdict ("ok"; else plan() raises)

    def as_dict(self) -> dict:
        return asdict(self)
