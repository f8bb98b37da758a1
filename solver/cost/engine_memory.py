"""What vLLM reserves on one GPU of a stage, and the KV cache it leaves (docs/vllm_memory.md).

vLLM's rule (V1 ``Worker.determine_available_memory``; V0 ``Worker.determine_num_available_blocks``):

    kv_bytes = gpu_memory_utilization x total - weights - non_torch - activation_peak

* ``total``: what CUDA reports (``torch.cuda.mem_get_info()[1]``: V0 ``worker.py``, V1
  ``gpu_worker.py``), the profile's ``gpu.memory_cuda_total_gib`` -- below nvidia-smi's
  ``gpu.memory_gib``, which stands in (a ``default``) where the profile does not give it.
* ``non_torch``: memory outside torch's allocator after the profile run (CUDA context,
  NCCL communicators, custom all-reduce IPC buffers): ``base`` on one GPU, ``+ tp_extra``
  with TP >= 2, ``+ pp_extra`` with PP >= 2 (profile ``memory.vllm.non_torch_gib``); from
  0.11 the communicators exist before vLLM's first snapshot and the extras are not counted
  (``engine_settings.comm_in_non_torch``).
* ``activation_peak``: the torch peak of the profile run -- one dummy forward of
  ``max_num_batched_tokens`` tokens and, on the last stage, the sampler over
  ``min(max_num_seqs, max_num_batched_tokens)`` rows -- as a max over phases
  (``solver.cost.activation``), times (1 + fragmentation). V1's sampler phase is vLLM's code
  path, not a fit: 38 B per logit on PyTorch's sort, 14 B on FlashInfer or Triton
  (``engine_settings.sampler_bytes_per_logit``); V0's is the profile's fitted ``c_v``. Where
  the version runs the model on Model Runner V2 (``engine_settings.v2_runner``: 0.22-0.28 by
  architecture, every model from 0.29) its dummy sampler skips top-k/top-p: 6 B per logit in
  0.22-0.25, 2 in 0.26-0.32 (4 + 2/t for the TP all-gather), 14 from 0.33, whose second pass
  exercises every sampling parameter; and from 0.27 the budget also counts V2's persistent
  per-request sampler tables on the last stage (``engine_settings.v2_sampler_buffer_bytes``).
* CUDA-graph memory (profile ``memory.vllm.cudagraph_gib``, the amount): before 0.20 vLLM
  captures graphs after the KV cache is sized, and it is reported beside it; from 0.20 the
  worker estimates it first and subtracts it from the budget
  (``engine_settings.cudagraphs_in_budget``: the version decides, not the profile), except
  where the version runs the model on Model Runner V2, whose estimate is 0 before 0.29
  (Qwen3 in 0.22-0.24, Llama and Mistral in 0.24). With ``--enforce-eager`` no graphs are
  captured: none reported, none subtracted.

Blocks of ``block_size`` tokens (the version's: 16, 64 from 0.34) per stage; every stage gets
the smallest stage's count.
A profile without ``memory.vllm`` falls back on ``memory.runtime_overhead_gib`` and its
activation model; the result is then uncalibrated (``EngineMemory.calibrated`` false).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solver.cost import engine_settings as es
from solver.cost.activation import activation_peak_bytes, phase_terms, phases_peak
from solver.cost.memory import LOGITS_BYTES, kv_bytes_per_token, stage_weight_bytes
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload
from solver.units import GIB


@dataclass(frozen=True)
class StageBudget:
    """Bytes on one GPU of one stage, as vLLM accounts them."""
    total: float
    budget: float            # gpu_memory_utilization x total
    weights: float
    non_torch: float
    activation_peak: float
    activation_phase: str    # the phase that sets the peak ("" for the fallback model)
    cudagraphs: float
    kv_cache: float          # what the budget leaves (negative: nothing fits)
    kv_bytes_per_block: float
    calibrated: bool         # the profile has a memory.vllm section
    runner_buffers: float = 0.0  # Model Runner V2's persistent sampler tables the budget counts
    graphs_in_budget: bool = False  # the version sizes the KV cache after subtracting the graphs

    @property
    def blocks(self) -> int:
        return max(0, math.floor(self.kv_cache / self.kv_bytes_per_block))

    def as_gib(self) -> dict:
        return {"weights": self.weights / GIB, "non_torch": self.non_torch / GIB,
                "activation_peak": self.activation_peak / GIB, "cuda_graphs": self.cudagraphs / GIB,
                "runner_buffers": self.runner_buffers / GIB,
                "kv_cache": max(0.0, self.kv_cache) / GIB, "budget": self.budget / GIB, "total": self.total / GIB}


def kv_cache_bytes(total: float, util: float, weights: float, non_torch: float, activation_peak: float,
                   graphs_in_budget: float = 0.0, runner_buffers: float = 0.0) -> float:
    """vLLM's budget rule, in bytes: what ``util`` x ``total`` leaves after weights, non-torch
    memory, the profile run's peak, (where the version counts them first) CUDA graphs and the
    model runner's persistent buffers it counts (``runner_buffer_bytes``). Negative: nothing
    fits. The one copy: stage_budget and calibrate's vLLM fit both call it."""
    return util * total - weights - non_torch - activation_peak - graphs_in_budget - runner_buffers


def runner_buffer_bytes(version: tuple[int, int] | None, model: ModelSpec, last: bool, max_num_seqs: int) -> float:
    """Model Runner V2's persistent sampler tables where the budget counts them: the last stage,
    from 0.27 (``engine_settings.v2_sampler_buffer_bytes``); else 0."""
    if not last or not es.v2_runner(version, model.model_type, model.weight_format is not None):
        return 0.0
    return float(es.v2_sampler_buffer_bytes(version, max_num_seqs, model.vocab_size)[0])


def non_torch_bytes(profile: Profile, tp: int, pp: int, runtime: str = "vllm",
                    version: tuple[int, int] | None = None) -> float:
    """``base`` (+ ``tp_extra`` / ``pp_extra``, the communicators, where the version's snapshot
    still counts them: ``engine_settings.comm_in_non_torch``, before 0.11)."""
    em = profile.engine_memory.get(runtime)
    if em is None:
        return profile.runtime_overhead_gib.value * GIB
    nt = em.non_torch_gib
    gib = nt["base"].value
    comm = es.comm_in_non_torch(version)[0]
    if comm and tp >= 2 and "tp_extra" in nt:
        gib += nt["tp_extra"].value
    if comm and pp >= 2 and "pp_extra" in nt:
        gib += nt["pp_extra"].value
    return gib * GIB


def sampler_phases(phases: dict, version: tuple[int, int] | None, rows: int, flashinfer: bool | None = None,
                   v2: bool = False, tp: int = 1) -> dict:
    """The profile's phases with V1's (or, ``v2``, Model Runner V2's) sampler phase from the
    version's code path (``engine_settings.sampler_bytes_per_logit``: bytes per logit / the 4 B
    of ``c_v``'s term); V0 keeps the fitted one."""
    if version is None or not es.is_v1(version):
        return phases
    per_logit = es.sampler_bytes_per_logit(version, rows, flashinfer, v2, tp)[0]
    return {**phases, "sampler": {"c_v": per_logit / LOGITS_BYTES}}


def flashinfer_at(corner: str | None) -> bool | None:
    """Whether FlashInfer samples, where the version asks (0.8-0.11) and no input says: the
    optimistic interval corner takes it, the expected value and the low corner pip's default
    install, without it (None)."""
    return True if corner == "high" else None


def profile_run_peak(profile: Profile, model: ModelSpec, tp: int, last: bool, tokens: int, sampler_rows: int,
                     act_bytes: float, runtime: str = "vllm",
                     version: tuple[int, int] | None = None) -> tuple[float, str]:
    """(bytes, phase) of the profile run's torch peak above weights on one GPU."""
    em = profile.engine_memory.get(runtime)
    if em is None:  # the uncalibrated fallback: the profile's activation model, last-token logits
        return activation_peak_bytes(profile, model, tp, 1, tokens, act_bytes, last=last), ""
    terms = phase_terms(model, tp, 1, tokens, act_bytes, sampler_rows=sampler_rows if last else 0)
    flashinfer = flashinfer_at(profile.corner)
    v2 = es.v2_runner(version, model.model_type, model.weight_format is not None)
    peak, phase = phases_peak(sampler_phases(em.activation.phases, version, sampler_rows, flashinfer, v2, tp), terms)
    return peak * (1.0 + em.fragmentation_frac.value), phase


def stage_budget(profile: Profile, model: ModelSpec, tp: int, pp: int, n_layers: int, first: bool, last: bool,
                 workload: Workload, cfg, runtime: str = "vllm") -> StageBudget:
    """``cfg`` is a :class:`solver.cost.serving.ServingConfig` (engine settings resolved)."""
    em = profile.engine_memory.get(runtime)
    total = profile.cuda_total_gib().value * GIB
    budget = cfg.gpu_memory_utilization * total
    weights = stage_weight_bytes(model, tp, n_layers, first, last, workload.weight_bytes)
    tokens = cfg.batched_tokens(workload)
    act, phase = profile_run_peak(profile, model, tp, last, tokens, min(cfg.max_num_seqs, tokens),
                                  workload.act_bytes, runtime, cfg.version)
    non_torch = non_torch_bytes(profile, tp, pp, runtime, cfg.version)
    graphs = em.cudagraph_gib.value * GIB if em is not None and not cfg.enforce_eager else 0.0
    in_budget = es.cudagraphs_in_budget(cfg.version, cfg.enforce_eager, model.model_type,
                                        model.weight_format is not None)[0]
    buffers = runner_buffer_bytes(cfg.version, model, last, cfg.max_num_seqs)
    kv = kv_cache_bytes(total, cfg.gpu_memory_utilization, weights, non_torch, act, graphs if in_budget else 0.0,
                        buffers)
    per_block = cfg.block_size * kv_bytes_per_token(model, tp, n_layers, workload.kv_bytes, workload.context_len,
                                                    first, last)
    return StageBudget(total, budget, weights, non_torch, act, phase, graphs, kv, per_block, em is not None, buffers,
                       in_budget and graphs > 0)
