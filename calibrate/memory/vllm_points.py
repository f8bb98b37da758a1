"""vLLM start-up memory points: read, resolved into the engine they describe, held out.

Rows in the columns of shared/data/vllm_memory/logs.csv (``calibrate import-vllm-log`` writes
the same). The tables below are data-row metadata (GPU totals, interconnects, the sampler a
log names, versions dated by log format); the fit is calibrate/memory/vllm_fit.py.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field


from calibrate import published
from calibrate.importers.vllm_log import LOG_COLUMNS, SAMPLER_NOTE
from solver.cost import engine_settings as es
from solver.cost.activation import phase_terms
from solver.cost.engine_memory import runner_buffer_bytes, sampler_phases
from solver.cost.memory import kv_bytes_per_token, stage_weight_bytes
from solver.errors import InputError
from solver.inputs.fields import read_text
from solver.inputs.model import ModelSpec, load_model, parse_hf_config
from solver.units import GIB


_NUMERIC = ("gpu_total_gib", "tp", "pp", "gpu_memory_utilization", "max_model_len", "max_num_batched_tokens",
            "max_num_seqs", "weights_gib", "non_torch_gib", "activation_peak_gib", "kv_cache_gib", "kv_tokens",
            "gpu_blocks", "block_size", "cudagraph_gib")

# HF model id -> (preset name or HF config dict, max_position_embeddings, source). Shapes only.
MODELS = {
    "meta-llama/Meta-Llama-3-8B": ("llama3-8b", 8192, "preset llama3-8b"),
    "meta-llama/Llama-3.1-8B-Instruct": ("llama3-8b", 131072, "Llama-3.1-8B: the llama3-8b shapes; "
                                                              "max_position_embeddings 131072 (HF config.json)"),
    "Qwen/Qwen2-7B-Instruct": ("qwen2.5-7b", 32768, "Qwen2-7B has the qwen2.5-7b shapes (HF config.json)"),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": (
        {"model_type": "qwen2", "num_hidden_layers": 48, "hidden_size": 5120, "num_attention_heads": 40,
         "num_key_value_heads": 8, "intermediate_size": 13824, "vocab_size": 152064,
         "tie_word_embeddings": False}, 131072,
        "HF config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"),
    # data/vllm_memory_extra (the held-out judge set) -- shapes only, never fitted on:
    "Qwen/Qwen2.5-7B-Instruct": ("qwen2.5-7b", 32768, "the qwen2.5-7b preset shapes; 32768 as logged "
                                                      "('Maximum concurrency for 32,768 tokens')"),
    **{f"Qwen/Qwen3-{size}": (
        {"model_type": "qwen3", "num_hidden_layers": n, "hidden_size": h, "num_attention_heads": a,
         "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": f, "vocab_size": 151936,
         "tie_word_embeddings": tie, "attention_bias": False}, 40960,
        f"Qwen/Qwen3-{size} config.json (copy: aiconfigurator-core 0.12.0 wheel, "
        f"aiconfigurator_core/model_configs/Qwen--Qwen3-{size}_config.json)")
       for size, n, h, a, f, tie in (("0.6B", 28, 1024, 16, 3072, True), ("8B", 36, 4096, 32, 12288, False),
                                     ("32B", 64, 5120, 64, 25600, False))},
}
# GPU name (as in the points) -> memory torch reports, GiB, where the row does not print it.
# GPUs with a shipped profile take its gpu.memory_cuda_total_gib (calibrate/published.py).
GPU_TOTAL_GIB = {"A100 80GB": published.CUDA_TOTAL_GIB["A100-SXM4-80GB"],
                 "A100 40GB": (39.39, "torch total of an A100-40GB (40,339 MiB), as printed in vLLM logs"),
                 "RTX 4090": (23.65, "torch total of an RTX 4090 (24,217 MiB)"),
                 "RTX 3090": (23.58, "as printed in the #10517 log"),
                 "L40S": published.CUDA_TOTAL_GIB["L40S"],
                 "RTX 5090": (31.36, "PyTorch OOM on an RTX 5090: 'GPU 0 has a total capacity of 31.36 GiB' "
                                     "(TrajectoryCrafter/TrajectoryCrafter#20, 2025-04-02; Wan-Video/Wan2.1#465 "
                                     "prints 31.37 on another 5090)"),
                 "RTX PRO 6000 96GB": (94.97, "CUDA total of a 96 GB RTX Pro 6000 Blackwell (97,887 MiB in "
                                              "nvidia-smi): 'total=94.97 GiB' (antirez/ds4#431, 2026-06-16, "
                                              "from cudaMemGetInfo as torch's total is)")}
# How the GPUs of a point talk: vLLM's custom all-reduce (IPC buffers, part of non-torch
# memory at TP >= 2) runs only over NVLink / full P2P (vllm/distributed/device_communicators/
# custom_all_reduce.py refuses PCIe-only groups of > 2 GPUs and GPUs without P2P), so the
# TP >= 2 extra is taken per interconnect class.
INTERCONNECT = {"H100 80GB": "nvlink", "A100 80GB": "nvlink", "A100 40GB": "nvlink", "RTX 3090": "pcie",
                "RTX 4090": "pcie", "RTX 5090": "pcie", "RTX A6000": "pcie", "L40S": "pcie",
                # `nvidia-smi topo -m` in ddiiwoong/newblog 2026-08-23 (g5.12xlarge: PHB, g6.12xlarge: NODE)
                "A10G": "pcie", "L4": "pcie",
                # kthxo/distserving 2026-07-16: no NVLink, all-reduce over SYS (cross-NUMA PCIe)
                "RTX PRO 6000 96GB": "pcie"}
# Rows whose log prints the sampler vLLM 0.8-0.11 picked (engine_settings "sampler_path": FlashInfer
# only where it imports), read per log file at dennislee22/vLLM-benchmarking commit b474d1e: the
# four same-node A100 80GB logs print 'Using FlashInfer for top-p & top-k sampling'
# (0.10.1.1 topk_topp_sampler.py:50); the two-node A100 40GB Ray run's workers print 'FlashInfer is
# not available. Falling back to the PyTorch-native implementation' (:61). A row imported by
# `calibrate import-vllm-log` carries its own ``sampler=...`` note (importers/vllm_log.py).
_DL = "https://github.com/dennislee22/vLLM-benchmarking/blob/b474d1e053c35c9aef8c02aae4efbc0d8675f033/log/"
FLASHINFER_FROM_LOG = {_DL + "vllm-7B-1gpuA10080GB-0.25GRAM.log": True, _DL + "vllm-7B-1gpuA10080GB-0.5GRAM.log": True,
                       _DL + "vllm-7B-2gpuA10080GB-0.25GRAM-same-node.log": True,
                       _DL + "vllm-7B-2gpuA10080GB-0.5GRAM-same-node.log": True,
                       _DL + "vllm-7B-2gpuA10040GB-0.5GRAM-diff-nodes.log": False}
# Rows whose thread gives no version: the log format dates them (README of the data set).
VERSION_FROM_FORMAT = {"https://github.com/vllm-project/vllm/issues/10517": "0.6.4",
                       "https://github.com/vllm-project/vllm/issues/13061": "0.7"}


def read_points(path: str) -> list[dict]:
    rows = []
    for i, r in enumerate(csv.DictReader(read_text(path, newline="").splitlines()), start=2):
        missing = [c for c in ("model", "gpu", "tp") if c not in r]
        if missing:
            raise InputError(path, missing[0], "missing column (calibrate/importers/vllm_log.py LOG_COLUMNS)")
        row = {k: (v or "").strip() for k, v in r.items() if k in LOG_COLUMNS}
        for c in _NUMERIC:
            v = row.get(c, "")
            try:
                row[c] = float(v) if v else None
            except ValueError:
                raise InputError(path, f"line {i}: {c}", f"not a number: {v!r}") from None
        row["line"] = i
        rows.append(row)
    return rows


@dataclass
class Case:
    """A point the model can predict: the engine it describes, resolved."""
    row: dict
    model: ModelSpec
    version: tuple[int, int]
    total_gib: float
    util: float
    tokens: int          # the profile run's max_num_batched_tokens
    sampler_rows: int
    max_model_len: int
    tp: int
    pp: int
    act_bytes: int = 2
    notes: list = field(default_factory=list)
    max_num_seqs: int = 0  # the engine's (V2's per-request tables are sized by it)

    @property
    def family(self) -> str:
        return es.memory_family(self.version)

    def weights_bytes(self) -> float:
        m = self.model
        return stage_weight_bytes(m, self.tp, m.num_layers, True, True, self.act_bytes)

    def graphs_gib(self, profile_gib: float = 0.0) -> float:
        """CUDA-graph GiB the version subtracts before sizing the KV cache (0.20+, not eager, not
        on Model Runner V2 before 0.29): the row's logged figure, else ``profile_gib`` -- the
        fit's ``cudagraph_gib``, as the solver takes it (engine_settings.cudagraphs_in_budget)."""
        eager = str(self.row.get("enforce_eager") or "").strip().lower() in ("true", "1", "yes")
        in_budget = es.cudagraphs_in_budget(self.version, eager, self.model.model_type,
                                            self.model.weight_format is not None)[0]
        logged = self.row.get("cudagraph_gib")
        return (float(logged) if logged is not None else profile_gib) if in_budget else 0.0

    @property
    def v2(self) -> bool:
        """Whether the version runs this model on Model Runner V2 (engine_settings.v2_runner)."""
        return es.v2_runner(self.version, self.model.model_type, self.model.weight_format is not None)

    def runner_buffers_bytes(self) -> float:
        """V2's persistent sampler tables the budget counts (engine_memory.runner_buffer_bytes),
        for the row's max_num_seqs."""
        return runner_buffer_bytes(self.version, self.model, True, self.max_num_seqs)

    def terms(self) -> dict:
        return phase_terms(self.model, self.tp, 1, self.tokens, self.act_bytes, sampler_rows=self.sampler_rows)

    def flashinfer_logged(self) -> bool | None:
        """Whether the row's log says FlashInfer sampled (None: it does not say)."""
        note = SAMPLER_NOTE.search(self.row.get("notes") or "")
        return note.group(1) == "flashinfer" if note else FLASHINFER_FROM_LOG.get(self.row.get("source_url", ""))

    def phases(self, fitted: dict, flashinfer_unlogged: bool | None = None) -> dict:
        """The fitted phases, with V1's sampler phase from the version's code path
        (engine_settings.sampler_bytes_per_logit; FlashInfer where the row's log says so, else
        ``flashinfer_unlogged``: None is pip's default install, True the interval's high corner)."""
        fi = self.flashinfer_logged()
        return sampler_phases(fitted, self.version, self.sampler_rows, flashinfer_unlogged if fi is None else fi,
                              self.v2, self.tp)

    def kv_measured_gib(self) -> float | None:
        """The engine's KV GiB per GPU: from its token or block count where printed, else the
        GiB line. The counts are the engine's (the minimum over its workers: 0.6.4
        ``executor_base.py`` / 0.10.1.1 ``kv_cache_utils.py:1149-1152``); a GiB line is one
        worker's, and at TP >= 2 in V0 it can be a rank that does not sample (the sampler runs
        on the driver only), whose peak is lower. Issue #13061 (2x RTX 4090): its 8.69 GiB line
        is 94,900 tokens, the engine's 81,536 tokens are 7.46 GiB."""
        r = self.row
        per_tok = kv_bytes_per_token(self.model, self.tp, self.model.num_layers, self.act_bytes)
        if r.get("kv_tokens") is not None:
            return r["kv_tokens"] * per_tok / GIB
        if r.get("gpu_blocks") is not None:
            return r["gpu_blocks"] * (r.get("block_size") or es.block_size_default(self.version)[0]) * per_tok / GIB
        return r.get("kv_cache_gib")

    def kv_resolution_gib(self) -> tuple[float, float]:
        """(below, above) GiB by which the logged KV figure may sit off the budget it reports:
        a token or block count is whole blocks, floored (0.6.4 worker/worker.py:226; 0.10.1.1
        v1/core/kv_cache_utils.py:788), so up to one block below; a GiB line is printed to 0.01
        GiB (0.6.4 worker.py:236 'kv_cache_size=%.2fGiB'; 0.10.1.1 v1/worker/gpu_worker.py:276
        '%.2f GiB'), so half that either way."""
        r = self.row
        if r.get("kv_tokens") is None and r.get("gpu_blocks") is None:
            return 0.005, 0.005
        block = r.get("block_size") or es.block_size_default(self.version)[0]
        return block * kv_bytes_per_token(self.model, self.tp, self.model.num_layers, self.act_bytes) / GIB, 0.0


def resolve(row: dict) -> tuple[Case | None, str]:
    """(case, "") or (None, why the row cannot be predicted)."""
    text = row.get("vllm_version") or VERSION_FROM_FORMAT.get(row.get("source_url", ""), "")
    try:
        version = es.parse_version(text, "vllm_version")
    except InputError:
        return None, f"vLLM version {text or 'unknown'} outside {es.supported_text()}"
    if (row.get("quantization") or "") or (row.get("kv_cache_dtype") or "") not in ("", "auto"):
        return None, "quantized weights or KV (not in this table)"
    if row["model"] not in MODELS:
        return None, "model shapes not in the table (MoE, multimodal, hybrid attention or unnamed checkpoint)"
    spec, max_pos, _src = MODELS[row["model"]]
    model = load_model(spec) if isinstance(spec, str) else parse_hf_config(spec, row["model"])
    total = row.get("gpu_total_gib") or GPU_TOTAL_GIB.get(row["gpu"], (None,))[0]
    if total is None:
        return None, f"GPU memory of {row['gpu']} unknown"
    tp, pp = int(row["tp"] or 1), int(row.get("pp") or 1)
    mml = int(row.get("max_model_len") or max_pos)
    chunked = es.chunked_default(version, mml)[0]
    large_name = "H100" if "H100" in row["gpu"] else row["gpu"]
    tokens = int(row.get("max_num_batched_tokens") or
                 es.batched_tokens_default(version, chunked, mml, large_name, total, "serve")[0])
    seqs = int(row.get("max_num_seqs") or es.max_num_seqs_default(version, large_name, total,
                                                                  row.get("max_num_batched_tokens"))[0])
    rows = min(seqs, tokens) if es.is_v1(version) else seqs
    case = Case(row, model, version, total, row.get("gpu_memory_utilization") or es.gpu_memory_utilization_default(version)[0], tokens, rows, mml, tp, pp,
                max_num_seqs=seqs)
    if case.kv_measured_gib() is None and row.get("activation_peak_gib") is None:
        return None, "no KV or activation figure"
    return case, ""


def is_held(row: dict, clauses: list[tuple[str, str]]) -> bool:
    return any(str(row.get(k) if row.get(k) is not None else "") in (v, _float_text(v)) for k, v in clauses)


def _float_text(v: str) -> str:
    try:
        return str(float(v))
    except ValueError:
        return v


def parse_holdout(spec: str) -> list[tuple[str, str]]:
    out = []
    for part in filter(None, (s.strip() for s in (spec or "").split(";"))):
        if "=" not in part:
            raise InputError("--holdout", part, "expected COLUMN=VALUE[;COLUMN=VALUE...]")
        k, v = (s.strip() for s in part.split("=", 1))
        if k not in LOG_COLUMNS:
            raise InputError("--holdout", k, "not a column of the points CSV")
        out.append((k, v))
    return out
