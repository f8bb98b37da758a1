"""A vLLM start-up log -> one raw memory point (the columns of shared/data/vllm_memory/logs.csv).

The lines read, by engine (docs/vllm_memory.md lists the vLLM source that prints each):

=================================================  ===============================
V0 ``Loading model weights took X GB`` (GiB)        weights_gib
V1 ``Model loading took X GiB``                     weights_gib
V0 0.6.4 ``Memory profiling results: ...
peak_torch_memory=..GiB ... non_torch_memory=..GiB
kv_cache_size=..GiB``                               activation_peak_gib (peak_torch - weights),
                                                    non_torch_gib, kv_cache_gib
V0 0.6.5+ ``model weights take X; non_torch_memory
takes Y; PyTorch activation peak memory takes Z;
the rest ... KV Cache is K``                        the four columns
V1 ``Available KV cache memory: X GiB``             kv_cache_gib
V1 DEBUG ``torch peak memory increase`` /
``non-torch forward increase memory``               activation_peak_gib / non_torch_gib
V1 ``GPU KV cache size: N tokens``                  kv_tokens
V0 ``# GPU blocks: N``                              gpu_blocks
``Maximum concurrency for L tokens per request``    max_concurrency (and max_model_len)
``Graph capturing finished in S secs, took X GiB``  cudagraph_gib
=================================================  ===============================

Numbers only; the engine's arguments (model, GPU, TP, ...) come from the caller.
"""

from __future__ import annotations

import re

LOG_COLUMNS = (
    "source_url", "vllm_version", "gpu", "gpu_total_gib", "model", "dtype", "quantization", "kv_cache_dtype",
    "tp", "pp", "gpu_memory_utilization", "max_model_len", "max_num_batched_tokens", "max_num_seqs",
    "enforce_eager", "weights_gib", "non_torch_gib", "activation_peak_gib", "kv_cache_gib", "kv_tokens",
    "gpu_blocks", "block_size", "cudagraph_gib", "notes",
)

_NUM = r"([0-9][0-9,]*\.?[0-9]*)"
_PATTERNS = [
    ("weights_gib", rf"Loading model weights took {_NUM} ?GB"),
    ("weights_gib", rf"Model loading took {_NUM} ?GiB"),
    ("weights_gib", rf"model weights take {_NUM} ?GiB"),
    ("weights_gib", rf"weights memory[:=]? ?{_NUM} ?GiB"),
    ("non_torch_gib", rf"non_torch_memory ?={_NUM}"),
    ("non_torch_gib", rf"non_torch_memory takes {_NUM} ?GiB"),
    ("non_torch_gib", rf"non-torch forward increase memory[:=]? ?{_NUM} ?GiB"),
    ("activation_peak_gib", rf"PyTorch activation peak memory takes {_NUM} ?GiB"),
    ("activation_peak_gib", rf"torch peak memory increase[:=]? ?{_NUM} ?GiB"),
    ("kv_cache_gib", rf"the rest of the memory reserved for KV Cache is {_NUM} ?GiB"),
    ("kv_cache_gib", rf"kv_cache_size={_NUM} ?GiB"),
    ("kv_cache_gib", rf"Available KV cache memory: {_NUM} ?GiB"),
    ("kv_tokens", rf"GPU KV cache size: {_NUM} tokens"),
    ("gpu_blocks", rf"# GPU blocks: {_NUM}"),
    ("cudagraph_gib", rf"Graph capturing finished in [0-9.]+ secs?, took {_NUM} ?GiB"),
    ("gpu_total_gib", rf"total_gpu_memory ?[=(] ?{_NUM} ?GiB"),
    ("gpu_memory_utilization", rf"gpu_memory_utilization ?[=(] ?{_NUM}"),
]
_PEAK_TORCH = re.compile(rf"peak_torch_memory={_NUM} ?GiB")
_CONCURRENCY = re.compile(rf"Maximum concurrency for {_NUM} tokens per request: {_NUM}x")


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def parse_log(text: str) -> dict:
    """Every number the log states, under LOG_COLUMNS names (last occurrence wins: a restarted
    engine's final values); plus ``max_concurrency``. Empty dict when nothing matched."""
    out: dict = {}
    for col, pat in _PATTERNS:
        for m in re.finditer(pat, text):
            out[col] = _num(m.group(1))
    peak = list(_PEAK_TORCH.finditer(text))
    if peak and "weights_gib" in out and "activation_peak_gib" not in out:
        # v0.6.4 prints peak_torch_memory including the weights
        out["activation_peak_gib"] = round(_num(peak[-1].group(1)) - out["weights_gib"], 4)
    conc = list(_CONCURRENCY.finditer(text))
    if conc:
        out["max_model_len"] = int(_num(conc[-1].group(1)))
        out["max_concurrency"] = _num(conc[-1].group(2))
        if "kv_tokens" not in out and "gpu_blocks" not in out:
            out["kv_tokens"] = None  # the caller may derive it: concurrency x max_model_len
    for col in ("kv_tokens", "gpu_blocks", "max_model_len"):
        if out.get(col) is not None:
            out[col] = int(out[col])
    return {k: v for k, v in out.items() if v is not None}


# The top-k/top-p sampler V1 picked, as its worker logs it (0.10.1.1 topk_topp_sampler.py:50
# 'Using FlashInfer for top-p & top-k sampling', :61 'FlashInfer is not available. Falling back to
# the PyTorch-native implementation'): it sets the profile run's sampler peak
# (solver/cost/engine_settings.py sampler_bytes_per_logit). Recorded in ``notes`` as
# ``sampler=flashinfer`` / ``sampler=sort`` so the file keeps the shared data set's columns.
_SAMPLER = (("flashinfer", re.compile(r"Using FlashInfer for top-p & top-k sampling")),
            ("sort", re.compile(r"Falling back to the PyTorch-native implementation of top-p & top-k")))
SAMPLER_NOTE = re.compile(r"\bsampler=(flashinfer|sort)\b")


def sampler_path(text: str) -> str:
    """"flashinfer", "sort" or "" (the log does not say) -- the last engine start's choice."""
    last, where = "", -1
    for name, pat in _SAMPLER:
        for m in pat.finditer(text):
            if m.start() > where:
                last, where = name, m.start()
    return last


def engine_format(text: str) -> str:
    """"v1" when the log has V1-only lines, "v0" when V0-only lines, else ""."""
    if re.search(r"Available KV cache memory|GPU KV cache size|Model loading took", text):
        return "v1"
    if re.search(r"# GPU blocks|Loading model weights took|Memory profiling results|non_torch_memory", text):
        return "v0"
    return ""
