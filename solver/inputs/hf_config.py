"""Hugging Face ``config.json`` -> ModelSpec, per layer kind.

Read as vLLM's model classes read the same fields (vllm/model_executor/models/*.py):
- MoE: experts ``num_local_experts`` | ``num_experts`` | ``n_routed_experts``, top-k
  ``num_experts_per_tok``; expert width ``moe_intermediate_size`` (Qwen-MoE, DeepSeek), else
  ``intermediate_size`` (Mixtral, gpt-oss, Llama-4); shared experts
  ``shared_expert_intermediate_size`` (Qwen2-MoE, with a gate) or ``n_shared_experts`` x
  expert width (DeepSeek) or one of ``intermediate_size`` (Llama-4); which layers are MoE:
  ``first_k_dense_replace`` + ``moe_layer_freq`` (DeepSeek), ``decoder_sparse_step`` +
  ``mlp_only_layers`` (Qwen-MoE), ``interleave_moe_layer_step`` (Llama-4); dense layers of
  a MoE model use ``intermediate_size`` (``intermediate_size_mlp`` on Llama-4).
- MLA: ``kv_lora_rank``, ``q_lora_rank``, ``qk_nope_head_dim``, ``qk_rope_head_dim``, ``v_head_dim``.
- Attention window per layer: ``layer_types`` (sliding_attention / full_attention /
  chunked_attention), gemma-2 alternation, gemma-3 ``sliding_window_pattern``, Llama-4
  chunked attention (``attention_chunk_size``, every 4th layer global), Mistral-style
  ``sliding_window`` on every layer (Qwen: only with ``use_sliding_window``).
- Quantization: ``solver.inputs.quant_config``.
Fields that change the architecture in ways not modelled here are refused with a one-line
error naming the field (``UNSUPPORTED``), never read as something else.
"""

from __future__ import annotations

from pathlib import Path

from solver.errors import InputError
from solver.inputs.fields import load_json
from solver.inputs.model import LayerKind, ModelSpec
from solver.inputs.quant_config import parse_quant

# Architectures whose MLP is a plain up/down pair (no gate). Everything else we know of
# (llama, mistral, mixtral, qwen2, gemma...) uses a gated MLP with three matrices.
_NON_GATED_TYPES = {"gpt2", "opt", "gpt_neox", "gptj", "bloom", "falcon", "phi", "starcoder2"}
# Architectures with a bias on the q/k/v projections (Qwen2 modelling code hard-codes it).
_QKV_BIAS_TYPES = {"qwen2", "qwen2_moe"}
_QK_NORM_TYPES = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2"}
_FOUR_NORM_TYPES = {"gemma2", "gemma3", "gemma3_text"}  # pre/post attention and pre/post MLP
_WINDOW_KINDS = {"full_attention": False, "sliding_attention": True, "chunked_attention": True}

# Fields whose presence (with a non-empty value) means an architecture this loader does not
# model; the reason is shown to the user.
UNSUPPORTED = {
    "cross_attention_layers": "cross-attention layers (mllama vision) are not modelled",
    "hybrid_override_pattern": "hybrid Mamba/attention layers are not modelled",
    "full_attention_interval": "linear-attention (Gated DeltaNet) layers are not modelled",
    "linear_num_value_heads": "linear-attention layers are not modelled",
    "attn_layer_period": "hybrid Mamba/attention layers are not modelled",
    "mamba_d_state": "Mamba layers are not modelled",
    "ssm_state_size": "state-space layers are not modelled",
    "index_topk": "sparse-attention indexer (DeepSeek-V3.2 DSA) is not modelled",
    "o_lora_rank": "low-rank output projection (DeepSeek-V4) is not modelled",
    "hc_mult": "hyper-connections (DeepSeek-V4) are not modelled",
    "global_head_dim": "a separate head size for global layers (gemma-4) is not modelled",
    "attention_k_eq_v": "shared K/V projections (gemma-4) are not modelled",
    "enable_moe_block": "parallel dense + MoE blocks (gemma-4) are not modelled",
    "num_kv_shared_layers": "KV shared across layers (gemma-3n/4) is not modelled",
    "altup_num_inputs": "AltUp (gemma-3n) is not modelled",
    "hidden_size_per_layer_input": "per-layer input embeddings (gemma-3n/4) are not modelled",
    "use_double_wide_mlp": "double-wide MLP layers are not modelled",
    "block_configs": "per-layer block configs (Nemotron NAS: skipped attention, varying MLP widths) are not modelled",
    "linear_attn_config": "linear-attention layers (Kimi Linear) are not modelled",
    "routed_expert_hidden_size": "latent MoE (routed experts at a reduced hidden size) is not modelled",
}


def load_config_file(path: Path, name: str) -> ModelSpec:
    """``config.json`` plus, when present beside it, ``hf_quant_config.json`` (ModelOpt)."""
    cfg = load_json(path)
    quant_file = path.parent / "hf_quant_config.json"
    extra = (load_json(quant_file), str(quant_file)) if quant_file.is_file() else None
    return parse_hf_config(cfg, str(path), name=name, hf_quant=extra)


def _int(cfg: dict, where: str, *keys: str, default: int | None = None, minimum: int = 1) -> int:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            v = cfg[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise InputError(where, k, f"must be an integer >= {minimum}, got {v!r}")
            return v
    if default is None:
        raise InputError(where, keys[0], "required field is missing")
    return default


def _int_list(cfg: dict, where: str, key: str) -> list[int]:
    v = cfg.get(key) or []
    if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise InputError(where, key, f"must be a list of layer indices, got {v!r}")
    return v


def _check_supported(cfg: dict, where: str) -> None:
    for key, why in UNSUPPORTED.items():
        v = cfg.get(key)
        if v not in (None, False, 0, [], {}, ""):
            raise InputError(where, key, f"{why}; this model cannot be planned")


def parse_hf_config(cfg: object, where: str, name: str = "model",
                    hf_quant: tuple | None = None) -> ModelSpec:
    """Read the fields we need from an HF config; other keys are ignored (HF configs carry
    many unrelated ones), but the ones we read are checked."""
    if not isinstance(cfg, dict):
        raise InputError(where, "", "config must be a JSON object")
    outer = cfg
    if "text_config" in cfg and "num_hidden_layers" not in cfg:
        cfg = cfg["text_config"]  # multimodal wrappers keep the LM config nested
        if not isinstance(cfg, dict):
            raise InputError(where, "text_config", f"must be a JSON object, got {type(cfg).__name__}")
    _check_supported(cfg, where)
    model_type = str(cfg.get("model_type", outer.get("model_type", ""))).lower()
    h = _int(cfg, where, "hidden_size", "n_embd", "d_model")
    a = _int(cfg, where, "num_attention_heads", "n_head")
    a_kv = _int(cfg, where, "num_key_value_heads", default=a)
    if a % a_kv:
        raise InputError(where, "num_key_value_heads", f"{a_kv} does not divide num_attention_heads {a}")
    head_dim = _int(cfg, where, "head_dim", default=h // a)
    num_layers = _int(cfg, where, "num_hidden_layers", "n_layer")
    experts = _int(cfg, where, "num_local_experts", "num_experts", "n_routed_experts", default=1)
    top_k = (_int(cfg, where, "num_experts_per_tok", "experts_per_token", "num_experts_per_token", "top_k_experts",
                  default=1) if experts > 1 else 1)
    if top_k > experts:
        raise InputError(where, "num_experts_per_tok", f"{top_k} exceeds the {experts} experts")
    if experts == 1 and cfg.get("moe_intermediate_size"):
        raise InputError(where, "moe_intermediate_size", "given but no expert count "
                                                         "(num_local_experts / num_experts / n_routed_experts)")
    dense_ffn = _int(cfg, where, "intermediate_size_mlp", "intermediate_size", "n_inner", "ffn_dim", default=4 * h)
    expert_ffn = _int(cfg, where, "moe_intermediate_size", default=_int(cfg, where, "intermediate_size",
                                                                          "n_inner", "ffn_dim", default=4 * h))
    gated = cfg.get("gated_mlp")
    if gated is None:
        gated = model_type not in _NON_GATED_TYPES
    qkv_bias = cfg.get("attention_bias")
    if qkv_bias is None:
        qkv_bias = model_type in _QKV_BIAS_TYPES
    mla = _mla(cfg, where)
    spec = ModelSpec(
        name=str(cfg.get("name", outer.get("name", name))),
        num_layers=num_layers,
        hidden_size=h,
        num_heads=a,
        num_kv_heads=a_kv if not mla else a,
        head_dim=head_dim if not mla else mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"],
        ffn_size=expert_ffn if experts > 1 else dense_ffn,
        vocab_size=_int(cfg, where, "vocab_size"),
        gated_mlp=bool(gated),
        tied_embeddings=bool(outer.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))),
        qkv_bias=bool(qkv_bias),
        num_experts=experts,
        experts_per_token=top_k,
        source=str(outer.get("_source", where)),
        dense_ffn_size=dense_ffn if experts > 1 else 0,
        shared_expert_ffn_size=_shared_ffn(cfg, where, model_type, experts, expert_ffn),
        shared_expert_gate=model_type == "qwen2_moe" and bool(cfg.get("shared_expert_intermediate_size")),
        o_bias=bool(qkv_bias) and model_type == "gpt_oss",
        qk_norm=model_type in _QK_NORM_TYPES,
        norms_per_layer=4 if model_type in _FOUR_NORM_TYPES else 2,
        layer_kinds=_layer_kinds(cfg, where, model_type, num_layers, experts),
        model_type=model_type,
        **mla,
    )
    fmt = parse_quant(outer, cfg, where, spec, hf_quant)
    if fmt is not None:
        from dataclasses import replace
        spec = replace(spec, weight_format=fmt)
    return spec


def _mla(cfg: dict, where: str) -> dict:
    if not cfg.get("kv_lora_rank"):
        return {}
    return {"kv_lora_rank": _int(cfg, where, "kv_lora_rank"),
            "q_lora_rank": _int(cfg, where, "q_lora_rank", default=0, minimum=0),
            "qk_nope_head_dim": _int(cfg, where, "qk_nope_head_dim"),
            "qk_rope_head_dim": _int(cfg, where, "qk_rope_head_dim"),
            "v_head_dim": _int(cfg, where, "v_head_dim")}


def _shared_ffn(cfg: dict, where: str, model_type: str, experts: int, expert_ffn: int) -> int:
    if experts == 1:
        return 0
    if cfg.get("shared_expert_intermediate_size"):
        return _int(cfg, where, "shared_expert_intermediate_size")
    if cfg.get("n_shared_experts") or cfg.get("num_shared_experts"):
        return _int(cfg, where, "n_shared_experts", "num_shared_experts") * expert_ffn
    if model_type.startswith("llama4"):
        return _int(cfg, where, "intermediate_size")  # Llama4MoE: one shared expert of the expert width
    return 0


def _moe_layers(cfg: dict, where: str, model_type: str, n: int, experts: int) -> list[bool]:
    if experts == 1:
        return [False] * n
    if isinstance(cfg.get("moe_layer_freq"), list):  # one 0/1 flag per layer (MiMo-V2, MiniMax-M3)
        flags = cfg["moe_layer_freq"]
        if len(flags) != n or any(f not in (0, 1) for f in flags):
            raise InputError(where, "moe_layer_freq", f"as a list must hold one 0/1 per layer ({n}), got {flags!r}")
        return [bool(f) for f in flags]
    if "first_k_dense_replace" in cfg or "moe_layer_freq" in cfg:  # DeepSeek-V2/V3, Kimi
        k = _int(cfg, where, "first_k_dense_replace", default=0, minimum=0)
        freq = _int(cfg, where, "moe_layer_freq", default=1)
        return [i >= k and i % freq == 0 for i in range(n)]
    if "decoder_sparse_step" in cfg or "mlp_only_layers" in cfg:  # Qwen2/3-MoE
        step = _int(cfg, where, "decoder_sparse_step", default=1)
        dense = set(_int_list(cfg, where, "mlp_only_layers"))
        return [i not in dense and (i + 1) % step == 0 for i in range(n)]
    if "interleave_moe_layer_step" in cfg:  # Llama-4
        step = _int(cfg, where, "interleave_moe_layer_step")
        return [(i + 1) % step == 0 for i in range(n)]
    return [True] * n


def _windows(cfg: dict, where: str, model_type: str, n: int) -> list[int]:
    win = cfg.get("sliding_window")
    if "layer_types" in cfg and cfg["layer_types"] is not None:
        types = cfg["layer_types"]
        if not isinstance(types, list) or len(types) != n:
            raise InputError(where, "layer_types", f"must list one type per layer ({n}), got {types!r}")
        bad = sorted({t for t in types if t not in _WINDOW_KINDS})
        if bad:
            raise InputError(where, "layer_types", f"layer type {bad[0]!r} is not modelled "
                                                   f"(known: {', '.join(_WINDOW_KINDS)})")
        size = {"sliding_attention": win, "chunked_attention": cfg.get("attention_chunk_size")}
        for t in set(types) - {"full_attention"}:
            if not isinstance(size[t], int) or size[t] < 1:
                raise InputError(where, "sliding_window" if t == "sliding_attention" else "attention_chunk_size",
                                 f"layer_types has {t} layers but no window size")
        return [0 if t == "full_attention" else size[t] for t in types]
    if model_type.startswith("llama4") and cfg.get("attention_chunk_size"):
        # HF Llama4TextConfig: no_rope_layers[i] = (i+1) % 4 != 0; rope layers use chunked attention
        chunk = _int(cfg, where, "attention_chunk_size")
        no_rope = cfg.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(n)]
        return [chunk if no_rope[i] else 0 for i in range(n)]
    if win is None or (model_type.startswith("qwen") and not cfg.get("use_sliding_window")):
        return [0] * n
    win = _int(cfg, where, "sliding_window")
    if model_type == "gemma2":  # HF Gemma2: even layers slide, odd layers global
        return [win if i % 2 == 0 else 0 for i in range(n)]
    if model_type.startswith("gemma3"):
        pattern = _int(cfg, where, "sliding_window_pattern", default=6)  # every 6th layer global
        return [0 if (i + 1) % pattern == 0 else win for i in range(n)]
    if model_type.startswith("gemma"):
        raise InputError(where, "sliding_window", f"window layout of model_type {model_type!r} is not known; "
                                                  "give layer_types")
    return [win] * n  # Mistral-style: every layer slides


def _layer_kinds(cfg: dict, where: str, model_type: str, n: int, experts: int) -> tuple:
    kinds = tuple(LayerKind(moe=m, window=w) for m, w in
                  zip(_moe_layers(cfg, where, model_type, n, experts), _windows(cfg, where, model_type, n)))
    return () if kinds == (LayerKind(moe=experts > 1),) * n else kinds
