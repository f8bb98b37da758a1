"""Compute time of decoder layers and the LM head on one TP rank (design.md section 5).

Roofline: time = max(FLOPs / (peak x eff_prefill), bytes / (HBM x eff_decode)); both
efficiencies are curves from the profile. No communication here (see ``comm``).
"""

from __future__ import annotations

from solver.cost.memory import embedding_bytes, kv_heads_per_gpu, layer_weight_bytes, padded_vocab
from solver.cost.warn import note
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Curve, Profile
from solver.inputs.workload import Workload


def matmul_params_per_gpu(model: ModelSpec, tp: int) -> float:
    """Matmul weights one token multiplies through on one rank, sharded as
    ``memory.layer_weight_bytes`` holds them: q/o and the top-k experts' MLP split by t, k/v
    split by t but replicated past a_kv, the MoE router replicated. Norms and biases are
    elementwise (no matmul FLOPs). ``calibrate.memory.fit`` counts measured FLOPs with this."""
    h = model.hidden_size
    q_o = 2 * h * model.q_dim / tp
    k_v = 2 * h * model.head_dim * kv_heads_per_gpu(model, tp)
    mlp = model.experts_per_token * model.mlp_params_per_expert() / tp
    router = h * model.num_experts if model.is_moe else 0
    return q_o + k_v + mlp + router


def prefill_layer_flops(model: ModelSpec, tp: int, batch: int, seq: int) -> float:
    """2*T*params/t + causal attention 2*b*s^2*d*a/t (4*T*s*d*a/t halved: flash/SDPA
    kernels skip masked tiles; PaLM paper, appendix B)."""
    tokens = batch * seq
    attn = 2.0 * batch * seq * seq * model.head_dim * model.num_heads / tp
    return 2.0 * tokens * matmul_params_per_gpu(model, tp) + attn


def decode_layer_flops(model: ModelSpec, tp: int, batch: int, context: float) -> float:
    """One new token for each of ``batch`` sequences attending to ``context`` tokens."""
    attn = 4.0 * batch * context * model.head_dim * model.num_heads / tp
    return 2.0 * batch * matmul_params_per_gpu(model, tp) + attn


def experts_touched(model: ModelSpec, batch_tokens: int) -> float:
    """Expected experts a step reads when each token picks k of E uniformly:
    E * (1 - (1 - k/E)^tokens). Dense models: 1."""
    if not model.is_moe:
        return 1.0
    e, k = model.num_experts, model.experts_per_token
    return e * (1.0 - (1.0 - k / e) ** batch_tokens)


def layer_read_bytes(model: ModelSpec, tp: int, workload: Workload, batch_tokens: int) -> float:
    """Weights streamed from HBM by one layer's forward (MoE: only the experts touched)."""
    full = layer_weight_bytes(model, tp, workload.weight_bytes)
    if not model.is_moe:
        return full
    expert = model.mlp_params_per_expert() / tp * workload.weight_bytes
    return full - (model.num_experts - experts_touched(model, batch_tokens)) * expert


def _eff(profile: Profile, curve: Curve, x: float, what: str, check: bool) -> float:
    if check and not curve.in_range(x):
        lo, hi = curve.range[curve.x_quantity]
        note(f"{profile.path}: {what} fitted for {curve.x_quantity} in [{lo:g}, {hi:g}], asked for {x:.4g} "
             "(extrapolated)")
    return curve.at(x)


def roofline_s(profile: Profile, flops: float, read_bytes: float, dtype: str) -> float:
    """max(compute time, memory time) for one kernel sequence on one GPU. Only the curve of
    the bound that wins is range-checked: the other does not affect the answer."""
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


def prefill_layer_s(profile: Profile, model: ModelSpec, tp: int, workload: Workload, batch: int) -> float:
    flops = prefill_layer_flops(model, tp, batch, workload.prompt_len)
    tokens = batch * workload.prompt_len
    read = layer_read_bytes(model, tp, workload, tokens)
    return roofline_s(profile, flops, read, workload.dtype) + elementwise_s(profile, model, workload, tokens)


def decode_layer_s(profile: Profile, model: ModelSpec, tp: int, workload: Workload, batch: int,
                   context: float) -> float:
    flops = decode_layer_flops(model, tp, batch, context)
    kv_read = batch * context * 2 * model.head_dim * kv_heads_per_gpu(model, tp) * workload.kv_bytes
    read = layer_read_bytes(model, tp, workload, batch) + kv_read
    return roofline_s(profile, flops, read, workload.dtype) + elementwise_s(profile, model, workload, batch)


def lm_head_s(profile: Profile, model: ModelSpec, tp: int, workload: Workload, rows: int) -> float:
    """Logits for ``rows`` positions (one per sequence: vLLM samples only the last token)."""
    flops = 2.0 * rows * model.hidden_size * padded_vocab(model) / tp
    return roofline_s(profile, flops, embedding_bytes(model, tp, workload.weight_bytes), workload.dtype)
