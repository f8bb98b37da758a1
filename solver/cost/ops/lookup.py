"""Time of one op from the profile's op tables, or from the roofline when no table covers it.

Every function returns ``(seconds, source)``; ``source`` names the table (its provenance
and reference) or says ``roofline (fallback)`` -- the v1 model with the profile's
efficiency curves -- so a breakdown shows where each number comes from. A lookup outside a
table's measured range is extrapolated in log space and reported with a
:class:`CalibrationWarning` (``--strict`` refuses).
"""

from __future__ import annotations

import math

from solver.cost.compute import roofline_s
from solver.cost.ops.grid import grid_at
from solver.cost.warn import note
from solver.inputs.model import ModelSpec
from solver.inputs.ops_profile import AttentionTable, Grid, OpTables
from solver.inputs.profile import Profile

FALLBACK = "roofline (fallback)"


def _src(grid: Grid) -> str:
    return f"{grid.source}: {grid.ref}" if grid.ref else grid.source


def _lookup(profile: Profile, grid: Grid, what: str, point: tuple[float, ...]) -> float:
    t_us, inside = grid_at(grid, point)
    if not inside:
        shape = ", ".join(f"{n}={x:g}" for n, x in zip(grid.names, point))
        rng = ", ".join(f"{n} {lo:g}-{hi:g}" for n, (lo, hi) in grid.range().items())
        note(f"{profile.path}: {what} table covers {rng}; asked for {shape} (extrapolated in log space)")
    return t_us * 1e-6


def gemm_s(profile: Profile, tables: OpTables | None, m: float, n: float, k: float, dtype: str,
           act_bytes: int, weight_bytes: float | None = None) -> tuple[float, str]:
    """One (m x k) @ (k x n) GEMM whose matmuls run at ``dtype`` (a ``gpu.peak_tflops`` key:
    ``capability.matmul_dtype``) with ``weight_bytes`` per weight (default: ``act_bytes``, or 1
    for fp8). fp16 reads the bf16 table (same tensor-core rate) when it has none of its own;
    fp8 without an fp8 table is the roofline. A weight-only scheme (weights narrower than the
    16-bit matmul dtype: AWQ/GPTQ/Marlin fp8/fp4 below their native SM) has no table of its own
    -- a 16-bit table would stream 16-bit weights -- so it is the roofline with its own bytes."""
    w_bytes = weight_bytes if weight_bytes is not None else (act_bytes if dtype != "fp8" else 1)
    weight_only = w_bytes < act_bytes and dtype in ("bf16", "fp16")
    grid = None
    if tables is not None and not weight_only:
        grid = tables.gemm.get(dtype) or (tables.gemm.get("bf16") if dtype == "fp16" else None) \
            or (tables.gemm.get("fp16") if dtype == "bf16" else None)
    if grid is not None:
        # a GEMM larger than the table is timed as blocks that fit it: output rows and columns
        # are independent tiles, and a long k is a sequence of accumulating slices -- past the
        # table's largest sizes time is linear in each of m, n and k (compute- or bandwidth-bound)
        blocks = [max(1, math.ceil(x / ax[-1])) for x, ax in zip((m, n, k), grid.axes)]
        t = _lookup(profile, grid, f"{tables.key} gemm {dtype}", (m / blocks[0], n / blocks[1], k / blocks[2]))
        return blocks[0] * blocks[1] * blocks[2] * t, _src(grid)
    read = m * k * act_bytes + k * n * w_bytes + m * n * act_bytes
    return roofline_s(profile, 2.0 * m * n * k, read, dtype), FALLBACK + (" (weight-only scheme)" if weight_only else "")


def _nearest(entries: tuple[AttentionTable, ...], heads: int, kv_heads: int, head_dim: int):
    """The entry of exactly (heads, kv_heads, head_dim), else the nearest in log distance
    with the same head dim (time then scales with the query heads: each head is an
    independent slice of the same kernel)."""
    same = [e for e in entries if e.head_dim == head_dim]
    if not same:
        return None
    return min(same, key=lambda e: (abs(math.log(e.heads / heads)), abs(math.log(e.kv_heads / kv_heads))))


def attention_s(profile: Profile, tables: OpTables | None, phase: str, batch: float, length: float,
                heads: int, kv_heads: int, head_dim: int, dtype: str, act_bytes: int,
                kv_bytes: int) -> tuple[float, str]:
    """Prefill (``length`` = prompt tokens, causal) or decode (``length`` = context) attention
    of ``batch`` sequences on one rank holding ``heads`` query and ``kv_heads`` KV heads."""
    entries = () if tables is None else (tables.prefill_attention if phase == "prefill" else tables.decode_attention)
    e = _nearest(entries, heads, kv_heads, head_dim)
    if e is not None:
        t = _lookup(profile, e.grid, f"{tables.key} {phase} attention", (batch, length))
        src = _src(e.grid)
        if (e.heads, e.kv_heads) != (heads, kv_heads):
            t *= heads / e.heads
            src += f" (scaled from {e.heads}/{e.kv_heads} heads)"
        return t, src
    kv = batch * length * 2 * kv_heads * head_dim * kv_bytes
    if phase == "prefill":
        flops = 2.0 * batch * length * length * head_dim * heads  # causal: half of 4*b*s^2*d*a
        read = kv + 2 * batch * length * heads * head_dim * act_bytes
    else:
        flops = 4.0 * batch * length * head_dim * heads
        read = kv + 2 * batch * heads * head_dim * act_bytes
    return roofline_s(profile, flops, read, dtype), FALLBACK


def elementwise_s(profile: Profile, tables: OpTables | None, bytes_moved: float, kernels: int = 1) -> tuple[float, str]:
    """Bandwidth-bound kernels (norms, rotary, residual adds, activation) moving ``bytes_moved``."""
    if tables is not None and tables.elementwise_gbps is not None:
        v = tables.elementwise_gbps
        lat = tables.elementwise_latency_us.value if tables.elementwise_latency_us else 0.0
        return bytes_moved / (v.value * 1e9) + kernels * lat * 1e-6, f"{v.source}: {v.ref}" if v.ref else v.source
    eff = profile.decode_efficiency.at(bytes_moved)
    return bytes_moved / (profile.hbm_gbps.value * 1e9 * eff), FALLBACK


def allreduce_impl(tables: OpTables, ranks: int, size_bytes: float, tokens: float) -> str:
    """The all-reduce the runtime calls (``allreduce_policy``); NCCL without a policy."""
    pol = tables.allreduce_policy
    if pol is None or ranks not in pol.custom_ranks or size_bytes > pol.custom_max_bytes:
        return "nccl"
    return "custom_graph" if tokens <= pol.cuda_graph_max_tokens else "custom_eager"


def allreduce_s(profile: Profile, tables: OpTables | None, ranks: int, size_bytes: float,
                tokens: float) -> tuple[float, str] | None:
    """The runtime's all-reduce from its table, or None (the caller uses the collectives
    fit / network defaults). A custom-kernel table that is missing falls back to NCCL's."""
    if tables is None or ranks <= 1:
        return None
    impl = allreduce_impl(tables, ranks, size_bytes, tokens)
    for name in (impl, "nccl"):
        t = tables.allreduce_table(name, ranks)
        if t is not None:
            s = _lookup(profile, t.grid, f"{tables.key} all_reduce {name} {ranks} ranks", (size_bytes,))
            return s, f"{name}; {_src(t.grid)}"
    return None


def moe_s(profile: Profile, tables: OpTables | None, model: ModelSpec, tp: int, expert_parallel: bool,
          tokens: float, dtype: str) -> tuple[float, str] | None:
    """One layer's fused-MoE kernel (all routed experts, one call) at ``tokens`` tokens from
    the table of exactly this expert shape (hidden, expert width, top-k, experts), split
    (TP ``tp``, or EP ``tp`` with expert parallelism) and dtype (fp16 reads bf16); None when
    the profile has none (the caller composes it from the GEMM table and the weight stream).
    A table of another shape is not rescaled: routing, tiling and the per-expert row count
    all change with it, so the composed fallback is the more honest number."""
    if tables is None:
        return None
    split = (1, tp) if expert_parallel else (tp, 1)
    want = (model.hidden_size, model.ffn_size, model.experts_per_token, model.num_experts, *split)
    for d in (dtype, "bf16" if dtype == "fp16" else None):
        for e in tables.moe:
            if e.dtype == d and e.shape == want:
                return _lookup(profile, e.grid, f"{tables.key} moe {d}", (tokens,)), _src(e.grid)
    return None
