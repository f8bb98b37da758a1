"""Predicted latency of one fixed batch (vLLM ``benchmark_latency``): a prefill of ``batch``
prompts, then ``output_len - 1`` decode steps at the mean context, on one TP group (PP 1).
Shared by ``calibrate fit-step-overhead`` and ``scripts/bench_fidelity.py``."""

from __future__ import annotations

from dataclasses import dataclass

from solver.cost.ops.compose import OpTime
from solver.cost.stage import Stage, stage_breakdown, stage_time
from solver.inputs.latency_csv import LatencyRow
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload


@dataclass(frozen=True)
class LatencyPrediction:
    prefill_s: float
    decode_step_s: float
    kernels_prefill_s: float      # without the engine's per-step overhead
    kernels_decode_step_s: float

    def latency_s(self, output_len: int) -> float:
        return self.prefill_s + max(0, output_len - 1) * self.decode_step_s


def _kernels(ops: list[OpTime]) -> float:
    return sum(o.total_s for o in ops if o.kind != "overhead")


def predict_latency(row: LatencyRow, model: ModelSpec, profile: Profile) -> LatencyPrediction:
    if row.pp != 1:
        raise ValueError("latency rows are single-stage (pp 1)")
    w = Workload(batch=row.batch, prompt_len=row.input_len, output_len=row.output_len, dtype=row.dtype)
    stage = Stage(profile, row.tp, model.num_layers, first=True, last=True)
    t = stage_time(stage, model, w, row.batch)
    ops = stage_breakdown(stage, model, w, row.batch)
    if ops is None:  # roofline: no separate overhead
        return LatencyPrediction(t.prefill_s, t.decode_step_s, t.prefill_s, t.decode_step_s)
    return LatencyPrediction(t.prefill_s, t.decode_step_s, _kernels(ops[0]), _kernels(ops[1]))
