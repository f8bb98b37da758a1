"""How many sequences a vLLM-like engine runs at once on an offline batch (docs/metrics.md).

vLLM (0.10, V1 engine) sizes its paged KV cache at start-up: of ``gpu_memory_utilization`` x
the GPU's memory it subtracts the weights, the peak of a dummy forward of
``max_num_batched_tokens`` tokens and the non-torch memory (CUDA context, NCCL buffers), and
gives the rest to KV blocks; every pipeline stage gets the same number of blocks (the
smallest stage's). A request holds blocks for its whole context, so at most
``kv_tokens // context`` sequences run at once (the "maximum concurrency" vLLM logs), also
capped by ``max_num_seqs`` and the batch. A larger batch runs in waves.

Every constant comes from the profile's ``memory`` and ``serving`` sections; a key the
profile lacks takes the vLLM default below, and :class:`ServingConfig` lists it in
``assumed`` so reports can say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solver.cost.memory import activation_peak_bytes, kv_bytes_per_token, stage_weight_bytes
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload
from solver.units import GIB

# vLLM allocates KV in blocks of 16 tokens (CacheConfig.block_size default on CUDA).
KV_BLOCK_TOKENS = 16
# vLLM 0.10 SchedulerConfig: without chunked prefill, max_num_batched_tokens defaults to
# max(max_model_len, 2048) (_DEFAULT_MAX_NUM_BATCHED_TOKENS).
MIN_BATCHED_TOKENS = 2048

# key -> (default, where it comes from). Used when the profile's serving section lacks it.
DEFAULTS = {
    "gpu_memory_utilization": (0.9, "vLLM EngineArgs default gpu_memory_utilization=0.9"),
    "max_num_seqs": (256, "vLLM default max_num_seqs=256 (SchedulerConfig, non-H100 offline)"),
    "decode_step_overhead_ms": (0.0, "assumption: no engine time beyond GPU kernels per decode step; "
                                     "fit with `calibrate fit-serving`"),
    "prefill_overhead_ms": (0.0, "assumption: no engine time beyond GPU kernels per prefill step"),
}


@dataclass(frozen=True)
class ServingConfig:
    """Engine settings and overheads for one deployment (seconds, fractions, counts)."""
    gpu_memory_utilization: float
    max_num_seqs: int
    max_num_batched_tokens: int | None  # None: max(prompt + output, 2048), see above
    decode_step_overhead_s: float
    prefill_overhead_s: float
    assumed: tuple[str, ...] = ()  # keys that came from DEFAULTS, not the profile

    def batched_tokens(self, workload: Workload) -> int:
        """Prompt tokens one prefill step may take. Assumes max_model_len = prompt + output
        (a deployment sized for its workload), as vLLM's non-chunked default does."""
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        return max(workload.context_len, MIN_BATCHED_TOKENS)


def serving_config(profile: Profile, gpu_memory_utilization: float | None = None,
                   max_num_seqs: int | None = None) -> ServingConfig:
    """The profile's ``serving`` section, CLI overrides on top, vLLM defaults underneath."""
    sv, assumed = profile.serving, []

    def pick(key: str, override=None) -> float:
        if override is not None:
            return float(override)
        if key in sv:
            return sv[key].value
        assumed.append(key)
        return DEFAULTS[key][0]

    batched = sv.get("max_num_batched_tokens")
    return ServingConfig(
        gpu_memory_utilization=pick("gpu_memory_utilization", gpu_memory_utilization),
        max_num_seqs=int(pick("max_num_seqs", max_num_seqs)),
        max_num_batched_tokens=int(batched.value) if batched else None,
        decode_step_overhead_s=pick("decode_step_overhead_ms") * 1e-3,
        prefill_overhead_s=pick("prefill_overhead_ms") * 1e-3,
        assumed=tuple(assumed),
    )


def kv_budget_bytes(profile: Profile, model: ModelSpec, tp: int, n_layers: int, first: bool, last: bool,
                    workload: Workload, cfg: ServingConfig) -> float:
    """KV-cache bytes on one GPU of a stage: utilization x memory - weights - the dummy
    forward's activation peak - runtime overhead (may be negative: nothing fits)."""
    usable = cfg.gpu_memory_utilization * profile.memory_gib.value * GIB
    weights = stage_weight_bytes(model, tp, n_layers, first, last, workload.weight_bytes)
    act = activation_peak_bytes(profile, model, tp, 1, cfg.batched_tokens(workload), workload.act_bytes,
                                last=last)
    return usable - weights - act - profile.runtime_overhead_gib.value * GIB


def kv_capacity_tokens(stages, model: ModelSpec, workload: Workload, cfg: ServingConfig) -> int:
    """Tokens of KV cache the engine holds: the smallest stage's blocks x block size."""
    blocks = []
    for s in stages:
        budget = kv_budget_bytes(s.profile, model, s.tp, s.n_layers, s.first, s.last, workload, cfg)
        per_block = KV_BLOCK_TOKENS * kv_bytes_per_token(model, s.tp, s.n_layers, workload.kv_bytes,
                                                          workload.context_len, s.first, s.last)
        blocks.append(max(0, math.floor(budget / per_block)))
    return min(blocks) * KV_BLOCK_TOKENS


@dataclass(frozen=True)
class Concurrency:
    seqs: int           # sequences running at once (0: one sequence does not fit)
    limited_by: str     # "batch", "max_num_seqs" or "kv_cache"
    kv_capacity_tokens: int
    waves: tuple[int, ...]  # sequences in each wave, in order


def concurrency(stages, model: ModelSpec, workload: Workload, cfg: ServingConfig) -> Concurrency:
    """min(batch, max_num_seqs, KV tokens // context rounded up to whole blocks)."""
    cap = kv_capacity_tokens(stages, model, workload, cfg)
    per_seq = math.ceil(workload.context_len / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS
    limits = {"batch": workload.batch, "max_num_seqs": cfg.max_num_seqs, "kv_cache": cap // per_seq}
    name = min(limits, key=lambda k: limits[k])  # ties: the first listed (batch) wins
    seqs = limits[name]
    if seqs <= 0:
        return Concurrency(0, name, cap, ())
    full, rest = divmod(workload.batch, seqs)
    return Concurrency(seqs, name, cap, (seqs,) * full + ((rest,) if rest else ()))
