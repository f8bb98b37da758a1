"""vLLM's engine settings and the defaults vLLM picks for them, per version (docs/vllm_memory.md).

A user's value wins; else the profile's ``serving`` section; else vLLM's own rule for the
runtime version, the GPU's memory and name, and the entry point (offline ``LLM`` class or
the ``vllm serve`` OpenAI server). Each rule names the vLLM source it mirrors.

Versions are (major, minor). Read from the PyPI wheels: 0.6.4, 0.8.5, 0.9.0, 0.10.1.1, 0.11.0,
0.11.1, 0.11.2, 0.12.0, 0.13.0, 0.14.1, 0.16.0, 0.17.1, 0.18.0, 0.19.1, 0.20.0-0.20.2, 0.21.0,
0.22.0, 0.24.0-0.27.1 (0.25.0, 0.26.0, 0.27.0), 0.28.0-0.34.0 (every minor). A version between
read ones (0.15, 0.23) takes the nearest older read version's rules; each rule change below was
found between two adjacent read versions. A minor series takes its .0 release's rules (0.11:
0.11.0's; 0.11.1+ already honour ``--no-enable-chunked-prefill``, as 0.12 does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from solver.errors import InputError

ENTRY_POINTS = ("llm", "serve")  # UsageContext.LLM_CLASS, UsageContext.OPENAI_API_SERVER
DEFAULT_VERSION = "0.10"
# vLLM versions this table models; older/newer ones are refused rather than guessed.
SUPPORTED = ((0, 6), (0, 34))

# (rule, source). Values are vLLM's, not ours: every number below is quoted from its source.
RULES = {
    "gpu_memory_utilization": (0.9, "CacheConfig.gpu_memory_utilization default 0.9 (0.6.4-0.19.1; "
                                    "0.19.1 vllm/config/cache.py:41)"),
    "gpu_memory_utilization_v020": (0.92, "CacheConfig.gpu_memory_utilization default 0.92 from 0.20.0 "
                                          "(0.20.0 vllm/config/cache.py:66; 0.34.0 :186 "
                                          "DEFAULT_GPU_MEMORY_UTILIZATION)"),
    "block_size": (16, "CacheConfig block_size default 16 on CUDA (0.11.0 vllm/platforms/cuda.py:126-127; "
                       "0.33.0 vllm/config/cache.py DEFAULT_BLOCK_SIZE = 16)"),
    "block_size_v034": (64, "CacheConfig.DEFAULT_BLOCK_SIZE = 64 from 0.34.0 (0.34.0 vllm/config/cache.py:185, "
                            "applied at :488-489; FLASH_ATTN takes any multiple of 16, "
                            "v1/attention/backends/flash_attn.py:357-367)"),
    "v0_max_num_seqs": (256, "V0 EngineArgs.max_num_seqs = 256 (0.6.4 vllm/engine/arg_utils.py:123)"),
    "min_batched_tokens": (2048, "SchedulerConfig: without chunked prefill max_num_batched_tokens = "
                                 "max(max_model_len, 2048) (0.6.4 vllm/config.py:1115-1118)"),
    "v06_chunked_batched_tokens": (512, "V0 0.6 chunked prefill: max_num_batched_tokens = 512 "
                                        "(0.6.4 vllm/config.py:1111-1113)"),
    "v07_chunked_batched_tokens": (2048, "V0 0.7 chunked prefill: _DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048 "
                                         "(vllm/config.py)"),
    "v0_chunked_above_len": (32768, "V0: chunked prefill on by default only for max_model_len > 32K "
                                    "(0.6.4 vllm/engine/arg_utils.py:996-1020, use_long_context)"),
    # V1 (default engine from 0.8): EngineArgs._set_default_args(_v1) / get_batch_defaults
    "v1_xlarge": ({"llm": 16384, "serve": 16384}, "V1 default_max_num_batched_tokens on GPUs of >= 160 GiB "
                                                   "from 0.28.0 (LLM_CLASS and OPENAI_API_SERVER 16384; "
                                                   "0.28.0 vllm/engine/arg_utils.py:2582-2591, 0.34.0 :3010-3019)"),
    "v1_large": ({"llm": 16384, "serve": 8192}, "V1 default_max_num_batched_tokens on large GPUs "
                                                  "(LLM_CLASS 16384, OPENAI_API_SERVER 8192)"),
    "v1_small": ({"llm": 8192, "serve": 2048}, "V1 default_max_num_batched_tokens otherwise "
                                                "(LLM_CLASS 8192, OPENAI_API_SERVER 2048)"),
    "v1_large_seqs": (1024, "V1 default_max_num_seqs 1024 on large GPUs (>= 160 GiB too, from 0.28)"),
    "v1_small_seqs": (256, "V1 default_max_num_seqs 256"),
    "xlarge_gpu_gib": (160, "B200/B300 tier: device_memory >= 160 GiB, from 0.28.0 (0.28.0 "
                            "vllm/engine/arg_utils.py:2582; absent in 0.27.1 :2544)"),
    "large_gpu_gib": (70, "large GPU: device_memory >= 70 GiB (0.8.5 vllm/engine/arg_utils.py:1596-1609); from 0.9 "
                          "also 'a100' not in device_name (PR #17885; 0.10.1.1 vllm/engine/arg_utils.py:1638-1657, "
                          "0.11.0 :1605, 0.24.0 :2404, 0.34.0 :3021-3023; 0.33+ also excludes GB10 by compute "
                          "capability 12.1, not modelled)"),
    "v1_chunked": (True, "V1 forces chunked prefill on for generative models, whatever the flag (0.8.5 "
                         "vllm/engine/arg_utils.py:1569; 0.10.1.1 :1592; 0.11.0 :1548)"),
    "v012_chunked": (True, "chunked prefill on by default for generative models, and --no-enable-chunked-prefill "
                           "is honoured (0.11.1 vllm/engine/arg_utils.py:1956; 0.12.0 :1898; 0.24.0 :2465; "
                           "0.34.0 :3085); unchunked: max_num_batched_tokens = max(max_model_len, default) "
                           "(0.12.0 :1992-1998, 0.34.0 :3231-3236)"),
    "seqs_capped_by_tokens": ("min", "max_num_seqs default = min(default, max_num_batched_tokens) (0.11.0 "
                                     "vllm/engine/arg_utils.py:1676-1679; 0.12.0 :2016; 0.34.0 :3271)"),
    "cudagraphs_in_budget": (True, "from 0.20.0 the worker estimates CUDA-graph memory before sizing the KV cache "
                                   "and subtracts it (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default '1': 0.20.0 "
                                   "vllm/envs.py:1724-1725, vllm/v1/worker/gpu_worker.py:380-385 and 421-425; 0.24.0 "
                                   ":453, 490-492; 0.34.0 :742-747, 777-780); 0.18.0-0.19.1 estimate it but apply "
                                   "it only with the variable set (default '0': 0.18.0 envs.py:1636, "
                                   "gpu_worker.py:398-399, 437-441); none with --enforce-eager (0.18.0 :398; "
                                   "cudagraph_mode NONE: 0.27.0 :515, 0.34.0 vllm/config/vllm.py:1697-1699, "
                                   "v1/worker/gpu/cudagraph_utils.py:1005-1009)"),
    "v2_runner_no_graph_estimate": ({(0, 22): ("qwen3",),
                                     (0, 24): ("qwen3", "llama", "mistral", "deepseek_v2", "qwen2_moe", "granitemoe"),
                                     (0, 25): ("deepseek_v2", "qwen2_moe", "granitemoe"),
                                     (0, 26): ("deepseek_v2", "qwen2_moe", "granitemoe")},
                                    "Model Runner V2 is vLLM's default for these architectures (HF model_type: "
                                    "Qwen3ForCausalLM qwen3, LlamaForCausalLM llama, MistralForCausalLM mistral, "
                                    "DeepseekV2ForCausalLM deepseek_v2, Qwen2MoeForCausalLM qwen2_moe, "
                                    "GraniteMoeForCausalLM granitemoe), and its profile_cudagraph_memory returns 0, "
                                    "so no graph memory comes off the budget: 0.22.0 vllm/config/vllm.py:69 "
                                    "DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES (dense, unquantized only, :518-532), "
                                    "v1/worker/gpu/model_runner.py:620-622; 0.24.0 config/vllm.py:68-77, :522-561, "
                                    "gpu/model_runner.py:684-686; 0.25.0 :68-74, :680-682; 0.26.0-0.28.0 the MoE "
                                    "ones only (0.27.1 config/vllm.py:69-79, gpu/model_runner.py:749-751; 0.28.0 "
                                    ":69-80, :843-845). Before 0.22 V1 unless VLLM_USE_V2_MODEL_RUNNER=1 (0.21.0 "
                                    "envs.py:1711-1712); from 0.29 V2 for every model, with a real estimate "
                                    "(0.29.0 v1/worker/gpu/model_runner.py:896-898)"),
    "comm_before_snapshot": (True, "from 0.11.0 the worker initialises NCCL and custom all-reduce "
                                   "(init_worker_distributed_environment) before its init memory snapshot, so "
                                   "their memory is not in the non-torch increase it subtracts (0.11.0 "
                                   "v1/worker/gpu_worker.py:169 then :182; 0.24.0 :322 then :341; 0.27.1 :376 "
                                   "then :395, 'Initialize the distributed environment BEFORE taking memory "
                                   "snapshot'); 0.10.1.1 took the snapshot first (:174, then :192)"),
    # The profile run's dummy sampler (V1): logits of min(max_num_seqs, max_num_batched_tokens) rows
    # (0.11.0 v1/worker/gpu_model_runner.py:2977, 3397), with top_k = V - 1 and top_p = 0.9 (:3198-3205,
    # same in 0.9.2-0.27.1) -- both filters on, the costliest path. Bytes alive at its peak per logit:
    "sampler_sort_bytes": (38, "PyTorch sort path: the bf16 logits (2 B, held by _dummy_sampler_run), their fp32 "
                               "copy (4, 0.11.0 v1/sample/sampler.py:86), logits.sort's values and int64 indices "
                               "(4 + 8, v1/sample/ops/topk_topp_sampler.py:183), and inside torch's sort of >= 128 "
                               "rows an int64 index array plus cub's alternate key/value buffers (8 + 4 + 8; "
                               "pytorch aten/src/ATen/native/cuda/SortStable.cu segmented_sort_pairs)"),
    "sampler_inplace_bytes": (14, "FlashInfer or Triton path: bf16 logits (2), fp32 copy (4) and two more fp32 "
                                  "arrays -- FlashInfer's top_k_mask_logits output and its softmax (flashinfer "
                                  "sampling.py top_k_top_p_sampling_from_logits, 'top_k_first'), or Triton's "
                                  "in-place mask then probs and the exponential draws (0.19.1 "
                                  "topk_topp_sampler.py:112, :241-253 random_sample)"),
    "sampler_path": ("sort|inplace", "0.8-0.11: FlashInfer whenever it imports (VLLM_USE_FLASHINFER_SAMPLER unset "
                                     "counts as on: 0.10.1.1 v1/sample/ops/topk_topp_sampler.py:33-65, 0.11.0 "
                                     ":37-70), and pip's vllm installs it only with the [flashinfer] extra (0.10.1.1 "
                                     "and 0.11.0 METADATA), so sort unless told; 0.12-0.16: sort, FlashInfer opt-in "
                                     "(0.12.0 :35-58); from 0.17: Triton's in-place top-k/top-p for >= 8 rows "
                                     "(0.17.1 :251-252, 0.27.1 :360-361), FlashInfer on by default from 0.21 "
                                     "(0.21.0 vllm/envs.py:48) on SM80+ (0.27.1 topk_topp_sampler.py:28-74, "
                                     "v1/attention/backends/flashinfer.py:462-466): in place either way"),
    # Model Runner V2's profile run (where v2_runner says it runs): the dummy sampler gets the
    # bf16 logits of min(max_num_seqs, max_num_batched_tokens) rows with fresh request states --
    # greedy (temperature 0), top_k = vocab, top_p = 1: no top-k/top-p, no logprobs (0.24.0
    # v1/worker/gpu/model_runner.py:633-644, sample/states.py:31-35, 94-101). Bytes per logit:
    "v2_sampler_bytes": ({(0, 22): 6, (0, 26): 2, (0, 33): 14},
                         "0.22-0.25: bf16 logits (2) + their fp32 copy (4; 0.22.0 v1/worker/gpu/sample/sampler.py:133, "
                         "0.24.0 :157), gumbel's per-1024-logit block argmax and max (12 B per 1024 logits, "
                         "sample/gumbel.py:216-221, not counted); 0.26: in place in bf16, cloned only for raw "
                         "logprobs (0.26.0 sampler.py:162-167): 2; 0.27-0.32: the fp32 copy only for a request "
                         "that needs processing, which the dummy's do not (0.27.0 sampler.py:200-216, 0.29.0 "
                         ":218-222): 2; 0.33-0.34 sample a second time with SamplingParams.for_sampler_warmup "
                         "(top_k 50, top_p 0.9, penalties, logprobs 5: 0.34.0 gpu/model_runner.py:1056-1062, "
                         "sampling_params.py:1480-1496): the fp32 copy (sampler.py:239) then FlashInfer's "
                         "top_k_top_p_sampling_from_logits (v1/sample/ops/topk_topp_sampler.py:315-318), V1's "
                         "in-place 14 (sampler_inplace_bytes; without FlashInfer not read, taken the same)"),
    "v2_logits_gather": (4, "at TP >= 2 compute_logits all-gathers the vocab shards (logits_processor.py:122-134): "
                            "the bf16 shard (2/t B per logit) stays alive while the gathered buffer (2) is "
                            "reordered into a new tensor (2): 4 + 2/t (0.29.0 distributed/device_communicators/"
                            "base_device_communicator.py:239-247); V1 does the same, below its sampler's peak"),
    "v2_sampler_buffers": ((0, 27), "V2's sampler keeps per-request vocab-wide tables on the GPU from load_model "
                                    "on (last PP rank): penalties' output_bin_counts max_num_seqs x V int32 and "
                                    "prompt_bin_mask max_num_seqs x ceil(V/32) int32 (0.24.0 v1/worker/gpu/sample/"
                                    "penalties.py:32-42; 0.34.0 :43-50), structured outputs' grammar_bitmask "
                                    "max_num_seqs x ceil(V/32) int32 (gpu/structured_outputs.py:17-19; without "
                                    "speculative decoding max_num_logits = max_num_seqs, gpu/model_runner.py:345-349). "
                                    "Allocated after the init snapshot (0.24.0 gpu_worker.py:341, runner :361, "
                                    "Sampler after the weights' DeviceMemoryProfiler, gpu/model_runner.py:279-301, "
                                    ":325): before 0.27 torch-reserved, so outside the non-torch increase, and "
                                    "allocated before the profile's peak baseline (0.24.0 utils/mem_utils.py:294-306): "
                                    "not counted. From 0.27 non_kv = total_consumed (free memory at init minus after "
                                    "the profile run) + transient peak (0.27.0 mem_utils.py:317-326, 0.29.0 :317-326, "
                                    "0.34.0 :327-335): counted. V from model_config.get_vocab_size (unpadded). Not "
                                    "counted here: fixed-size per-request tables (logit bias, bad words, logprob "
                                    "token ids: (3 x 1,024 + 128 + 1,024 + 129 + 128) x 4 = 17,924 B a request in "
                                    "0.24.0 sample/logit_bias.py:10-12, bad_words.py:11-12, sampling_params.py:30)"),
    "extensible_kv_cache": (True, "0.34.0 sizes the KV cache after warm-up and graph capture by default "
                                  "(enable_extensible_kv_cache None -> on on CUDA: vllm/config/cache.py:395, "
                                  "vllm/config/vllm.py:3180-3254; gpu_memory_utilization then resolves to 1.0, "
                                  "cache.py:495-501; sizing v1/worker/extensible_kv_cache.py:592-618). Not "
                                  "modelled: the exported command passes --no-enable-extensible-kv-cache, which "
                                  "keeps the estimate rule above"),
}

def parse_version(text: str, where: str = "--vllm-version") -> tuple[int, int]:
    m = re.search(r"(\d+)\.(\d+)", text or "")
    if not m:
        raise InputError("", where, f"not a vLLM version (like 0.10.1): {text!r}")
    v = (int(m.group(1)), int(m.group(2)))
    if not SUPPORTED[0] <= v <= SUPPORTED[1]:
        raise InputError("", where, f"vLLM {v[0]}.{v[1]} is outside the modelled versions {supported_text()}")
    return v


def supported_text() -> str:
    return "%d.%d-%d.%d" % (*SUPPORTED[0], *SUPPORTED[1])


def is_v1(version: tuple[int, int]) -> bool:
    """V1 is the default engine from 0.8.0 (VLLM_USE_V1=1 by default)."""
    return version >= (0, 8)


def memory_family(version: tuple[int, int]) -> str:
    """The budget rule of the version's worker: "device_wide" (non-torch = all device memory
    outside torch's allocator after the profile run, CUDA context included: V0, and the V1
    worker through 0.9.0 -- 0.8.5 and 0.9.0 ``vllm/v1/worker/gpu_worker.py:165-212`` /
    ``:167-212`` ``determine_available_memory``) or "since_init" (0.10+: only the increase
    since ``init_device``'s snapshot, 0.10.1.1 ``gpu_worker.py:222-280``; unchanged through
    0.26.0, ``vllm/utils/mem_utils.py:305-313``). From 0.27.0 vLLM measures the same terms
    through ``mem_get_info`` (``non_kv = total_consumed + transient_peak_headroom``, 0.27.0
    ``mem_utils.py:317-326``): weights + non-torch increase + torch peak above what stays
    allocated, plus torch's reserved-but-free bytes after ``empty_cache``, which no term here
    models; it stays "since_init". 0.9.1-0.9.2 were not read; they are taken as 0.9.0."""
    return "since_init" if version >= (0, 10) else "device_wide"


def gpu_memory_utilization_default(version: tuple[int, int]) -> tuple[float, str]:
    return RULES["gpu_memory_utilization_v020" if version >= (0, 20) else "gpu_memory_utilization"]


def block_size_default(version: tuple[int, int]) -> tuple[int, str]:
    return RULES["block_size_v034" if version >= (0, 34) else "block_size"]


def cudagraphs_in_budget(version: tuple[int, int], enforce_eager: bool, model_type: str = "",
                         quantized: bool = False) -> tuple[bool, str]:
    """Whether the worker subtracts CUDA-graph memory before sizing the KV cache: from 0.20, not
    with --enforce-eager, and not where the version runs the model (HF ``model_type``) on Model
    Runner V2 before its estimate existed (RULES["v2_runner_no_graph_estimate"])."""
    src = RULES["cudagraphs_in_budget"][1]
    if version < (0, 20) or enforce_eager:
        return False, src
    if version < (0, 29) and v2_runner(version, model_type, quantized):
        return False, RULES["v2_runner_no_graph_estimate"][1]
    return True, src


def _as_of(table: dict, version: tuple[int, int]):
    """A version-keyed rule's entry for ``version``: the latest key at or before it (a version
    between read ones takes the nearest older read version's rule)."""
    return table[max(v for v in table if v <= version)]


def v2_runner(version: tuple[int, int] | None, model_type: str = "", quantized: bool = False) -> bool:
    """Whether vLLM runs the model (HF ``model_type``) on Model Runner V2 by default: the
    architectures of RULES["v2_runner_no_graph_estimate"] in 0.22-0.28 (0.23 takes 0.22's list,
    the nearest older read; quantized checkpoints only from 0.24), every model from 0.29."""
    if version is None or version < (0, 22):
        return False
    if version >= (0, 29):
        return True
    table = RULES["v2_runner_no_graph_estimate"][0]
    return model_type in _as_of(table, version) and not (quantized and version < (0, 24))


def comm_in_non_torch(version: tuple[int, int] | None) -> tuple[bool, str]:
    """Whether the communicators' memory (a profile's ``tp_extra`` / ``pp_extra``) is in the
    non-torch increase vLLM subtracts: only before 0.11 (RULES["comm_before_snapshot"]). No
    version given: counted (the profile's own figure)."""
    return version is None or version < (0, 11), RULES["comm_before_snapshot"][1]


def sampler_bytes_per_logit(version: tuple[int, int], rows: int, flashinfer: bool | None = None,
                            v2: bool = False, tp: int = 1) -> tuple[float, str]:
    """Bytes per element of the [rows, vocab] logits alive at the profile run's sampler peak.
    V1 (RULES["sampler_path"]): ``flashinfer``, whether FlashInfer is installed, where the
    version asks (0.8-0.11; None: pip's default install, without it). ``v2``: Model Runner V2
    (``v2_runner``), RULES["v2_sampler_bytes"], or at TP >= 2 the logits all-gather where that
    is higher (RULES["v2_logits_gather"]). V0 (< 0.8) is the profile's fit."""
    if v2:
        table, src = RULES["v2_sampler_bytes"]
        per_logit = _as_of(table, version)
        gather, gsrc = RULES["v2_logits_gather"]
        if tp >= 2 and gather + 2 / tp > per_logit:
            return gather + 2 / tp, f"{gsrc}; {src}"
        return per_logit, src
    if version >= (0, 17):
        inplace = rows >= 8 or version >= (0, 21)
    elif version >= (0, 12):
        inplace = False
    else:
        inplace = bool(flashinfer)
    key = "sampler_inplace_bytes" if inplace else "sampler_sort_bytes"
    return RULES[key][0], RULES[key][1] + "; " + RULES["sampler_path"][1]


def v2_sampler_buffer_bytes(version: tuple[int, int] | None, max_num_seqs: int, vocab: int) -> tuple[int, str]:
    """Bytes of V2's persistent sampler tables the budget counts on the last stage (0 before
    0.27, where the worker does not see them): RULES["v2_sampler_buffers"],
    max_num_seqs x (4 V + 2 x 4 ceil(V/32)). Only where ``v2_runner`` holds."""
    start, src = RULES["v2_sampler_buffers"]
    if version is None or version < start:
        return 0, src
    return max_num_seqs * (4 * vocab + 2 * 4 * -(-vocab // 32)), src


def extensible_kv_cache_default(version: tuple[int, int]) -> bool:
    """0.34 sizes the KV cache after warm-up unless told not to (RULES["extensible_kv_cache"])."""
    return version >= (0, 34)


def chunked_forced(version: tuple[int, int]) -> bool:
    """V1 0.8-0.11 turn chunked prefill on whatever the flag says; 0.12+ honour it."""
    return (0, 8) <= version < (0, 12)


def gpu_tier(version: tuple[int, int], gpu_name: str, memory_gib: float) -> str:
    """"xlarge" (>= 160 GiB, from 0.28), "large" (>= 70 GiB; not A100 from 0.9) or "small"."""
    if version >= (0, 28) and memory_gib >= RULES["xlarge_gpu_gib"][0]:
        return "xlarge"
    big = memory_gib >= RULES["large_gpu_gib"][0]
    if version >= (0, 9):
        big = big and "a100" not in gpu_name.lower()
    return "large" if big else "small"


def large_gpu(version: tuple[int, int], gpu_name: str, memory_gib: float) -> bool:
    return gpu_tier(version, gpu_name, memory_gib) != "small"


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
    enforce_eager: bool = False

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
        if self.version is not None:
            parse_version(self.version)  # refused here, so an empty --vllm-version= is not read as "unset"


def chunked_default(version: tuple[int, int], max_model_len: int) -> tuple[bool, str]:
    if version >= (0, 12):
        return RULES["v012_chunked"]
    if is_v1(version):
        return RULES["v1_chunked"]
    above, src = RULES["v0_chunked_above_len"]
    return max_model_len > above, src


def batched_tokens_default(version: tuple[int, int], chunked: bool, max_model_len: int, gpu_name: str,
                           memory_gib: float, entry_point: str) -> tuple[int, str]:
    """vLLM's max_num_batched_tokens when the user gives none."""
    if version >= (0, 12):
        table, src = RULES[f"v1_{gpu_tier(version, gpu_name, memory_gib)}"]
        src = f"{src}; {RULES['large_gpu_gib'][1]}"
        if chunked:
            return table[entry_point], src
        return max(max_model_len, table[entry_point]), f"{RULES['v012_chunked'][1]}; {src}"
    if not chunked:
        floor, src = RULES["min_batched_tokens"]
        return max(max_model_len, floor), src
    if not is_v1(version):
        return RULES["v06_chunked_batched_tokens" if version < (0, 7) else "v07_chunked_batched_tokens"]
    table, src = RULES[f"v1_{gpu_tier(version, gpu_name, memory_gib)}"]
    return table[entry_point], f"{src}; {RULES['large_gpu_gib'][1]}"


def max_num_seqs_default(version: tuple[int, int], gpu_name: str, memory_gib: float,
                         batched_tokens: int | None = None) -> tuple[int, str]:
    """``batched_tokens``: a max_num_batched_tokens the user set; from 0.11 the default
    max_num_seqs never exceeds it (RULES["seqs_capped_by_tokens"])."""
    if not is_v1(version):
        return RULES["v0_max_num_seqs"]
    seqs, src = RULES["v1_small_seqs" if gpu_tier(version, gpu_name, memory_gib) == "small" else "v1_large_seqs"]
    if version >= (0, 11) and batched_tokens is not None and batched_tokens < seqs:
        return batched_tokens, f"{src}; {RULES['seqs_capped_by_tokens'][1]}"
    return seqs, src
