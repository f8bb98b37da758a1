"""Profile schema v2: per-runtime op tables (``ops`` section; docs/profile.md, "Op tables").

A profile may hold, per runtime key (``vllm-0.14``, ``native``...), measured or imported
latency tables of the ops one decoder layer runs: GEMMs by (m, n, k) and dtype, prefill
attention by (batch, seq) per (heads, kv heads, head dim), decode attention by (batch,
context), all-reduce by (ranks, bytes, implementation), plus elementwise bandwidth and the
fixed per-step overhead. Tables are coarse grids interpolated in log space by
``solver.cost.ops.grid``; each carries ``source``/``ref`` and its axes are its measured range.

Units are converted here, once: times in the file are microseconds (``time_us``), sizes bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from solver.errors import InputError
from solver.inputs.fields import Fields, finite_number

OP_SOURCES = ("measured", "published", "synthetic", "default")
AR_IMPLS = ("custom_graph", "custom_eager", "nccl")
OVERHEAD_TERMS = ("per_seq", "per_rank", "per_seq_rank")
_SRC_KEYS = ("source", "ref", "note")
MOE_SHAPE = ("hidden", "inter", "topk", "experts", "tp", "ep")


@dataclass(frozen=True)
class Grid:
    """Latency (us) on the product of ``axes`` (each increasing, > 0); ``values`` flat, row-major."""
    names: tuple[str, ...]
    axes: tuple[tuple[float, ...], ...]
    values: tuple[float, ...]
    source: str
    ref: str = ""

    def range(self) -> dict:
        return {n: (a[0], a[-1]) for n, a in zip(self.names, self.axes)}


@dataclass(frozen=True)
class AttentionTable:
    heads: int
    kv_heads: int
    head_dim: int
    grid: Grid  # prefill: (batch, seq); decode: (batch, context)


@dataclass(frozen=True)
class MoeTable:
    """One fused-MoE kernel (all routed experts of a layer, one call) by tokens in the step,
    for one expert shape (hidden, expert width ``inter``, top-k, experts) and TP/EP split."""
    dtype: str
    hidden: int
    inter: int
    topk: int
    experts: int
    tp: int
    ep: int
    grid: Grid  # (tokens,)

    @property
    def shape(self) -> tuple:
        return (self.hidden, self.inter, self.topk, self.experts, self.tp, self.ep)


@dataclass(frozen=True)
class AllReduceTable:
    impl: str
    ranks: int
    grid: Grid  # (size_bytes,)


@dataclass(frozen=True)
class OpValue:
    value: float
    source: str
    ref: str = ""


@dataclass(frozen=True)
class AllReducePolicy:
    """Which all-reduce the runtime calls: its custom kernel for messages up to
    ``custom_max_bytes`` on ``custom_ranks`` GPUs (inside a CUDA graph when the step has at
    most ``cuda_graph_max_tokens`` tokens, else eager), NCCL otherwise."""
    custom_max_bytes: float
    custom_ranks: tuple[int, ...]
    cuda_graph_max_tokens: float
    source: str
    ref: str = ""


@dataclass(frozen=True)
class OpTables:
    key: str
    runtime: str
    source: str
    ref: str
    gemm: dict = field(default_factory=dict)            # dtype -> Grid over (m, n, k)
    prefill_attention: tuple[AttentionTable, ...] = ()
    decode_attention: tuple[AttentionTable, ...] = ()
    all_reduce: tuple[AllReduceTable, ...] = ()
    moe: tuple[MoeTable, ...] = ()
    allreduce_policy: AllReducePolicy | None = None
    elementwise_gbps: OpValue | None = None             # achieved HBM GB/s of norm/rotary/activation kernels
    elementwise_latency_us: OpValue | None = None       # fixed time per elementwise kernel
    decode_step_overhead_ms: OpValue | None = None      # engine time per decode step beyond kernels
    prefill_step_overhead_ms: OpValue | None = None     # per prefill (chunk) step
    # engine time that grows with the step's sequences and the TP workers it drives (ms):
    # + per_seq x rows + per_rank x (t-1) + per_seq_rank x rows x (t-1)  (docs/profile.md)
    overhead_terms: dict = field(default_factory=dict)  # name -> OpValue

    def step_overhead_s(self, phase: str, rows: float, tp: int) -> tuple[float, str] | None:
        """Engine time of one step beyond the kernels, or None when the tables carry none."""
        base = self.decode_step_overhead_ms if phase == "decode" else self.prefill_step_overhead_ms
        if base is None:
            return None
        terms = self.overhead_terms
        ms = base.value
        ms += terms["per_seq"].value * rows if "per_seq" in terms else 0.0
        ms += terms["per_rank"].value * (tp - 1) if "per_rank" in terms else 0.0
        ms += terms["per_seq_rank"].value * rows * (tp - 1) if "per_seq_rank" in terms else 0.0
        return ms * 1e-3, f"{base.source}: {base.ref}" if base.ref else base.source

    def allreduce_table(self, impl: str, ranks: int) -> AllReduceTable | None:
        for t in self.all_reduce:
            if t.impl == impl and t.ranks == ranks:
                return t
        return None


def _axis(f: Fields, name: str) -> tuple[float, ...]:
    xs = f.get(name, list)
    if len(xs) < 1 or not all(finite_number(v) and v > 0 for v in xs) or sorted(set(xs)) != list(xs):
        raise f.error(name, "must be a non-empty list of numbers > 0, strictly increasing")
    return tuple(float(v) for v in xs)


def _flatten(values, shape: tuple[int, ...], f: Fields, key: str) -> tuple[float, ...]:
    """Nested lists of ``shape`` -> flat row-major tuple; every entry finite and > 0."""
    if not shape:
        if not finite_number(values) or values <= 0:
            raise f.error(key, f"times must be finite numbers > 0, got {values!r}")
        return (float(values),)
    if not isinstance(values, list) or len(values) != shape[0]:
        raise f.error(key, f"nested lists must match the axes' lengths {list(shape)}")
    out: list[float] = []
    for v in values:
        out.extend(_flatten(v, shape[1:], f, key))
    return tuple(out)


def _grid(f: Fields, names: tuple[str, ...], source: str, ref: str) -> Grid:
    axes = tuple(_axis(f, n) for n in names)
    values = _flatten(f.get("time_us", list), tuple(len(a) for a in axes), f, "time_us")
    return Grid(names, axes, values, source, ref)


def _src(f: Fields, parent: tuple[str, str]) -> tuple[str, str]:
    return (f.get("source", str, parent[0], choices=OP_SOURCES), f.get("ref", str, parent[1]))


def _opvalue(data, where: str, path: str, parent: tuple[str, str], positive: bool = False) -> OpValue:
    f = Fields(data, where, path, ("value", *_SRC_KEYS, "range", "fit_error"))
    v = f.get("value", float, min_value=0.0)
    if positive and v <= 0:
        raise f.error("value", f"must be > 0, got {v:g}")
    return OpValue(v, *_src(f, parent))


def _attention(data, where: str, path: str, second: str, parent) -> AttentionTable:
    f = Fields(data, where, path, ("heads", "kv_heads", "head_dim", "dtype", "batch", second, "time_us",
                                   *_SRC_KEYS))
    f.get("dtype", str, "bf16")
    return AttentionTable(heads=f.get("heads", int, min_value=1), kv_heads=f.get("kv_heads", int, min_value=1),
                          head_dim=f.get("head_dim", int, min_value=1),
                          grid=_grid(f, ("batch", second), *_src(f, parent)))


def _runtime(data, where: str, key: str) -> OpTables:
    path = f"ops.{key}"
    f = Fields(data, where, path, ("runtime", *_SRC_KEYS, "gemm", "prefill_attention", "decode_attention",
                                   "all_reduce", "allreduce_policy", "elementwise", "step_overhead_ms", "moe"))
    top = (f.get("source", str, choices=OP_SOURCES), f.get("ref", str, ""))
    gemm = {}
    for i, g in enumerate(f.get("gemm", list, [])):
        gf = Fields(g, where, f"{path}.gemm[{i}]", ("dtype", "m", "n", "k", "time_us", *_SRC_KEYS))
        dtype = gf.get("dtype", str, choices=("bf16", "fp16", "fp8"))
        if dtype in gemm:
            raise gf.error("dtype", f"a second {dtype} table; one per dtype")
        gemm[dtype] = _grid(gf, ("m", "n", "k"), *_src(gf, top))
    pre = tuple(_attention(a, where, f"{path}.prefill_attention[{i}]", "seq", top)
                for i, a in enumerate(f.get("prefill_attention", list, [])))
    dec = tuple(_attention(a, where, f"{path}.decode_attention[{i}]", "context", top)
                for i, a in enumerate(f.get("decode_attention", list, [])))
    ars = []
    for i, a in enumerate(f.get("all_reduce", list, [])):
        af = Fields(a, where, f"{path}.all_reduce[{i}]", ("impl", "ranks", "size_bytes", "time_us", *_SRC_KEYS))
        ars.append(AllReduceTable(af.get("impl", str, choices=AR_IMPLS), af.get("ranks", int, min_value=2),
                                  _grid(af, ("size_bytes",), *_src(af, top))))
    if len({(a.impl, a.ranks) for a in ars}) != len(ars):
        raise f.error("all_reduce", "one table per (impl, ranks)")
    moe = []
    for i, m in enumerate(f.get("moe", list, [])):
        mf = Fields(m, where, f"{path}.moe[{i}]", ("dtype", *MOE_SHAPE, "tokens", "time_us", *_SRC_KEYS))
        moe.append(MoeTable(mf.get("dtype", str, choices=("bf16", "fp16", "fp8")),
                            *(mf.get(k, int, min_value=1) for k in MOE_SHAPE), _grid(mf, ("tokens",), *_src(mf, top))))
    if len({(m.dtype, m.shape) for m in moe}) != len(moe):
        raise f.error("moe", "one table per (dtype, hidden, inter, topk, experts, tp, ep)")
    policy = None
    if "allreduce_policy" in f.data:
        pf = Fields(f.data["allreduce_policy"], where, f"{path}.allreduce_policy",
                    ("custom_max_bytes", "custom_ranks", "cuda_graph_max_tokens", *_SRC_KEYS))
        ranks = pf.get("custom_ranks", list, [])
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 2 for r in ranks):
            raise pf.error("custom_ranks", "must be a list of integers >= 2")
        policy = AllReducePolicy(pf.get("custom_max_bytes", float, min_value=0.0), tuple(ranks),
                                 pf.get("cuda_graph_max_tokens", float, min_value=0.0), *_src(pf, top))
    ew_gbps = ew_lat = None
    if "elementwise" in f.data:
        ef = Fields(f.data["elementwise"], where, f"{path}.elementwise", ("gbps", "latency_us", "note"))
        ew_gbps = _opvalue(ef.get("gbps", dict), where, f"{path}.elementwise.gbps", top, positive=True)
        if "latency_us" in ef.data:
            ew_lat = _opvalue(ef.data["latency_us"], where, f"{path}.elementwise.latency_us", top)
    dec_oh = pre_oh = None
    terms = {}
    if "step_overhead_ms" in f.data:
        sf = Fields(f.data["step_overhead_ms"], where, f"{path}.step_overhead_ms",
                    ("decode", "prefill", *OVERHEAD_TERMS, "note"))
        if "decode" in sf.data:
            dec_oh = _opvalue(sf.data["decode"], where, f"{path}.step_overhead_ms.decode", top)
        if "prefill" in sf.data:
            pre_oh = _opvalue(sf.data["prefill"], where, f"{path}.step_overhead_ms.prefill", top)
        terms = {k: _opvalue(sf.data[k], where, f"{path}.step_overhead_ms.{k}", top)
                 for k in OVERHEAD_TERMS if k in sf.data}
    return OpTables(key=key, runtime=f.get("runtime", str, key), source=top[0], ref=top[1], gemm=gemm,
                    prefill_attention=pre, decode_attention=dec, all_reduce=tuple(ars), moe=tuple(moe), allreduce_policy=policy,
                    elementwise_gbps=ew_gbps, elementwise_latency_us=ew_lat,
                    decode_step_overhead_ms=dec_oh, prefill_step_overhead_ms=pre_oh, overhead_terms=terms)


def parse_ops(data, where: str) -> dict:
    """The ``ops`` section: runtime key -> :class:`OpTables`."""
    if not isinstance(data, dict):
        raise InputError(where, "ops", f"must be a mapping of runtime keys, got {type(data).__name__}")
    return {str(k): _runtime(v, where, str(k)) for k, v in data.items()}


def tables_for(ops: dict, runtime: str) -> OpTables | None:
    """The op tables of ``runtime`` (``vllm`` matches key ``vllm-0.14``; the newest version
    key sorts last and wins); a profile without them lends the tables it has (kernel times
    measured under another runtime, e.g. ``native`` torch sweeps; the key shows in every op's
    source). None without any: the cost model falls back to the roofline."""
    def version(k: str) -> list:
        return [int(p) if p.isdigit() else 0 for p in k.split("-", 1)[-1].split(".")]
    keys = sorted((k for k in ops if k == runtime or k.startswith(runtime + "-")), key=version)
    if not keys:
        keys = sorted(ops, key=version)
    return ops[keys[-1]] if keys else None
