"""Compute time of decoder layers and the LM head on one TP rank (design.md section 5).

Roofline: time = max(FLOPs / (peak x eff_prefill), bytes / (HBM x eff_decode)); both
efficiencies are curves from the profile. No communication here (see ``comm``). FLOPs and
bytes follow the layer kind: top-k experts for MoE, MLA's attention dimensions, attended keys
capped at a windowed layer's window; the matmul rate is the scheme's (``capability``).
"""

from __future__ import annotations

from collections import Counter

from solver.cost.memory import (embedding_bytes, kv_layer_bytes_per_token, layer_weight_bytes, padded_vocab,
                                params_per_rank)
from solver.cost.warn import note
from solver.inputs.capability import matmul_dtype
from solver.inputs.model import LayerKind, ModelSpec
from solver.inputs.profile import Curve, Profile
from solver.inputs.workload import Workload


def matmul_params_per_gpu(model: ModelSpec, tp: int, kind: LayerKind | None = None) -> float:
    """Matmul weights one token multiplies through on one rank of a layer of ``kind``,
    sharded as ``memory.layer_weight_bytes`` holds them: q/o and the top-k experts' MLP
    split by t, k/v split by t but replicated past a_kv, the MoE router and MLA's
    down-projections replicated. Norms and biases are elementwise (no matmul FLOPs).
    ``calibrate.memory.fit`` counts measured FLOPs with this."""
    return sum(params_per_rank(model, t, tp) * t.active for t in model.layer_tensors(kind) if t.active)


def attention_dims(model: ModelSpec, decode: bool) -> int:
    """Per head, the q.k plus the p.v dot-product length. GQA: 2d. MLA prefill runs the
    expanded heads (qk_nope + qk_rope, then v_head_dim); MLA decode runs absorbed over the
    latent (kv_lora + rope for q.k, kv_lora for p.v), as vLLM's MLA backends do."""
    if not model.is_mla:
        return 2 * model.head_dim
    if decode:
        return 2 * model.kv_lora_rank + model.qk_rope_head_dim
    return model.qk_nope_head_dim + model.qk_rope_head_dim + model.v_head_dim


def causal_pairs(seq: int, window: int = 0) -> float:
    """(query, key) pairs of causal attention over ``seq`` tokens, s^2/2 (flash/SDPA kernels
    skip masked tiles; PaLM paper, appendix B); with a window w < s each query sees at most
    w keys: w*s - w^2/2."""
    if not window or seq <= window:
        return seq * seq / 2.0
    return window * seq - window * window / 2.0


def prefill_layer_flops(model: ModelSpec, tp: int, batch: int, seq: int, kind: LayerKind | None = None) -> float:
    """2*T*params/t + attention 2*b*pairs*(qk+v dims)*a/t; for full-attention GQA that is
    the usual 2*b*s^2*d*a/t."""
    kind = model.layers[-1] if kind is None else kind
    attn = 2.0 * batch * causal_pairs(seq, kind.window) * attention_dims(model, False) * model.num_heads / tp
    return 2.0 * batch * seq * matmul_params_per_gpu(model, tp, kind) + attn


def attended(context: float, kind: LayerKind) -> float:
    """Keys a decode query reads: the context, capped at the layer's window."""
    return min(context, kind.window) if kind.window else context


def decode_layer_flops(model: ModelSpec, tp: int, batch: int, context: float, kind: LayerKind | None = None) -> float:
    """One new token for each of ``batch`` sequences attending to ``context`` tokens."""
    kind = model.layers[-1] if kind is None else kind
    attn = 2.0 * batch * attended(context, kind) * attention_dims(model, True) * model.num_heads / tp
    return 2.0 * batch * matmul_params_per_gpu(model, tp, kind) + attn


def experts_touched(model: ModelSpec, batch_tokens: int) -> float:
    """Expected experts a step reads when each token picks k of E uniformly:
    E * (1 - (1 - k/E)^tokens). Dense models: 1."""
    if not model.is_moe:
        return 1.0
    e, k = model.num_experts, model.experts_per_token
    return e * (1.0 - (1.0 - k / e) ** batch_tokens)


def layer_read_bytes(model: ModelSpec, tp: int, workload: Workload, batch_tokens: int,
                     kind: LayerKind | None = None) -> float:
    """Weights streamed from HBM by one layer's forward (MoE: only the experts touched)."""
    kind = model.layers[-1] if kind is None else kind
    full = layer_weight_bytes(model, tp, workload.weight_bytes, kind)
    if not kind.moe:
        return full
    return full - (model.num_experts - experts_touched(model, batch_tokens)) * expert_bytes(model, tp, workload)


def expert_bytes(model: ModelSpec, tp: int, workload: Workload) -> float:
    """Weight bytes of one routed expert's shard on one rank (gate/up and down)."""
    return model.mlp_params_per_expert() / tp * workload.weight_bytes.bytes_for("experts")


def _eff(profile: Profile, curve: Curve, x: float, what: str, check: bool) -> float:
    if check and not curve.in_range(x):
        lo, hi = curve.range[curve.x_quantity]
        note(f"{profile.path}: {what} fitted for {curve.x_quantity} in [{lo:g}, {hi:g}], asked for {x:.4g} "
             "(extrapolated)")
    return curve.at(x)


def roofline_s(profile: Profile, flops: float, read_bytes: float, dtype: str) -> float:
    """max(compute time, memory time) for one kernel sequence on one GPU. Only the curve of
    the bound that wins is range-checked: the other does not affect the answer. ``dtype``:
    the ``gpu.peak_tflops`` key the matmuls run at (``capability.matmul_dtype``)."""
    hbm = profile.hbm_gbps.value * 1e9
    t_compute = flops / (profile.peak_flops(dtype) * profile.prefill_efficiency.at(flops / 1e9))
    t_memory = read_bytes / (hbm * profile.decode_efficiency.at(read_bytes))
    if t_compute >= t_memory:
        _eff(profile, profile.prefill_efficiency, flops / 1e9, "prefill efficiency", True)
    else:
        _eff(profile, profile.decode_efficiency, read_bytes, "decode efficiency", True)
    return max(t_compute, t_memory)


def elementwise_s(profile: Profile, model: ModelSpec, workload: Workload, tokens: int) -> float:
    """HBM passes over the unsharded tokens x h activation (norms, residual adds, rotary)
    that TP does not shrink: ``passes * T*h*p / HBM`` per layer, when the profile fitted
    ``compute.prefill_elementwise_passes`` jointly with its prefill curve (docs/profile.md)."""
    passes = profile.prefill_elementwise_passes
    if passes is None:
        return 0.0
    return passes.value * tokens * model.hidden_size * workload.act_bytes / (profile.hbm_gbps.value * 1e9)


def prefill_layer_s(profile: Profile, model: ModelSpec, tp: int, workload: Workload, batch: int,
                    kind: LayerKind | None = None) -> float:
    flops = prefill_layer_flops(model, tp, batch, workload.prompt_len, kind)
    tokens = batch * workload.prompt_len
    read = layer_read_bytes(model, tp, workload, tokens, kind)
    return (roofline_s(profile, flops, read, matmul_dtype(profile, workload))
            + elementwise_s(profile, model, workload, tokens))


def decode_layer_s(profile: Profile, model: ModelSpec, tp: int, workload: Workload, batch: int,
                   context: float, kind: LayerKind | None = None) -> float:
    kind = model.layers[-1] if kind is None else kind
    flops = decode_layer_flops(model, tp, batch, context, kind)
    kv_read = batch * attended(context, kind) * kv_layer_bytes_per_token(model, tp, workload.kv_bytes)
    read = layer_read_bytes(model, tp, workload, batch, kind) + kv_read
    return (roofline_s(profile, flops, read, matmul_dtype(profile, workload))
            + elementwise_s(profile, model, workload, batch))


def prefill_layers_s(profile: Profile, model: ModelSpec, tp: int, workload: Workload, batch: int,
                     layers) -> float:
    """``prefill_layer_s`` summed over ``layers`` (LayerKinds), one evaluation per kind."""
    return sum(n * prefill_layer_s(profile, model, tp, workload, batch, k) for k, n in Counter(layers).items())


def decode_layers_s(profile: Profile, model: ModelSpec, tp: int, workload: Workload, batch: int,
                    context: float, layers) -> float:
    return sum(n * decode_layer_s(profile, model, tp, workload, batch, context, k)
               for k, n in Counter(layers).items())


def lm_head_s(profile: Profile, model: ModelSpec, tp: int, workload: Workload, rows: int) -> float:
    """Logits for ``rows`` positions (one per sequence: vLLM samples only the last token)."""
    flops = 2.0 * rows * model.hidden_size * padded_vocab(model) / tp
    return roofline_s(profile, flops, embedding_bytes(model, tp, workload.weight_bytes, "lm_head"),
                      matmul_dtype(profile, workload))
