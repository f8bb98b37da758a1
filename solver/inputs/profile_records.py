"""The profile's records: numbers with provenance (``Value``), efficiency curves, collective
fits and the ``Profile`` itself -- what ``solver/inputs/profile.py`` parses a profile file into
(schema in ``docs/profile.md``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from solver.errors import InputError
from solver.inputs.memory_models import PhasesModel


@dataclass(frozen=True)
class Value:
    """A number with provenance."""
    value: float
    source: str
    ref: str = ""
    range: dict | None = None
    fit_error: dict | None = None
    plausible: tuple[float, float] | None = None  # [low, high] of a default (intervals)


@dataclass(frozen=True)
class Curve:
    """Efficiency (0..1] as a function of one size quantity ``x``.

    ``constant``: value. ``saturating``: eff_max * x / (x + x_half) -- small kernels do
    not fill the GPU (a roofline-style ramp). ``table``: linear in log(x) between points,
    clamped at the ends.
    """
    kind: str
    x_quantity: str
    params: dict
    source: str
    ref: str = ""
    range: dict | None = None
    fit_error: dict | None = None
    plausible_scale: tuple[float, float] | None = None  # default curves: [low, high] multipliers

    def at(self, x: float) -> float:
        if self.kind == "constant":
            return float(self.params["value"])
        if self.kind == "saturating":
            return float(self.params["eff_max"]) * x / (x + float(self.params["x_half"]))
        xs, ys = self.params["x"], self.params["y"]
        return _loglinear_interp(xs, ys, x)

    def in_range(self, x: float) -> bool:
        lo_hi = (self.range or {}).get(self.x_quantity)
        return lo_hi is None or lo_hi[0] <= x <= lo_hi[1]


def _loglinear_interp(xs: list[float], ys: list[float], x: float) -> float:
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    for i in range(1, len(xs)):
        if x <= xs[i]:
            w = (math.log(x) - math.log(xs[i - 1])) / (math.log(xs[i]) - math.log(xs[i - 1]))
            return float(ys[i - 1] + w * (ys[i] - ys[i - 1]))
    return float(ys[-1])


@dataclass(frozen=True)
class CollectiveFit:
    """t(S) = alpha + factor(n) * S / busbw, nccl-tests conventions (design.md section 4).

    ``table`` (size_bytes -> time_us), when present, is used inside its range, interpolated
    ``table_interp`` ("loglog", the default, or "linear" in S); it captures the protocol/algorithm
    switches one line cannot. ``lines`` ((alpha_us, busbw_gbps), ...), when present, replaces
    both: t = min_k(alpha_k + factor(n) * S / busbw_k), the lower envelope of (algorithm,
    protocol) lines.
    """
    collective: str
    ranks: int
    scope: str
    alpha_us: float
    busbw_gbps: float
    source: str
    ref: str = ""
    range_bytes: tuple[int, int] | None = None
    max_rel_err: float | None = None
    mean_rel_err: float | None = None
    nominal_gbps: float | None = None
    table_size_bytes: tuple[float, ...] = ()
    table_time_us: tuple[float, ...] = ()
    table_interp: str = "loglog"
    lines: tuple[tuple[float, float], ...] = ()
    held_out_rel_err: tuple[tuple[float, float], ...] = ()  # (size_bytes, predicted/measured - 1)


@dataclass(frozen=True)
class EngineAllReduce:
    """A TP all-reduce as a serving engine pays it, per group size (``serving.tp_allreduce``):
    t(S) = 2(n-1) x hop_us + 2(n-1)/n x S / busbw -- a ring's 2(n-1) sequential steps."""
    ranks: int
    hop_us: float
    busbw_gbps: float
    source: str
    ref: str = ""
    fit_error: dict | None = None
    # [smallest, largest] mean message (bytes per call) of the fit rows: where the fit pins
    # t(S) (calibrate/serving/fit.py); None: not recorded
    message_bytes: tuple[float, float] | None = None


@dataclass(frozen=True)
class ActivationModel:
    model: str
    coef: dict
    source: str
    runtime: str = ""
    ref: str = ""
    range: dict | None = None
    fit_error: dict | None = None


@dataclass(frozen=True)
class Profile:
    path: str
    gpu_name: str
    aliases: tuple[str, ...]
    interconnect: str
    memory_gib: Value
    intra_node_gbps: Value
    peak_tflops: dict  # dtype -> Value
    hbm_gbps: Value
    collectives: tuple[CollectiveFit, ...]
    network: dict  # name -> Value
    activation: ActivationModel | PhasesModel | None
    runtime_overhead_gib: Value
    fragmentation_frac: Value
    prefill_efficiency: Curve
    decode_efficiency: Curve
    provenance: dict
    serving: dict = field(default_factory=dict)  # name -> Value, keys of SERVING_KEYS
    engine_allreduce: tuple[EngineAllReduce, ...] = ()  # serving.tp_allreduce
    # Optional: full HBM passes over the unsharded T x h activation per layer in prefill
    # (norms, residual adds): + passes*T*h*p/hbm seconds per layer. None: not calibrated.
    prefill_elementwise_passes: Value | None = None
    # memory.<runtime> (solver/inputs/memory_models.py): the engine's own memory accounting
    engine_memory: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)  # schema v2: runtime key -> ops_profile.OpTables
    raw: dict = field(default_factory=dict, repr=False)
    from_folder: bool = False  # found by globbing a --profile folder (an explicit file beats it)
    # CUDA compute capability (SM version, e.g. 8.0 for A100): which weight schemes the GPU
    # runs (solver.inputs.capability). None: not given, the peak_tflops keys decide.
    compute_capability: Value | None = None
    # "" for the profile as written; "low" / "high" for an interval corner of it
    # (solver.cost.intervals.corner): what the serving model may treat as pessimistic/optimistic
    corner: str = ""
    # The total CUDA reports (cudaMemGetInfo, torch.cuda.mem_get_info): what vLLM multiplies by
    # gpu_memory_utilization. Below nvidia-smi's ``memory_gib``. None: not given (cuda_total_gib).
    memory_cuda_total_gib: Value | None = None

    def cuda_total_gib(self) -> Value:
        """``gpu.memory_cuda_total_gib``, else nvidia-smi's total as a ``default`` (an upper
        bound: its low end comes from solver.cost.intervals.SPREAD)."""
        if self.memory_cuda_total_gib is not None:
            return self.memory_cuda_total_gib
        return Value(self.memory_gib.value, "default", "gpu.memory_cuda_total_gib absent: nvidia-smi's "
                                                       "gpu.memory_gib stands in (an upper bound)")

    def matches(self, gpu: str) -> bool:
        key = normalize_gpu_name(gpu)
        return key in {normalize_gpu_name(n) for n in (self.gpu_name, *self.aliases)}

    def peak_flops(self, dtype: str) -> float:
        """FLOP/s for matmuls with ``dtype`` weights. fp8 weights on a GPU with no ``fp8`` rate
        run as W8A16 (kernels dequantize to 16 bits): the bf16, else fp16, rate. A missing 16-bit
        rate is never substituted (V100: fp16 tensor cores, no bf16): InputError."""
        v = self.peak_tflops.get(dtype)
        if v is None and dtype == "fp8":
            v = self.peak_tflops.get("bf16") or self.peak_tflops.get("fp16")
        if v is None:
            have = sorted(self.peak_tflops)
            raise InputError(self.path, "gpu.peak_tflops",
                             f"no {dtype} rate ({self.gpu_name} has no {dtype} tensor cores listed); "
                             f"use --dtype {' or --dtype '.join(have)}")
        return v.value * 1e12

    def collective(self, collective: str, scope: str) -> list[CollectiveFit]:
        return [c for c in self.collectives if c.collective == collective and c.scope == scope]


def normalize_gpu_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())
