"""Weight formats: bytes per parameter of each tensor group, as a checkpoint stores them.

A checkpoint's scheme (``--dtype``, or its ``quantization_config`` / ``hf_quant_config.json``)
says which tensor groups are quantized and how many bytes a quantized weight takes, scales
and zero points included. vLLM quantizes linear layers only: the token embedding, the LM
head, the MoE router, norms and biases keep the 16-bit activation dtype unless a scheme
says otherwise (``vllm/model_executor/layers/quantization/*``: each ``get_quant_method``
returns a quantized method for ``LinearBase`` / ``FusedMoE`` and nothing for
``VocabParallelEmbedding``; ``ParallelLMHead`` only when ``lm_head`` is listed).

Bytes per quantized weight = bits/8 + (scale bytes + zero-point bytes) / group size, per the
format's own definition (sources in ``SCHEMES``). Per-tensor and per-output-channel scales
are one number per tensor or per row: under 0.1% of the weight bytes, counted as zero.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

from solver.errors import InputError

# Tensor groups a layer's parameters fall into (memory.py and compute.py ask per group).
GROUPS = ("attn", "mlp", "experts", "shared_experts", "router", "norm", "bias", "embedding", "lm_head")
LINEAR_GROUPS = frozenset({"attn", "mlp", "experts", "shared_experts"})
SIXTEEN_BIT = 2.0  # bytes of a bf16/fp16 weight


@dataclass(frozen=True)
class Scheme:
    """One quantization format. ``bits``: stored bits per weight; ``group_size``: weights
    sharing one scale (0: per tensor or per channel, counted as zero); ``scale_bytes``,
    ``zero_bytes``: per group; ``groups``: tensor groups it quantizes by default;
    ``compute_dtype``: the ``gpu.peak_tflops`` key its matmuls run at natively."""
    name: str
    bits: int
    group_size: int = 0
    scale_bytes: float = 0.0
    zero_bytes: float = 0.0
    groups: frozenset = LINEAR_GROUPS
    compute_dtype: str = "bf16"
    vllm_quantization: str = ""  # vLLM --quantization value ("" = none)
    source: str = ""
    # Routed-expert tensors padded at load (0: none): hidden size to a multiple of
    # ``pad_hidden``, the expert width per TP rank to a multiple of ``pad_expert_ffn``.
    pad_hidden: int = 0
    pad_expert_ffn: int = 0

    @property
    def bytes_per_weight(self) -> float:
        extra = (self.scale_bytes + self.zero_bytes) / self.group_size if self.group_size else 0.0
        return self.bits / 8 + extra


SCHEMES = {s.name: s for s in (
    Scheme("bf16", 16, compute_dtype="bf16", groups=frozenset(GROUPS), source="16-bit"),
    Scheme("fp16", 16, compute_dtype="fp16", groups=frozenset(GROUPS), source="16-bit"),
    # fp8 e4m3, one fp32 scale per tensor (static) or computed per token at run time
    # (dynamic); the weight bytes are the same. vLLM Fp8LinearMethod / Fp8MoEMethod.
    Scheme("fp8", 8, compute_dtype="fp8", vllm_quantization="fp8",
           source="vLLM quantization/fp8.py: e4m3 weights, per-tensor fp32 scale"),
    # DeepSeek-V3/R1: 128x128 weight blocks, one fp32 scale each (config weight_block_size).
    Scheme("fp8-block", 8, group_size=128 * 128, scale_bytes=4.0, compute_dtype="fp8", vllm_quantization="fp8",
           source="DeepSeek-V3 config.json quantization_config.weight_block_size [128, 128], fp32 scale_inv"),
    # W8A8 int8 (compressed-tensors), per-channel scales.
    Scheme("int8", 8, compute_dtype="int8", vllm_quantization="compressed-tensors",
           source="vLLM compressed_tensors_w8a8_int8.py: int8 weights, per-channel fp32 scales"),
    # AWQ: 4-bit, group 128, fp16 scales, 4-bit zero points packed 8 per int32.
    Scheme("awq", 4, group_size=128, scale_bytes=2.0, zero_bytes=0.5, compute_dtype="fp16", vllm_quantization="awq",
           source="AutoAWQ / vLLM awq.py: qweight int32 (8 x 4 bit), scales fp16 and qzeros (4 bit) per group"),
    # GPTQ: as AWQ (scales fp16, qzeros 4-bit packed) plus g_idx int32 per input row.
    Scheme("gptq", 4, group_size=128, scale_bytes=2.0, zero_bytes=0.5, compute_dtype="fp16", vllm_quantization="gptq",
           source="AutoGPTQ / vLLM gptq.py: qweight, scales fp16 and qzeros (bits) per group, g_idx"),
    # compressed-tensors pack-quantized W4A16, symmetric (no zero point), bf16 group scales.
    Scheme("w4a16", 4, group_size=128, scale_bytes=2.0, compute_dtype="bf16", vllm_quantization="compressed-tensors",
           source="compressed-tensors pack_quantized W4A16: int4 weights, bf16 scale per 128"),
    # OCP MX v1.0: fp4 e2m1 elements, one e8m0 (1 byte) scale per block of 32. gpt-oss
    # quantizes only the MoE experts (vLLM Mxfp4Config applies to FusedMoE only).
    # vLLM pads the experts for its Marlin MoE kernel (n % 256, k % 128): hidden to 256,
    # the per-rank expert width to 128 (vllm/model_executor/layers/quantization/mxfp4.py,
    # Mxfp4MoEMethod.create_weights); gpt-oss 2880 -> 3072 and 2880/t -> multiple of 128.
    Scheme("mxfp4", 4, group_size=32, scale_bytes=1.0, groups=frozenset({"experts"}), compute_dtype="fp4",
           vllm_quantization="mxfp4", source="OCP Microscaling Formats (MX) v1.0: block 32, e8m0 scale",
           pad_hidden=256, pad_expert_ffn=128),
    # NVFP4: fp4 e2m1, one fp8 e4m3 scale per 16, plus one fp32 global scale per tensor.
    Scheme("nvfp4", 4, group_size=16, scale_bytes=1.0, compute_dtype="fp4", vllm_quantization="modelopt_fp4",
           source="NVIDIA ModelOpt NVFP4: block 16, e4m3 scale, fp32 per-tensor scale"),
)}
SCHEME_NAMES = tuple(SCHEMES)


@dataclass(frozen=True)
class WeightFormat:
    """Bytes per parameter of each tensor group. ``quantized`` groups take the scheme's
    bytes per weight, the others ``unquantized_bytes`` (the 16-bit activation dtype)."""
    scheme: Scheme
    quantized: frozenset = field(default=LINEAR_GROUPS)
    unquantized_bytes: float = SIXTEEN_BIT
    act_dtype: str = "bf16"
    # (group, fraction of its parameters the checkpoint leaves unquantized), for exclusions
    # that name some layers only (ModelOpt ``exclude_modules``: ``model.layers.3.self_attn``)
    excluded_frac: tuple = ()

    @property
    def name(self) -> str:
        return self.scheme.name

    def bytes_for(self, group: str) -> float:
        if group not in self.quantized:
            return self.unquantized_bytes
        f = dict(self.excluded_frac).get(group, 0.0)
        return self.scheme.bytes_per_weight * (1.0 - f) + self.unquantized_bytes * f

    @property
    def compute_dtype(self) -> str:
        return self.scheme.compute_dtype


@functools.lru_cache(maxsize=64)
def weight_format(name: str, act_dtype: str = "") -> WeightFormat:
    """The format of ``--dtype name`` with the scheme's default groups. 16-bit schemes keep
    everything in that dtype; quantized ones run activations in bf16 (AWQ/GPTQ kernels in
    fp16, their checkpoints' dtype) unless ``act_dtype`` says otherwise."""
    if name not in SCHEMES:
        raise InputError("", "--dtype", f"must be one of {', '.join(SCHEME_NAMES)}, got {name!r}")
    s = SCHEMES[name]
    if s.bits == 16:
        return WeightFormat(s, frozenset(GROUPS), SIXTEEN_BIT, act_dtype=name)
    act = act_dtype or ("fp16" if s.compute_dtype == "fp16" else "bf16")
    return WeightFormat(s, s.groups, SIXTEEN_BIT, act_dtype=act)


def uniform(bytes_per_param: float) -> WeightFormat:
    """Every group at the same bytes (callers that pass a plain number)."""
    s = Scheme(f"{bytes_per_param:g}B", int(round(bytes_per_param * 8)), groups=frozenset(GROUPS))
    return WeightFormat(s, frozenset(GROUPS), float(bytes_per_param))


def as_format(w) -> WeightFormat:
    return w if isinstance(w, WeightFormat) else uniform(float(w))


def with_excluded(fmt: WeightFormat, groups: set) -> WeightFormat:
    return replace(fmt, quantized=fmt.quantized - frozenset(groups))
