"""vLLM's engine settings and the defaults vLLM picks for them, per version (docs/vllm_memory.md).

A user's value wins; else the profile's ``serving`` section; else vLLM's own rule for the
runtime version, the GPU's memory and name, and the entry point (offline ``LLM`` class or
the ``vllm serve`` OpenAI server). Each rule names the vLLM source it mirrors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from solver.errors import InputError

ENTRY_POINTS = ("llm", "serve")  # UsageContext.LLM_CLASS, UsageContext.OPENAI_API_SERVER
DEFAULT_VERSION = "0.10"
# vLLM versions this table models; older/newer ones are refused rather than guessed.
SUPPORTED = ((0, 6), (0, 11))

# (rule, source). Values are vLLM's, not ours: every number below is quoted from its source.
RULES = {
    "gpu_memory_utilization": (0.9, "CacheConfig.gpu_memory_utilization default 0.9 (all versions)"),
    "block_size": (16, "CacheConfig block_size default 16 on CUDA (all versions)"),
    "v0_max_num_seqs": (256, "V0 EngineArgs.max_num_seqs = 256 (0.6.4 vllm/engine/arg_utils.py:123)"),
    "min_batched_tokens": (2048, "SchedulerConfig: without chunked prefill max_num_batched_tokens = "
                                 "max(max_model_len, 2048) (0.6.4 vllm/config.py:1115-1118)"),
    "v06_chunked_batched_tokens": (512, "V0 0.6 chunked prefill: max_num_batched_tokens = 512 "
                                        "(0.6.4 vllm/config.py:1111-1113)"),
    "v07_chunked_batched_tokens": (2048, "V0 0.7 chunked prefill: _DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048 "
                                         "(vllm/config.py)"),
    "v0_chunked_above_len": (32768, "V0: chunked prefill on by default only for max_model_len > 32K "
                                    "(0.6.4 vllm/engine/arg_utils.py:996-1020, use_long_context)"),
    # V1 (default engine from 0.8): EngineArgs._set_default_args_v1
    "v1_large": ({"llm": 16384, "serve": 8192}, "V1 default_max_num_batched_tokens on large GPUs "
                                                  "(LLM_CLASS 16384, OPENAI_API_SERVER 8192)"),
    "v1_small": ({"llm": 8192, "serve": 2048}, "V1 default_max_num_batched_tokens otherwise "
                                                "(LLM_CLASS 8192, OPENAI_API_SERVER 2048)"),
    "v1_large_seqs": (1024, "V1 default_max_num_seqs 1024 on large GPUs"),
    "v1_small_seqs": (256, "V1 default_max_num_seqs 256"),
    "large_gpu_gib": (70, "large GPU: device_memory >= 70 GiB (0.8.5 vllm/engine/arg_utils.py:1596-1609); from 0.9 "
                          "also 'a100' not in device_name (PR #17885; 0.10.1.1 vllm/engine/arg_utils.py:1638-1657)"),
    "v1_chunked": (True, "V1 forces chunked prefill on for generative models, whatever the flag (0.8.5 "
                         "vllm/engine/arg_utils.py:1569; 0.10.1.1 :1592)"),
}


def parse_version(text: str, where: str = "--vllm-version") -> tuple[int, int]:
    m = re.search(r"(\d+)\.(\d+)", text or "")
    if not m:
        raise InputError("", where, f"not a vLLM version (like 0.10.1): {text!r}")
    v = (int(m.group(1)), int(m.group(2)))
    if not SUPPORTED[0] <= v <= SUPPORTED[1]:
        raise InputError("", where, f"vLLM {v[0]}.{v[1]} is outside the modelled versions "
                                    f"{SUPPORTED[0][0]}.{SUPPORTED[0][1]}-{SUPPORTED[1][0]}.{SUPPORTED[1][1]}")
    return v


def is_v1(version: tuple[int, int]) -> bool:
    """V1 is the default engine from 0.8.0 (VLLM_USE_V1=1 by default)."""
    return version >= (0, 8)


def memory_family(version: tuple[int, int]) -> str:
    """The budget rule of the version's worker: "device_wide" (non-torch = all device memory
    outside torch's allocator after the profile run, CUDA context included: V0, and the V1
    worker through 0.9.0 -- 0.8.5 and 0.9.0 ``vllm/v1/worker/gpu_worker.py:165-212`` /
    ``:167-212`` ``determine_available_memory``) or "since_init" (0.10+: only the increase
    since ``init_device``'s snapshot, 0.10.1.1 ``gpu_worker.py:222-280``). 0.9.1-0.9.2 were
    not read; they are taken as 0.9.0."""
    return "since_init" if version >= (0, 10) else "device_wide"


def large_gpu(version: tuple[int, int], gpu_name: str, memory_gib: float) -> bool:
    big = memory_gib >= RULES["large_gpu_gib"][0]
    return big and "a100" not in gpu_name.lower() if version >= (0, 9) else big


@dataclass(frozen=True)
class EngineSettings:
    """The engine flags a user gives (None: vLLM's default). Mirrors ``vllm serve`` flags."""
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    enable_chunked_prefill: bool | None = None
    entry_point: str = "llm"
    version: str | None = None

    def __post_init__(self):
        for name in ("max_model_len", "max_num_batched_tokens", "max_num_seqs"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputError("", f"--{name.replace('_', '-')}", f"must be an integer >= 1, got {v!r}")
        g = self.gpu_memory_utilization
        if g is not None and not 0 < g <= 1:
            raise InputError("", "--gpu-memory-utilization", f"must be in (0, 1], got {g}")
        if self.entry_point not in ENTRY_POINTS:
            raise InputError("", "--entry-point", f"must be one of {', '.join(ENTRY_POINTS)}, got {self.entry_point!r}")


def chunked_default(version: tuple[int, int], max_model_len: int) -> tuple[bool, str]:
    if is_v1(version):
        return RULES["v1_chunked"]
    above, src = RULES["v0_chunked_above_len"]
    return max_model_len > above, src


def batched_tokens_default(version: tuple[int, int], chunked: bool, max_model_len: int, gpu_name: str,
                           memory_gib: float, entry_point: str) -> tuple[int, str]:
    """vLLM's max_num_batched_tokens when the user gives none."""
    if not chunked:
        floor, src = RULES["min_batched_tokens"]
        return max(max_model_len, floor), src
    if not is_v1(version):
        return RULES["v06_chunked_batched_tokens" if version < (0, 7) else "v07_chunked_batched_tokens"]
    key = "v1_large" if large_gpu(version, gpu_name, memory_gib) else "v1_small"
    table, src = RULES[key]
    return table[entry_point], f"{src}; {RULES['large_gpu_gib'][1]}"


def max_num_seqs_default(version: tuple[int, int], gpu_name: str, memory_gib: float) -> tuple[int, str]:
    if not is_v1(version):
        return RULES["v0_max_num_seqs"]
    if large_gpu(version, gpu_name, memory_gib):
        return RULES["v1_large_seqs"]
    return RULES["v1_small_seqs"]
