"""One step of one pipeline stage as a sum of op times (design.md section 9).

A step runs ``prefill_tokens`` prompt tokens (``prefill_batch`` sequences of ``prefill_len``
tokens, possibly one chunk of them) together with ``decode_batch`` sequences decoding one
token each at ``context`` -- vLLM's V1 scheduler mixes both in one forward. Per layer, at
the TP shard t (kv heads replicated past a_kv):

- GEMMs over all T = prefill + decode tokens: qkv (k=h, n=(a/t + 2 a_kv')d), o (k=a d/t,
  n=h), gate/up (k=h, n=2f/t; f/t without a gate), down (k=f/t, n=h); MoE: router (n=E)
  and the routed experts as ONE fused op (``moe_experts``, see :func:`fused_moe`);
- attention: prefill over (batch, len), decode over (batch, context), from their tables;
- elementwise: two fused residual-add + RMSNorm (read x and residual, write both: 4 T h p),
  rotary on q and k (read + write), the gated activation (read 2f/t, write f/t);
- two all-reduces of T*h*p (after o and after down) when t > 1.

The stage adds the LM head GEMM (last stage, one row per sequence sampled), the embedding
all-reduce (first stage) or the all-gather of the activations it receives, the logits
all-gather (last stage), and the runtime's fixed per-step overhead (last stage: the engine
samples there). Ops with no table fall back to the roofline, labelled as such.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from solver.cost import comm
from solver.cost.compute import expert_bytes, experts_touched
from solver.cost.memory import kv_heads_per_gpu, padded_vocab
from solver.cost.ops.lookup import allreduce_s, attention_s, elementwise_s, gemm_s, moe_s
from solver.inputs.capability import matmul_dtype
from solver.inputs.model import LayerKind, ModelSpec
from solver.inputs.ops_profile import OpTables
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload


@dataclass(frozen=True)
class OpTime:
    """``count`` calls of one op in the step, ``seconds`` each."""
    name: str
    kind: str          # gemm | moe | attention | elementwise | all_reduce | all_gather | overhead
    seconds: float
    count: float
    source: str

    @property
    def total_s(self) -> float:
        return self.seconds * self.count

    @property
    def comm(self) -> bool:
        return self.kind in ("all_reduce", "all_gather")


@dataclass(frozen=True)
class Step:
    """What one forward of a stage computes."""
    prefill_batch: int = 0
    prefill_len: float = 0      # tokens of each prompt in this step (a chunk of it when chunked)
    prefill_context: float = 0  # tokens each prompt attends to at the end of this step
    decode_batch: int = 0
    context: float = 0.0      # tokens each decoding sequence attends to

    @property
    def tokens(self) -> float:
        return self.prefill_batch * self.prefill_len + self.decode_batch

    @property
    def rows(self) -> int:
        """Logits rows: one per sequence in the step."""
        return self.prefill_batch + self.decode_batch


def covered(model: ModelSpec) -> bool:
    """Whether the op composition models this architecture: GQA/MHA attention (dense or MoE
    MLPs, shared experts, sliding windows). MLA (DeepSeek) is not composed: its stages keep
    the roofline, labelled as such."""
    return not model.is_mla


def layer_gemms(model: ModelSpec, tp: int, tokens: float, kind: LayerKind | None = None) -> list[tuple]:
    """(name, m, n, k, calls) of one layer's GEMMs on one rank (``kind``: the last layer's)."""
    kind = model.layers[-1] if kind is None else kind
    h, d, mats = model.hidden_size, model.head_dim, (2 if model.gated_mlp else 1)
    qkv_n = (model.num_heads / tp + 2 * kv_heads_per_gpu(model, tp)) * d
    out = [("qkv_proj", tokens, qkv_n, h, 1), ("o_proj", tokens, h, model.q_dim / tp, 1)]
    if not kind.moe:
        f = (model.dense_ffn_size or model.ffn_size) / tp
        return out + [("gate_up_proj", tokens, mats * f, h, 1), ("down_proj", tokens, h, f, 1)]
    rows = tokens * model.experts_per_token  # every token's rows over the k experts it picks
    f = model.ffn_size / tp
    out += [("router", tokens, model.num_experts, h, 1),
            ("expert_gate_up", rows, mats * f, h, 1),
            ("expert_down", rows, h, f, 1)]
    if model.shared_expert_ffn_size:
        fs = model.shared_expert_ffn_size / tp
        out += [("shared_gate_up", tokens, mats * fs, h, 1), ("shared_down", tokens, h, fs, 1)]
    return out


EXPERT_GEMMS = ("expert_gate_up", "expert_down")
# the tensor group (solver/inputs/quant.py GROUPS) whose weights each GEMM reads
GEMM_GROUP = {"qkv_proj": "attn", "o_proj": "attn", "gate_up_proj": "mlp", "down_proj": "mlp",
              "router": "router", "expert_gate_up": "experts", "expert_down": "experts",
              "shared_gate_up": "shared_experts", "shared_down": "shared_experts"}


def gemm_format(workload: Workload, group: str, scheme_dtype: str) -> tuple[str, int, float]:
    """(matmul dtype, activation bytes, bytes per weight) of a GEMM reading ``group``'s
    weights: a group the checkpoint leaves in 16 bits runs at the activation dtype; a
    quantized one at ``scheme_dtype`` (``capability.matmul_dtype``: the scheme's compute dtype
    where the GPU runs it natively, else the 16-bit dtype with the scheme's narrower weights)."""
    w_bytes = workload.weight_bytes.bytes_for(group)
    p = workload.act_bytes
    return (workload.act_dtype if w_bytes >= p else scheme_dtype), p, w_bytes


def fused_moe(profile: Profile, tables: OpTables | None, model: ModelSpec, tp: int, workload: Workload,
              tokens: float, gemms: list[OpTime]) -> OpTime:
    """The routed experts of one MoE layer as vLLM runs them: one fused kernel per projection
    (fused_moe Triton / CUTLASS grouped GEMM over all experts), not one launch per expert.

    The profile's measured fused-MoE table for this expert shape wins (``moe_s``: the whole
    call, its gated activation included). Without one, its time is the larger of
    - compute: the grouped GEMMs of all T*k token rows at the expert shape, timed as one GEMM of
      m = T*k rows per projection (same FLOPs, one launch each; the per-expert tiles of
      T*k/touched rows are taken to run at the big GEMM's rate -- optimistic when few rows
      reach each expert, which is when the weight stream below dominates anyway), and
    - weights: the touched experts' bytes (``experts_touched`` x ``expert_bytes``) streamed at
      the elementwise/roofline bandwidth (one launch),
    as ONE op (count 1) whose source names the bound that set it."""
    hit = moe_s(profile, tables, model, tp, workload.expert_parallel, tokens, workload.dtype)
    if hit is not None:
        return OpTime("moe_experts", "moe", hit[0], 1, hit[1])
    compute_s = sum(g.seconds for g in gemms)
    read = experts_touched(model, tokens) * expert_bytes(model, tp, workload)
    stream_s, stream_src = elementwise_s(profile, tables, read)
    if compute_s >= stream_s:
        return OpTime("moe_experts", "gemm", compute_s, 1, f"{gemms[0].source} (fused MoE, compute-bound)")
    return OpTime("moe_experts", "gemm", stream_s, 1, f"{stream_src} (fused MoE, touched experts' weights)")


def layer_ops(profile: Profile, tables: OpTables | None, model: ModelSpec, tp: int, workload: Workload,
              step: Step, kind: LayerKind | None = None) -> list[OpTime]:
    """One decoder layer's ops on one rank, for ``step`` (``kind``: the last layer's). A
    windowed layer attends to at most ``kind.window`` tokens."""
    kind = model.layers[-1] if kind is None else kind
    t_tok, p, dtype = step.tokens, workload.act_bytes, matmul_dtype(profile, workload)
    cap = (lambda x: min(x, kind.window)) if kind.window else (lambda x: x)
    ops, experts = [], []
    for name, m, n, k, calls in layer_gemms(model, tp, t_tok, kind):
        s, src = gemm_s(profile, tables, m, n, k, *gemm_format(workload, GEMM_GROUP[name], dtype))
        (experts if name in EXPERT_GEMMS else ops).append(OpTime(name, "gemm", s, calls, src))
    routed_act = 1.0  # the routed experts' gated activation as its own kernel; 0 inside a measured fused-MoE call
    if experts:
        ops.append(fused_moe(profile, tables, model, tp, workload, t_tok, experts))
        routed_act = 0.0 if ops[-1].kind == "moe" else 1.0
    heads, kvh, d = model.num_heads // tp, kv_heads_per_gpu(model, tp), model.head_dim
    if step.prefill_batch:
        s, src = attention_s(profile, tables, "prefill", step.prefill_batch, cap(step.prefill_context), heads,
                             kvh, d, dtype, p, workload.kv_bytes)
        # a chunk of L queries ending at context C attends to ~L*(C - L/2) keys; the table's
        # causal prefill of C tokens to C^2/2: the chunk pays (2L/C)(1 - L/2C) of it (1 when L = C;
        # over the chunks of one prompt the shares add up to the whole prompt's attention)
        frac = min(1.0, step.prefill_len / cap(step.prefill_context))
        s *= 2 * frac * (1 - frac / 2)
        ops.append(OpTime("prefill_attention", "attention", s, 1, src))
    if step.decode_batch:
        s, src = attention_s(profile, tables, "decode", step.decode_batch, cap(step.context), heads, kvh, d,
                             dtype, p, workload.kv_bytes)
        ops.append(OpTime("decode_attention", "attention", s, 1, src))
    h = model.hidden_size
    f_t = (routed_act * model.ffn_size * model.experts_per_token + model.shared_expert_ffn_size if kind.moe
           else model.dense_ffn_size or model.ffn_size) / tp
    elementwise = (("add_rmsnorm", 4 * t_tok * h * p, 2),
                   ("rotary", 2 * t_tok * (heads + kvh) * d * p, 1),
                   ("activation", (3 if model.gated_mlp else 2) * t_tok * f_t * p, 1))
    for name, nbytes, calls in elementwise:
        if not nbytes:  # a MoE layer's activation runs inside its measured fused-MoE call
            continue
        s, src = elementwise_s(profile, tables, nbytes)
        ops.append(OpTime(name, "elementwise", s, calls, src))
    if tp > 1:
        s, src = _allreduce(profile, tables, tp, t_tok * h * p, t_tok)
        ops.append(OpTime("all_reduce", "all_reduce", s, 2, src))
    return ops


def _allreduce(profile: Profile, tables: OpTables | None, tp: int, size_bytes: float, tokens: float):
    """The profile's ``serving.tp_allreduce`` wins (fitted end to end on the engine's real
    deployments: e.g. NCCL through the host on PCIe boxes without P2P, which an op table measured
    on another machine does not show; ``comm.tp_allreduce_s`` rules), then the op table, then
    the collective fits."""
    if profile.engine_allreduce:
        s, src = comm.tp_allreduce_s(profile, tp, size_bytes), "serving.tp_allreduce (fitted end to end)"
        if profile.corner and not comm.fit_pins(profile, tp, size_bytes):
            # at an interval corner, a size the fit does not pin spans the fit's extrapolation
            # and the imported table's time for it (docs/metrics.md, "Intervals")
            alt = allreduce_s(profile, tables, tp, size_bytes, tokens)
            if alt is not None and (alt[0] > s) == (profile.corner == "low"):
                s, src = alt[0], f"{alt[1]} (interval {profile.corner} end: size outside the fit's pinned range)"
        return s, src
    hit = allreduce_s(profile, tables, tp, size_bytes, tokens)
    if hit is not None:
        return hit
    return comm.tp_allreduce_s(profile, tp, size_bytes), "collectives fit / network block (no op table)"


def stage_ops(profile: Profile, tables: OpTables | None, model: ModelSpec, tp: int, n_layers: int,
              first: bool, last: bool, workload: Workload, step: Step, phase: str,
              runtime: str = "vllm") -> list[OpTime]:
    """Every op of one step on one rank of a stage, counts multiplied out over its layers.
    ``phase`` ("prefill" | "decode") picks the per-step overhead."""
    ops = []
    for kind, count in Counter(model.stage_layers(n_layers, first, last)).items():
        ops += [OpTime(o.name, o.kind, o.seconds, o.count * count, o.source)
                for o in layer_ops(profile, tables, model, tp, workload, step, kind)]
    p, h, t_tok = workload.act_bytes, model.hidden_size, step.tokens
    if first and tp > 1:
        s, src = _allreduce(profile, tables, tp, t_tok * h * p, t_tok)
        ops.append(OpTime("embedding_all_reduce", "all_reduce", s, 1, src))
    elif not first and tp > 1:
        nbytes = comm.TENSORS_BETWEEN_STAGES[runtime] * t_tok * h * p
        ops.append(OpTime("recv_all_gather", "all_gather", comm.tp_allgather_s(profile, tp, nbytes), 1,
                          "collectives fit / network block"))
    if last:
        vocab = padded_vocab(model)
        s, src = gemm_s(profile, tables, step.rows, vocab / tp, h,
                        *gemm_format(workload, "lm_head", matmul_dtype(profile, workload)))
        ops.append(OpTime("lm_head", "gemm", s, 1, src))
        if tp > 1:
            ops.append(OpTime("logits_all_gather", "all_gather",
                              comm.tp_allgather_s(profile, tp, step.rows * vocab * p), 1,
                              "collectives fit / network block"))
        oh = None if tables is None else tables.step_overhead_s(phase, step.rows, tp)
        if oh is not None:
            ops.append(OpTime("step_overhead", "overhead", oh[0], 1, oh[1]))
    return ops
