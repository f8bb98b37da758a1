"""Model architecture: a preset name or a Hugging Face ``config.json``.

Presets are shipped as HF-style config files in ``solver/presets/`` so one parser
(``solver.inputs.hf_config``) serves both. Parameter counts follow the layer anatomy of
design.md section 5, per layer kind: a layer's MLP is dense or MoE (routed experts, an
optional shared expert, a router), its attention is GQA or MLA (DeepSeek's compressed
latent KV) over the whole context or a window of it.

Every parameter is listed once, in ``layer_tensors``, with its tensor group (which
quantization applies), how TP shards it and whether a token multiplies through it; the
memory and compute models both sum that one list.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from solver.errors import InputError
from solver.inputs.fields import suggest
from solver.inputs.quant import WeightFormat

# How tensor parallelism holds a tensor on each of t ranks (memory.py):
SPLIT = "split"            # 1/t of it (column/row-parallel linears, experts, q/o heads)
KV_HEADS = "kv_heads"      # per KV head: a_kv/t heads, at least one (replicated past a_kv)
REPLICATED = "replicated"  # whole on every rank (norms, router, MLA's down-projections)


@dataclass(frozen=True)
class LayerKind:
    """What one decoder layer is: MoE or dense MLP; attention over the whole context
    (``window`` 0) or over the last ``window`` tokens (sliding or chunked local attention)."""
    moe: bool = False
    window: int = 0


@dataclass(frozen=True)
class Tensor:
    """Parameters of one layer module that share a group, a sharding and an activity:
    ``active`` is the fraction a token multiplies through (top-k/E for routed experts;
    0 for norms and biases, which are elementwise)."""
    params: int
    group: str
    shard: str
    active: float = 1.0
    module: str = ""  # HF module path inside the layer (quantization exclusions match it)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int  # per routed expert for MoE, else the dense MLP width
    vocab_size: int
    gated_mlp: bool = True
    tied_embeddings: bool = False
    qkv_bias: bool = False
    num_experts: int = 1  # routed experts; 1 = dense
    experts_per_token: int = 1
    source: str = ""
    # --- per-layer kinds and the fields modern architectures add (defaults: a dense model)
    dense_ffn_size: int = 0            # MLP width of the dense layers of a MoE model (0: ffn_size)
    shared_expert_ffn_size: int = 0    # total width of the always-active shared expert(s)
    shared_expert_gate: bool = False   # Qwen2-MoE: a sigmoid gate h->1 on the shared expert
    o_bias: bool = False               # bias on the attention output projection (gpt-oss)
    qk_norm: bool = False              # per-head RMSNorm on q and k (Qwen3, gemma-3)
    norms_per_layer: int = 2           # RMSNorm vectors of width h per layer (gemma-2/3: 4)
    kv_lora_rank: int = 0              # MLA (0: GQA)
    q_lora_rank: int = 0               # MLA query compression (0: a full q projection)
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    layer_kinds: tuple = ()            # LayerKind per layer; () = every layer alike
    weight_format: WeightFormat | None = None  # the checkpoint's scheme (None: as --dtype says)
    model_type: str = ""               # HF config's model_type (vLLM picks its model runner by architecture)

    # ---------------------------------------------------------------- layer kinds
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def layers(self) -> tuple:
        """One LayerKind per decoder layer."""
        return self.layer_kinds or (LayerKind(moe=self.is_moe),) * self.num_layers

    @property
    def uniform(self) -> bool:
        return not self.layer_kinds or len(set(self.layer_kinds)) == 1

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def stage_layers(self, n_layers: int, first: bool, last: bool) -> tuple:
        """The kinds of a stage's ``n_layers`` consecutive layers: the first ones on a first
        stage, the last ones on a last stage; a middle stage, whose position the caller
        does not say, is charged the heaviest window (most MoE, then most full-attention
        layers), so a plan never undercounts it."""
        return _stage_layers(self, n_layers, first, last)

    # ---------------------------------------------------------------- parameters
    def attn_tensors(self) -> list[Tensor]:
        h, a = self.hidden_size, self.num_heads
        if self.is_mla:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            out = []
            if self.q_lora_rank:  # q_a (replicated in vLLM), its norm, q_b (column-parallel)
                out += [Tensor(h * self.q_lora_rank, "attn", REPLICATED, module="self_attn.q_a_proj"),
                        Tensor(self.q_lora_rank, "norm", REPLICATED, 0.0, "self_attn.q_a_layernorm"),
                        Tensor(self.q_lora_rank * a * qk, "attn", SPLIT, module="self_attn.q_b_proj")]
            else:
                out.append(Tensor(h * a * qk, "attn", SPLIT, module="self_attn.q_proj"))
            return out + [
                Tensor(h * (self.kv_lora_rank + self.qk_rope_head_dim), "attn", REPLICATED,
                       module="self_attn.kv_a_proj_with_mqa"),
                Tensor(self.kv_lora_rank, "norm", REPLICATED, 0.0, "self_attn.kv_a_layernorm"),
                Tensor(self.kv_lora_rank * a * (self.qk_nope_head_dim + self.v_head_dim), "attn", SPLIT,
                       module="self_attn.kv_b_proj"),
                Tensor(a * self.v_head_dim * h, "attn", SPLIT, module="self_attn.o_proj"),
            ]
        out = [Tensor(h * self.q_dim, "attn", SPLIT, module="self_attn.q_proj"),
               Tensor(h * self.kv_dim, "attn", KV_HEADS, module="self_attn.k_proj"),
               Tensor(h * self.kv_dim, "attn", KV_HEADS, module="self_attn.v_proj"),
               Tensor(self.q_dim * h, "attn", SPLIT, module="self_attn.o_proj")]
        if self.qkv_bias:
            out += [Tensor(self.q_dim, "bias", SPLIT, 0.0), Tensor(2 * self.kv_dim, "bias", KV_HEADS, 0.0)]
        if self.o_bias:
            out.append(Tensor(h, "bias", REPLICATED, 0.0))
        if self.qk_norm:
            out.append(Tensor(2 * self.head_dim, "norm", REPLICATED, 0.0))
        return out

    def mlp_params_per_expert(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.ffn_size

    def _projections(self, width: int, group: str, prefix: str) -> list[Tensor]:
        names = ("gate_proj", "up_proj", "down_proj") if self.gated_mlp else ("up_proj", "down_proj")
        return [Tensor(self.hidden_size * width, group, SPLIT, module=f"{prefix}.{n}") for n in names]

    def mlp_tensors(self, kind: LayerKind) -> list[Tensor]:
        h = self.hidden_size
        if not kind.moe:
            return self._projections(self.dense_ffn_size or self.ffn_size, "mlp", "mlp")
        out = [Tensor(self.num_experts * self.mlp_params_per_expert(), "experts", SPLIT,
                      self.experts_per_token / self.num_experts, "mlp.experts"),
               Tensor(h * self.num_experts, "router", REPLICATED, module="mlp.gate")]
        if self.shared_expert_ffn_size:
            out += self._projections(self.shared_expert_ffn_size, "shared_experts", "mlp.shared_experts")
        if self.shared_expert_gate:
            out.append(Tensor(h, "router", REPLICATED, module="mlp.shared_expert_gate"))
        return out

    def layer_tensors(self, kind: LayerKind | None = None) -> list[Tensor]:
        """Every parameter of one decoder layer of ``kind`` (default: the last layer's)."""
        kind = self.layers[-1] if kind is None else kind
        norms = Tensor(self.norms_per_layer * self.hidden_size, "norm", REPLICATED, 0.0)
        return self.attn_tensors() + self.mlp_tensors(kind) + [norms]

    def attn_params(self) -> int:
        return sum(t.params for t in self.attn_tensors())

    def mlp_params(self, kind: LayerKind | None = None) -> int:
        """All experts are resident (design.md section 8); plus the router for MoE."""
        return sum(t.params for t in self.mlp_tensors(self.layers[-1] if kind is None else kind))

    def layer_params(self, kind: LayerKind | None = None) -> int:
        """One decoder layer, norms included."""
        return sum(t.params for t in self.layer_tensors(kind))

    def active_layer_params(self, kind: LayerKind | None = None) -> int:
        """Parameters a token actually uses (top-k experts for MoE), norms and biases included."""
        return round(sum(t.params * (t.active if t.group == "experts" else 1.0)
                         for t in self.layer_tensors(kind)))

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def total_params(self) -> int:
        emb = self.embedding_params() * (1 if self.tied_embeddings else 2)
        return sum(self.layer_params(k) for k in self.layers) + emb + self.hidden_size  # + final norm

    # ---------------------------------------------------------------- KV cache
    def kv_elems_per_token(self) -> int:
        """KV-cache elements one token stores in one layer, whole model (unsharded):
        GQA 2*a_kv*d (K and V); MLA the compressed latent plus the shared rope key,
        kv_lora_rank + qk_rope_head_dim (DeepSeek-V2 paper, section 2.1.2)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_dim


@functools.lru_cache(maxsize=4096)
def _stage_layers(model: ModelSpec, n: int, first: bool, last: bool) -> tuple:
    kinds, total = model.layers, model.num_layers
    n = max(0, min(n, total))
    if first or model.uniform:
        return kinds[:n]
    if last:
        return kinds[total - n:]
    windows = [kinds[s:s + n] for s in range(total - n + 1)]
    return max(windows, key=lambda w: (sum(k.moe for k in w), sum(k.window == 0 for k in w)))


def preset_names() -> list[str]:
    files = resources.files("solver.presets")
    return sorted(f.name[:-5] for f in files.iterdir() if f.name.endswith(".json"))


def load_model(name_or_path: str) -> ModelSpec:
    """A preset name (``llama3-70b``) or a path to an HF ``config.json`` (or its folder; a
    ``hf_quant_config.json`` beside it is read too)."""
    from solver.inputs.hf_config import load_config_file, parse_hf_config
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists() or "/" in name_or_path:
        if p.is_dir():
            p = p / "config.json"
        return load_config_file(p, name=p.parent.name or p.stem)
    names = preset_names()
    if name_or_path not in names:
        raise InputError("--model", name_or_path,
                         f"unknown preset{suggest(name_or_path, names)}; presets: {', '.join(names)}; "
                         "or give a path to a config.json")
    path = resources.files("solver.presets") / f"{name_or_path}.json"
    import json
    return parse_hf_config(json.loads(path.read_text()), f"preset {name_or_path}", name=name_or_path)


def parse_hf_config(cfg: object, where: str, name: str = "model") -> ModelSpec:
    """``solver.inputs.hf_config.parse_hf_config`` (kept here for existing callers)."""
    from solver.inputs.hf_config import parse_hf_config as parse
    return parse(cfg, where, name=name)
