"""Decoder stages at real shapes with random weights, as one rank of a TP group sees them.

TP is emulated on one GPU: the rank holds a/t query heads, max(1, a_kv/t) KV heads and
f/t of the MLP (the tensors of a Megatron/vLLM TP shard); hidden h is unsharded. No
communication runs (the all-reduce after o_proj and down_proj would reuse the output
buffer in place, so it adds no activation memory).

Two runtimes, recorded in every raw row because their peaks differ:
- ``native``: a vLLM-style layer written here -- fused QKV and gate_up matmuls, RoPE,
  ``F.scaled_dot_product_attention`` (causal), ``F.rms_norm``, K/V copied into a cache
  with one spare slot per sequence so a decode step writes in place.
- ``transformers``: ``LlamaModel`` built from a ``LlamaConfig`` with the sharded sizes
  (no download), SDPA attention, ``use_cache=True``.

torch (and transformers) are imported inside functions: ``calibrate`` imports without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Shape:
    """One model's layer anatomy (unsharded)."""
    name: str
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    gated_mlp: bool = True
    vocab: int = 32000  # only the HF body's embedding uses it; no LM head is built


@dataclass
class Stage:
    """A built stage: ``prefill(batch, seq) -> (out, kv)``, ``decode(kv, batch, pos) -> out``."""
    runtime: str
    weights_bytes: int  # decoder layers only (embeddings excluded)
    make_input: Callable[[int, int], Any]
    prefill: Callable[[Any], tuple[Any, list]]
    decode: Callable[[list, int, int], Any]
    keep: list = field(default_factory=list, repr=False)  # holds the weights alive


def local_heads(shape: Shape, tp: int) -> tuple[int, int]:
    if shape.heads % tp:
        raise ValueError(f"{shape.name}: {shape.heads} heads do not split over tp={tp}")
    return shape.heads // tp, max(1, shape.kv_heads // tp)


def _rope(x, cos, sin):
    """Rotate-half RoPE (Llama); x [b, heads, s, d], cos/sin [s, d]."""
    import torch
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


def _rope_tables(seq: int, d: int, device, dtype):
    import torch
    inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
    ang = torch.outer(torch.arange(seq, device=device, dtype=torch.float32), inv)
    ang = torch.cat((ang, ang), dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def build_native(shape: Shape, tp: int, layers: int, dtype, device) -> Stage:
    import torch
    import torch.nn.functional as F
    aq, akv = local_heads(shape, tp)
    h, d, f = shape.hidden, shape.head_dim, shape.ffn // tp
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*size):  # small values keep fp16 finite through the layers
        return (torch.randn(*size, generator=gen) * 0.02).to(device=device, dtype=dtype)

    ws = []
    for _ in range(layers):
        w = {"ln1": torch.ones(h, device=device, dtype=dtype), "ln2": torch.ones(h, device=device, dtype=dtype),
             "qkv": rand(h, (aq + 2 * akv) * d), "o": rand(aq * d, h),
             "up": rand(h, (2 if shape.gated_mlp else 1) * f), "down": rand(f, h)}
        ws.append(w)
    nbytes = sum(t.numel() * t.element_size() for w in ws for t in w.values())

    def layer(x, w, cache, pos, cos, sin):
        b, s, _ = x.shape
        xn = F.rms_norm(x, (h,), w["ln1"])
        qkv = xn @ w["qkv"]
        del xn
        q, k, v = qkv.split([aq * d, akv * d, akv * d], dim=-1)
        q = _rope(q.view(b, s, aq, d).transpose(1, 2), cos, sin)
        k = _rope(k.view(b, s, akv, d).transpose(1, 2), cos, sin)
        cache[0][:, :, pos:pos + s] = k  # write into the cache, as vLLM's reshape_and_cache does
        cache[1][:, :, pos:pos + s] = v.view(b, s, akv, d).transpose(1, 2)
        del qkv, k, v
        kk, vv = cache[0][:, :, :pos + s], cache[1][:, :, :pos + s]
        a = F.scaled_dot_product_attention(q, kk, vv, is_causal=(pos == 0), enable_gqa=aq != akv)
        del q
        o = a.transpose(1, 2).reshape(b, s, aq * d) @ w["o"]
        del a
        x = x + o  # the TP all-reduce of o would happen here, in place
        del o
        xn = F.rms_norm(x, (h,), w["ln2"])
        if shape.gated_mlp:
            gu = xn @ w["up"]
            del xn
            g, u = gu.chunk(2, dim=-1)
            m = F.silu(g) * u
            del gu, g, u
        else:
            m = F.gelu(xn @ w["up"])
            del xn
        y = m @ w["down"]
        del m
        return x + y

    def make_input(batch, seq):
        return torch.randn(batch, seq, h, generator=gen).to(device=device, dtype=dtype)

    def prefill(x):
        b, s, _ = x.shape
        cos, sin = _rope_tables(s, d, x.device, x.dtype)
        caches = [(torch.empty(b, akv, s + 1, d, device=x.device, dtype=x.dtype),
                   torch.empty(b, akv, s + 1, d, device=x.device, dtype=x.dtype)) for _ in ws]
        for w, c in zip(ws, caches):
            x = layer(x, w, c, 0, cos, sin)
        return x, [t for c in caches for t in c]

    def decode(kv, batch, pos):
        x = torch.randn(batch, 1, h, generator=gen).to(device=device, dtype=dtype)
        cos, sin = _rope_tables(pos + 1, d, x.device, x.dtype)
        for i, w in enumerate(ws):
            x = layer(x, w, (kv[2 * i], kv[2 * i + 1]), pos, cos[pos:], sin[pos:])
        return x

    return Stage(runtime=f"native-sdpa-torch{torch.__version__.split('+')[0]}", weights_bytes=nbytes,
                 make_input=make_input, prefill=prefill, decode=decode, keep=ws)


def build_transformers(shape: Shape, tp: int, layers: int, dtype, device) -> Stage:
    """HF ``LlamaModel`` (body: embeddings, layers, final norm) at the shard's sizes."""
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaModel
    aq, akv = local_heads(shape, tp)
    cfg = LlamaConfig(hidden_size=shape.hidden, intermediate_size=shape.ffn // tp, num_hidden_layers=layers,
                      num_attention_heads=aq, num_key_value_heads=akv, head_dim=shape.head_dim,
                      vocab_size=shape.vocab, max_position_embeddings=32768)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaModel(cfg).to(dtype).eval()
    nbytes = sum(p.numel() * p.element_size() for p in model.layers.parameters())

    def make_input(batch, seq):
        return torch.randint(0, shape.vocab, (batch, seq), device=device)

    def prefill(ids):
        out = model(ids, use_cache=True)
        cache = out.past_key_values
        kv = [t for layer in cache.layers for t in (layer.keys, layer.values)] if hasattr(cache, "layers") else []
        return out.last_hidden_state, kv + [cache]

    def decode(kv, batch, pos):
        ids = torch.randint(0, shape.vocab, (batch, 1), device=device)
        return model(ids, past_key_values=kv[-1], use_cache=True).last_hidden_state

    return Stage(runtime=f"transformers-{transformers.__version__}-sdpa", weights_bytes=nbytes,
                 make_input=make_input, prefill=prefill, decode=decode, keep=[model])


BUILDERS = {"native": build_native, "transformers": build_transformers}


def kv_tensor_bytes(kv: list) -> int:
    """Bytes of the K/V tensors in a prefill result (non-tensors such as the HF cache
    object are skipped; storage counted once)."""
    seen, total = set(), 0
    for t in kv:
        if hasattr(t, "untyped_storage"):
            st = t.untyped_storage()
            if st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                total += st.nbytes()
    return total
