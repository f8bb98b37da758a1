"""Memory per GPU of one pipeline stage (design.md section 5). Pure functions; bytes.

A stage is ``n_layers`` consecutive decoder layers on a TP group of ``tp`` GPUs, plus the
vocab-parallel embedding on the first stage and the LM head on the last. Layers follow their
kind (``ModelSpec.stage_layers``: dense or MoE MLP, full or windowed attention); weights sum
``ModelSpec.layer_tensors`` at each tensor group's bytes per weight (``quant.WeightFormat``);
KV per token is GQA's or MLA's, windowed layers capped at the window.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass

from solver.inputs.model import KV_HEADS, SPLIT, LayerKind, ModelSpec, Tensor
from solver.inputs.profile import Profile
from solver.inputs.quant import WeightFormat, as_format
from solver.inputs.workload import Workload
from solver.units import GIB

# vLLM and Megatron pad the vocabulary so each TP shard is aligned (design.md section 5).
VOCAB_PAD = 64
# Bytes per logit: vLLM upcasts the logits to fp32 before sampling (its LogitsProcessor /
# Sampler work in float32), whatever the activation dtype.
LOGITS_BYTES = 4


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads a TP rank holds: a_kv/t, but at least one -- heads are replicated when
    t > a_kv (vLLM/Megatron replicate rather than split a head)."""
    return max(1, math.ceil(model.num_kv_heads / tp))


def padded_vocab(model: ModelSpec) -> int:
    return math.ceil(model.vocab_size / VOCAB_PAD) * VOCAB_PAD


def params_per_rank(model: ModelSpec, t: Tensor, tp: int) -> float:
    """What one TP rank holds of ``t``: split tensors 1/t; per-KV-head tensors a_kv/t heads
    but at least one; replicated ones whole (norms, router, MLA's q_a/kv_a projections,
    which vLLM builds as ReplicatedLinear). Expert parallelism places E/t whole experts
    per rank instead of 1/t of each: the same bytes."""
    if t.shard == SPLIT:
        return t.params / tp
    if t.shard == KV_HEADS:
        return t.params / model.num_kv_heads * kv_heads_per_gpu(model, tp)
    return float(t.params)


def expert_params_per_rank(model: ModelSpec, tp: int, fmt: WeightFormat) -> float:
    """Routed-expert parameters on one rank: E x mats x h x f/t, with h and f/t rounded up
    to the scheme's load-time padding (``Scheme.pad_hidden`` / ``pad_expert_ffn``)."""
    s, mats = fmt.scheme, (3 if model.gated_mlp else 2)
    if not (s.pad_hidden or s.pad_expert_ffn) or "experts" not in fmt.quantized:
        return model.num_experts * model.mlp_params_per_expert() / tp
    h = _round_up(model.hidden_size, s.pad_hidden)
    f = _round_up(math.ceil(model.ffn_size / tp), s.pad_expert_ffn)
    return float(model.num_experts * mats * h * f)


def kv_blocks(tokens: int, block_size: int) -> int:
    """vLLM's KV blocks for ``tokens``: whole blocks of ``block_size`` tokens, rounded up."""
    return -(-tokens // block_size)


def _round_up(x: int, multiple: int) -> int:
    return math.ceil(x / multiple) * multiple if multiple else x


def layer_weight_bytes(model: ModelSpec, tp: int, weight_bytes, kind: LayerKind | None = None) -> float:
    """One decoder layer of ``kind`` (default: the model's last layer) on one TP rank, each
    tensor group at its bytes per weight (``weight_bytes``: a WeightFormat, or one number
    for every group)."""
    return _layer_weight_bytes(model, tp, as_format(weight_bytes), model.layers[-1] if kind is None else kind)


@functools.lru_cache(maxsize=4096)
def _layer_weight_bytes(model: ModelSpec, tp: int, fmt: WeightFormat, kind: LayerKind) -> float:
    """Memoised: a planner asks the same (model, t, format, kind) thousands of times."""
    return sum((expert_params_per_rank(model, tp, fmt) if t.group == "experts" else params_per_rank(model, t, tp))
               * fmt.bytes_for(t.group) for t in model.layer_tensors(kind))


def layers_weight_bytes(model: ModelSpec, tp: int, weight_bytes, layers) -> float:
    """Sum of ``layer_weight_bytes`` over ``layers`` (LayerKinds), one evaluation per kind."""
    if model.uniform:
        return len(layers) * layer_weight_bytes(model, tp, weight_bytes, model.layers[0]) if layers else 0.0
    return sum(n * layer_weight_bytes(model, tp, weight_bytes, k) for k, n in Counter(layers).items())


def embedding_bytes(model: ModelSpec, tp: int, weight_bytes, group: str = "embedding") -> float:
    """One vocab-parallel V x h matrix on one TP rank (the LM head with ``group="lm_head"``)."""
    return padded_vocab(model) * model.hidden_size / tp * as_format(weight_bytes).bytes_for(group)


def stage_weight_bytes(model: ModelSpec, tp: int, n_layers: int, first: bool, last: bool,
                       weight_bytes) -> float:
    fmt = as_format(weight_bytes)
    extra = 0.0
    if first:
        extra += embedding_bytes(model, tp, fmt)
    if last:
        # an untied LM head is its own matrix; a tied one is shared when first==last and
        # duplicated on the last stage otherwise (design.md section 5)
        extra += embedding_bytes(model, tp, fmt, "lm_head") if (not model.tied_embeddings or not first) else 0.0
        extra += model.hidden_size * fmt.bytes_for("norm")  # final norm
    return layers_weight_bytes(model, tp, fmt, model.stage_layers(n_layers, first, last)) + extra


def kv_layer_bytes_per_token(model: ModelSpec, tp: int, kv_bytes: float) -> float:
    """KV bytes one token stores in one full-attention layer on one TP rank. GQA:
    2 * d * kv_heads_per_gpu * p. MLA: (kv_lora_rank + qk_rope_head_dim) * p on *every*
    rank -- the latent is shared by all heads, so vLLM keeps the whole of it on each TP rank
    (its MLA backends cache one "head" of kv_lora_rank + rope dims per layer)."""
    if model.is_mla:
        return model.kv_elems_per_token() * kv_bytes
    return 2 * model.head_dim * kv_heads_per_gpu(model, tp) * kv_bytes


def kv_layers_held(layers, context: float | None) -> float:
    """Full-attention-layer equivalents of ``layers`` per token of a ``context``-token
    sequence: a windowed layer holds min(context, window) tokens, so it counts
    min(context, window) / context. ``context`` None: every layer counts 1 (an upper bound)."""
    if not context:
        return float(len(layers))
    return sum(min(context, k.window) / context if k.window else 1.0 for k in layers)


def kv_bytes_per_token(model: ModelSpec, tp: int, n_layers: int, kv_bytes: float,
                       context: float | None = None, first: bool = False, last: bool = False) -> float:
    """KV bytes per token of context on one TP rank of a stage of ``n_layers`` layers. With
    ``context`` (tokens a sequence holds), windowed layers are capped at their window, so
    the per-token figure is a function of the context length; without it every layer is
    charged in full. Uniform full-attention models: 2 * d * kv_heads_per_gpu * p * layers."""
    layers = model.stage_layers(n_layers, first, last)
    return kv_layer_bytes_per_token(model, tp, kv_bytes) * kv_layers_held(layers, context)


def stage_kv_bytes(model: ModelSpec, tp: int, n_layers: int, batch: int, context: int,
                   kv_bytes: float, first: bool = False, last: bool = False) -> float:
    return batch * context * kv_bytes_per_token(model, tp, n_layers, kv_bytes, context, first, last)


@dataclass(frozen=True)
class StageMemory:
    """Bytes on one GPU of a stage."""
    weights: float
    kv_cache: float
    activation_peak: float
    runtime_overhead: float
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activation_peak + self.runtime_overhead

    @property
    def free(self) -> float:
        return self.capacity - self.total

    def as_gib(self) -> dict:
        return {"weights": self.weights / GIB, "kv_cache": self.kv_cache / GIB,
                "activation_peak": self.activation_peak / GIB,
                "runtime_overhead": self.runtime_overhead / GIB, "total": self.total / GIB}


def stage_memory(profile: Profile, model: ModelSpec, tp: int, n_layers: int, first: bool, last: bool,
                 workload: Workload, batch: int | None = None) -> StageMemory:
    """Memory per GPU with KV for ``batch`` (default: the whole workload batch) sequences at
    full context (prompt + output), and the prefill peak of that batch."""
    from solver.cost.activation import activation_peak_bytes  # activation.py imports this module

    b = workload.batch if batch is None else batch
    return StageMemory(
        weights=stage_weight_bytes(model, tp, n_layers, first, last, workload.weight_bytes),
        kv_cache=stage_kv_bytes(model, tp, n_layers, b, workload.context_len, workload.kv_bytes, first, last),
        activation_peak=activation_peak_bytes(profile, model, tp, b, workload.prompt_len,
                                              workload.act_bytes, last=last),
        runtime_overhead=profile.runtime_overhead_gib.value * GIB,
        capacity=profile.memory_gib.value * GIB,
    )
