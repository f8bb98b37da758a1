"""Model architecture: a preset name or a Hugging Face ``config.json``.

Presets are shipped as HF-style config files in ``solver/presets/`` so one parser serves
both. Parameter counts follow the layer anatomy of design.md section 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from solver.errors import InputError
from solver.inputs.fields import load_json, suggest

# Architectures whose MLP is a plain up/down pair (no gate). Everything else we know of
# (llama, mistral, mixtral, qwen2, gemma...) uses a gated MLP with three matrices.
_NON_GATED_TYPES = {"gpt2", "opt", "gpt_neox", "gptj", "bloom", "falcon", "phi", "starcoder2"}
# Architectures with a bias on the q/k/v projections (Qwen2 modelling code hard-codes it).
_QKV_BIAS_TYPES = {"qwen2", "qwen2_moe"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int  # per expert for MoE
    vocab_size: int
    gated_mlp: bool = True
    tied_embeddings: bool = False
    qkv_bias: bool = False
    num_experts: int = 1  # 1 = dense
    experts_per_token: int = 1
    source: str = ""

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def attn_params(self) -> int:
        """q and o: h x (a*d) each; k and v: h x (a_kv*d) each; optional q/k/v bias."""
        h = self.hidden_size
        p = 2 * h * self.q_dim + 2 * h * self.kv_dim
        if self.qkv_bias:
            p += self.q_dim + 2 * self.kv_dim
        return p

    def mlp_params_per_expert(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.ffn_size

    def mlp_params(self) -> int:
        """All experts are resident (design.md section 8); plus the router for MoE."""
        router = self.hidden_size * self.num_experts if self.is_moe else 0
        return self.num_experts * self.mlp_params_per_expert() + router

    def layer_params(self) -> int:
        """One decoder layer, including its two RMSNorm weight vectors."""
        return self.attn_params() + self.mlp_params() + 2 * self.hidden_size

    def active_layer_params(self) -> int:
        """Parameters a token actually multiplies through (top-k experts for MoE)."""
        router = self.hidden_size * self.num_experts if self.is_moe else 0
        return (self.attn_params() + self.experts_per_token * self.mlp_params_per_expert()
                + router + 2 * self.hidden_size)

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def total_params(self) -> int:
        emb = self.embedding_params() * (1 if self.tied_embeddings else 2)
        return self.num_layers * self.layer_params() + emb + self.hidden_size  # + final norm


def preset_names() -> list[str]:
    files = resources.files("solver.presets")
    return sorted(f.name[:-5] for f in files.iterdir() if f.name.endswith(".json"))


def load_model(name_or_path: str) -> ModelSpec:
    """A preset name (``llama3-70b``) or a path to an HF ``config.json``."""
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists() or "/" in name_or_path:
        if p.is_dir():
            p = p / "config.json"
        return parse_hf_config(load_json(p), str(p), name=p.parent.name or p.stem)
    names = preset_names()
    if name_or_path not in names:
        raise InputError("--model", name_or_path,
                         f"unknown preset{suggest(name_or_path, names)}; presets: {', '.join(names)}; "
                         "or give a path to a config.json")
    path = resources.files("solver.presets") / f"{name_or_path}.json"
    import json
    return parse_hf_config(json.loads(path.read_text()), f"preset {name_or_path}", name=name_or_path)


def _int(cfg: dict, where: str, *keys: str, default: int | None = None) -> int:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            v = cfg[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(where, k, f"must be an integer >= 1, got {v!r}")
            return v
    if default is None:
        raise InputError(where, keys[0], "required field is missing")
    return default


def parse_hf_config(cfg: object, where: str, name: str = "model") -> ModelSpec:
    """Read the fields we need from an HF config; other keys are ignored (HF configs carry
    many unrelated ones), but the ones we read are checked."""
    if not isinstance(cfg, dict):
        raise InputError(where, "", "config must be a JSON object")
    if "text_config" in cfg and "num_hidden_layers" not in cfg:
        cfg = cfg["text_config"]  # multimodal wrappers keep the LM config nested
        if not isinstance(cfg, dict):
            raise InputError(where, "text_config", f"must be a JSON object, got {type(cfg).__name__}")
    model_type = str(cfg.get("model_type", "")).lower()
    h = _int(cfg, where, "hidden_size", "n_embd", "d_model")
    a = _int(cfg, where, "num_attention_heads", "n_head")
    a_kv = _int(cfg, where, "num_key_value_heads", default=a)
    if a % a_kv:
        raise InputError(where, "num_key_value_heads", f"{a_kv} does not divide num_attention_heads {a}")
    head_dim = _int(cfg, where, "head_dim", default=h // a)
    experts = _int(cfg, where, "num_local_experts", "num_experts", default=1)
    top_k = _int(cfg, where, "num_experts_per_tok", default=1) if experts > 1 else 1
    if top_k > experts:
        raise InputError(where, "num_experts_per_tok", f"{top_k} exceeds the {experts} experts")
    gated = cfg.get("gated_mlp")
    if gated is None:
        gated = model_type not in _NON_GATED_TYPES
    qkv_bias = cfg.get("attention_bias")
    if qkv_bias is None:
        qkv_bias = model_type in _QKV_BIAS_TYPES
    return ModelSpec(
        name=str(cfg.get("name", name)),
        num_layers=_int(cfg, where, "num_hidden_layers", "n_layer"),
        hidden_size=h,
        num_heads=a,
        num_kv_heads=a_kv,
        head_dim=head_dim,
        ffn_size=_int(cfg, where, "intermediate_size", "n_inner", "ffn_dim", default=4 * h),
        vocab_size=_int(cfg, where, "vocab_size"),
        gated_mlp=bool(gated),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=bool(qkv_bias),
        num_experts=experts,
        experts_per_token=top_k,
        source=str(cfg.get("_source", where)),
    )
