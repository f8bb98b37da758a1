"""The points ``scripts/profile_ops.py`` measures, and its raw CSV columns.

Shapes are the TP shards of the given presets (``solver.cost.ops.compose.layer_gemms``), so
the measured tables hold every zoo GEMM exactly: m at powers of two, n x k the product of the
shards' n and k values (a full grid, as the profile's tables need)."""

from __future__ import annotations

from solver.cost.memory import kv_heads_per_gpu, padded_vocab
from solver.cost.ops.compose import covered, layer_gemms
from solver.inputs.model import load_model

COLUMNS = ("op", "dtype", "m", "n", "k", "batch", "seq", "heads", "kv_heads", "head_dim", "size_bytes", "kernels",
           "time_us", "source")
PREFILL_BATCH = (1, 2, 4, 8, 16, 32)
PREFILL_SEQ = tuple(2**i for i in range(4, 14))          # 16 .. 8192
DECODE_BATCH = tuple(2**i for i in range(0, 9))           # 1 .. 256
DECODE_CONTEXT = tuple(2**i for i in range(4, 16))        # 16 .. 32768
ELEMENTWISE_BYTES = tuple(4**i for i in range(6, 16))     # 4 KiB .. 1 GiB
LAUNCH_KERNELS = 100


def shard_shapes(models: list[str], tps: list[int]) -> tuple[list, list, list]:
    """(sorted n values, sorted k values, sorted (heads, kv_heads, head_dim))."""
    ns, ks, attn = set(), set(), set()
    for name in models:
        model = load_model(name)
        if not covered(model):
            continue
        for tp in tps:
            if model.num_heads % tp:
                continue
            for kind in set(model.layers):
                for _, _, n, k, _ in layer_gemms(model, tp, 1, kind):
                    ns.add(int(round(n)))
                    ks.add(int(round(k)))
            ns.add(padded_vocab(model) // tp)
            attn.add((model.num_heads // tp, kv_heads_per_gpu(model, tp), model.head_dim))
    return sorted(ns), sorted(ks), sorted(attn)


def sweep_points(models: list[str], tps: list[int], max_m: int) -> list[dict]:
    ns, ks, attn = shard_shapes(models, tps)
    ms = [2**i for i in range(0, max_m.bit_length()) if 2**i <= max_m]
    pts = [{"op": "gemm", "m": m, "n": n, "k": k} for m in ms for n in ns for k in ks]
    for h, kv, d in attn:
        pts += [{"op": "prefill_attention", "batch": b, "seq": s, "heads": h, "kv_heads": kv, "head_dim": d}
                for b in PREFILL_BATCH for s in PREFILL_SEQ]
        pts += [{"op": "decode_attention", "batch": b, "seq": c, "heads": h, "kv_heads": kv, "head_dim": d}
                for b in DECODE_BATCH for c in DECODE_CONTEXT]
    pts += [{"op": "elementwise", "size_bytes": s} for s in ELEMENTWISE_BYTES]
    pts += [{"op": op, "kernels": LAUNCH_KERNELS} for op in ("launch_eager", "launch_graph")]
    return pts
