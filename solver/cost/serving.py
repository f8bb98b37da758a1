"""How many sequences a vLLM-like engine runs at once on an offline batch (docs/metrics.md).

vLLM (0.10, V1 engine) sizes its paged KV cache at start-up: of ``gpu_memory_utilization`` x
the GPU's memory it subtracts the weights, the peak of a dummy forward of
``max_num_batched_tokens`` tokens and the non-torch memory (CUDA context, NCCL buffers), and
gives the rest to KV blocks; every pipeline stage gets the same number of blocks (the
smallest stage's). A request holds blocks for its whole context, so at most
``kv_tokens // context`` sequences run at once (the "maximum concurrency" vLLM logs), also
capped by ``max_num_seqs`` and the batch. A larger batch runs in waves.

Every constant comes from the profile's ``memory`` and ``serving`` sections and the engine
settings (solver/cost/engine_settings.py); a key neither the user nor the profile gives
takes vLLM's default for the version, and :class:`ServingConfig` lists it in ``assumed``.
The KV accounting itself is solver/cost/engine_memory.py.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from solver.cost import engine_settings as es
from solver.cost.engine_memory import StageBudget, stage_budget
from solver.cost.memory import kv_blocks
from solver.cost.warn import note
from solver.errors import InputError
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload

# vLLM allocates KV in blocks of 16 tokens (CacheConfig.block_size default on CUDA through 0.33;
# ServingConfig.block_size holds the version's, 64 from 0.34).
KV_BLOCK_TOKENS = es.RULES["block_size"][0]

# key -> (default, where it comes from). Used when the profile's serving section lacks it.
DEFAULTS = {
    "decode_step_overhead_ms": (0.0, "assumption: no engine time beyond GPU kernels per decode step; "
                                     "fit with `calibrate fit-serving`"),
    "prefill_overhead_ms": (0.0, "assumption: no engine time beyond GPU kernels per prefill step"),
}


@dataclass(frozen=True)
class ServingConfig:
    """Engine settings and overheads for one deployment (seconds, fractions, counts).

    ``max_model_len`` None: the workload's longest sequence (``Workload.max_len``: prompt +
    output, or the longest request of a length histogram; a deployment sized for its workload); ``enable_chunked_prefill`` / ``max_num_batched_tokens`` None: vLLM's rule for
    ``version`` (solver/cost/engine_settings.py), resolved against that length."""
    gpu_memory_utilization: float
    max_num_seqs: int
    max_num_batched_tokens: int | None
    decode_step_overhead_s: float
    prefill_overhead_s: float
    assumed: tuple[str, ...] = ()  # keys that came from DEFAULTS/vLLM's rules, not the user or profile
    max_model_len: int | None = None
    enable_chunked_prefill: bool | None = None
    entry_point: str = "llm"
    version: tuple[int, int] = (0, 10)
    gpu_name: str = ""
    gpu_memory_gib: float = 0.0
    block_size: int = KV_BLOCK_TOKENS
    sources: tuple[tuple[str, str], ...] = ()  # (setting, where its value comes from)
    enforce_eager: bool = False  # no CUDA graphs (none captured, none in the KV budget)
    # KV blocks allocated as tokens are written (V1; solver/cost/kv_admission.py) rather than a
    # whole context reserved per sequence: the optimistic interval corner only (docs/metrics.md)
    kv_on_demand: bool = False

    def model_len(self, workload: Workload) -> int:
        return self.max_model_len if self.max_model_len is not None else workload.max_len

    def chunked(self, workload: Workload) -> bool:
        """V1 0.8-0.11 run chunked prefill whatever the flag says (engine_settings.RULES["v1_chunked"])."""
        if self.enable_chunked_prefill is not None and not es.chunked_forced(self.version):
            return self.enable_chunked_prefill
        return es.chunked_default(self.version, self.model_len(workload))[0]

    def batched_tokens(self, workload: Workload) -> int:
        """Tokens one step (and vLLM's profile run) may take."""
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        return es.batched_tokens_default(self.version, self.chunked(workload), self.model_len(workload),
                                         self.gpu_name, self.gpu_memory_gib, self.entry_point)[0]

    def resolved(self, workload: Workload) -> dict:
        """Every setting as the engine will run it (what the exported command carries)."""
        return {"gpu_memory_utilization": self.gpu_memory_utilization, "max_model_len": self.model_len(workload),
                "max_num_batched_tokens": self.batched_tokens(workload), "max_num_seqs": self.max_num_seqs,
                "enable_chunked_prefill": self.chunked(workload), "block_size": self.block_size,
                "vllm_version": "%d.%d" % self.version, "entry_point": self.entry_point,
                "enforce_eager": self.enforce_eager}


_SETTINGS: ContextVar[es.EngineSettings | None] = ContextVar("engine_settings", default=None)


@contextmanager
def engine_settings(settings: es.EngineSettings | None):
    """Inside the block, ``serving_config`` without explicit ``settings`` uses these: a command
    (``solver plan``, ``solver validate``) sets the user's engine flags once for every cost
    evaluation below it, as ``memoized_stage_times`` scopes its memo."""
    token = _SETTINGS.set(settings)
    try:
        yield
    finally:
        _SETTINGS.reset(token)


def serving_config(profile: Profile, gpu_memory_utilization: float | None = None,
                   max_num_seqs: int | None = None, settings: es.EngineSettings | None = None) -> ServingConfig:
    """The user's settings, then the profile's ``serving`` section, then vLLM's defaults."""
    st = settings or _SETTINGS.get() or es.EngineSettings()
    sv, assumed, sources = profile.serving, [], []
    em = profile.engine_memory.get("vllm")
    runtime = sv_runtime(profile)
    version = es.parse_version(st.version or runtime or (em.version if em else "") or es.DEFAULT_VERSION,
                               "--vllm-version" if st.version else f"{profile.path}: serving.runtime")
    mem_gib = profile.memory_gib.value

    def pick(key: str, override, vllm_default: tuple | None = None):
        if override is not None:
            sources.append((key, "user"))
            return override
        if key in sv:
            sources.append((key, f"profile serving.{key} ({sv[key].source})"))
            return sv[key].value
        if vllm_default is not None:
            sources.append((key, f"vLLM {version[0]}.{version[1]} default: {vllm_default[1]}"))
            assumed.append(key)
            return vllm_default[0]
        assumed.append(key)
        return DEFAULTS[key][0]

    if st.enable_chunked_prefill is False and es.chunked_forced(version):
        note(f"vLLM {version[0]}.{version[1]} (V1) runs chunked prefill whatever --no-enable-chunked-prefill says "
             f"({es.RULES['v1_chunked'][1]}); modelled as on")
    util = pick("gpu_memory_utilization", st.gpu_memory_utilization if gpu_memory_utilization is None
                else gpu_memory_utilization, es.gpu_memory_utilization_default(version))
    batched = st.max_num_batched_tokens
    if batched is None and "max_num_batched_tokens" in sv:
        batched = int(sv["max_num_batched_tokens"].value)
    seqs = pick("max_num_seqs", st.max_num_seqs if max_num_seqs is None else max_num_seqs,
                es.max_num_seqs_default(version, profile.gpu_name, mem_gib, batched))
    if batched is not None and batched < seqs:
        # vLLM refuses to start: SchedulerConfig "max_num_batched_tokens (...) must be greater than or
        # equal to max_num_seqs" (0.10.1.1 vllm/config/scheduler.py:262, 0.34.0 :375)
        raise InputError("", "--max-num-batched-tokens", f"{batched} is below max_num_seqs {int(seqs)}: vLLM "
                                                         "refuses to start (pass --max-num-seqs <= it)")
    return ServingConfig(
        gpu_memory_utilization=float(util), max_num_seqs=int(seqs), max_num_batched_tokens=batched,
        decode_step_overhead_s=pick("decode_step_overhead_ms", None) * 1e-3,
        prefill_overhead_s=pick("prefill_overhead_ms", None) * 1e-3,
        assumed=tuple(assumed), max_model_len=st.max_model_len, enable_chunked_prefill=st.enable_chunked_prefill,
        entry_point=st.entry_point, version=version, gpu_name=profile.gpu_name, gpu_memory_gib=mem_gib,
        sources=tuple(sources), block_size=es.block_size_default(version)[0], enforce_eager=st.enforce_eager,
        kv_on_demand=profile.corner == "high" and es.is_v1(version),
    )


def sv_runtime(profile: Profile) -> str:
    """The vLLM version the profile's serving data came from ("vllm 0.10.0"), or ""."""
    rt = (profile.raw.get("serving") or {}).get("runtime", "") if isinstance(profile.raw, dict) else ""
    return rt if "vllm" in rt.lower() else ""


def stage_budgets(stages, model: ModelSpec, workload: Workload, cfg: ServingConfig) -> list[StageBudget]:
    pp = len(stages)
    return [stage_budget(s.profile, model, s.tp, pp, s.n_layers, s.first, s.last, workload, cfg) for s in stages]


def kv_budget_bytes(profile: Profile, model: ModelSpec, tp: int, n_layers: int, first: bool, last: bool,
                    workload: Workload, cfg: ServingConfig, pp: int = 1) -> float:
    """KV-cache bytes on one GPU of a stage (may be negative: nothing fits)."""
    return stage_budget(profile, model, tp, pp, n_layers, first, last, workload, cfg).kv_cache


def kv_capacity_tokens(stages, model: ModelSpec, workload: Workload, cfg: ServingConfig) -> int:
    """Tokens of KV cache the engine holds: the smallest stage's blocks x block size."""
    return min(b.blocks for b in stage_budgets(stages, model, workload, cfg)) * cfg.block_size


def max_concurrency(kv_tokens: int, max_model_len: int, block_size: int) -> float:
    """vLLM's "Maximum concurrency for L tokens per request": blocks / blocks per request."""
    return (kv_tokens // block_size) / math.ceil(max_model_len / block_size)


@dataclass(frozen=True)
class Concurrency:
    seqs: int           # sequences running at once (0: one sequence does not fit)
    limited_by: str     # "batch", "max_num_seqs" or "kv_cache"
    kv_capacity_tokens: int
    waves: tuple[int, ...]  # sequences in each wave, in order


def concurrency(stages, model: ModelSpec, workload: Workload, cfg: ServingConfig) -> Concurrency:
    """min(batch, max_num_seqs, KV tokens // context rounded up to whole blocks)."""
    cap = kv_capacity_tokens(stages, model, workload, cfg)
    per_seq = kv_blocks(workload.context_len, cfg.block_size) * cfg.block_size
    limits = {"batch": workload.batch, "max_num_seqs": cfg.max_num_seqs, "kv_cache": cap // per_seq}
    name = min(limits, key=lambda k: limits[k])  # ties: the first listed (batch) wins
    seqs = limits[name]
    if seqs <= 0:
        return Concurrency(0, name, cap, ())
    full, rest = divmod(workload.batch, seqs)
    return Concurrency(seqs, name, cap, (seqs,) * full + ((rest,) if rest else ()))
