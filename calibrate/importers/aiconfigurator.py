"""Import NVIDIA AIConfigurator's per-op tables (``aiconfigurator-core``, Apache-2.0) as a
profile's op tables (schema v2 ``ops``; docs/profile.md "Op tables").

The package ships measured latencies (ms) per system, op, framework and version:
``systems/data/<system>/{gemm,attention,comm}/<framework>/<version>/*.parquet`` with a
``collection_meta.yaml`` beside each, and ``systems/<system>.yaml`` (datasheet numbers and
AIConfigurator's own memory-bandwidth correction). We keep a coarse subset:

- GEMM (bf16, fp8 when present): every m that is a power of two; for n and k, the grid
  values that bracket each shape the model zoo needs (``solver/presets``, TP 1-8: q/k/v, o,
  gate/up, down, LM head at the shard), so every zoo GEMM interpolates between measured
  neighbours. A shape wider than the table is timed as column blocks inside it
  (``solver.cost.ops.lookup``).
- Attention (head dim 128, bf16 KV): the (heads, kv heads) pairs the zoo needs at TP 1-8,
  full (batch, sequence) and (batch, context) grids. Decode points the source did not
  measure (large batch x long context: out of memory) are filled by log-log extrapolation
  along the context within that batch's row, and counted in the table's ``note``.
- Fused MoE (bf16, fp8 when present): one call of all routed experts of a layer, by tokens in
  the step, for each expert shape of the zoo's MoE presets (hidden, expert width, top-k,
  experts) at TP 1-8 and EP 2-8; uniform (``balanced``) routing as ``experts_touched``
  assumes, else the mildest skew the file has (``power_law_1.01``); the fastest kernel per point.
- All-reduce: the runtime's custom kernel (CUDA graph and eager) and NCCL, per rank count,
  every message size.
Times are converted once, ms -> us. Every table cites the package version and file.
"""

from __future__ import annotations

from pathlib import Path

from calibrate.ops.tables import fill_row
from solver.cost.memory import kv_heads_per_gpu, padded_vocab
from solver.cost.ops.compose import covered, layer_gemms
from solver.errors import InputError
from solver.inputs.fields import load_yaml
from solver.inputs.model import load_model, preset_names

PACKAGE = "aiconfigurator-core"
ZOO_TP = (1, 2, 4, 8)
HEAD_DIM = 128
# Attention kernels vLLM picks by default, in order of preference (FA2 on Ampere/Ada, FA3 on Hopper).
ATTENTION_KERNELS = ("vllm_flash_attn", "vllm_flash_attn_fa3", "vllm_flash_attn_fa2")
GEMM_DTYPES = {"bfloat16": "bf16", "fp8": "fp8"}
MOE_ROUTING = ("balanced", "power_law_1.01")  # in order of preference


def data_root(data_dir: str | None) -> tuple[Path, str]:
    """(systems folder, package version): ``--data-dir`` (a copy of ``systems/``; version
    from ``--package-version``) or the installed package."""
    if data_dir:
        return Path(data_dir), ""
    try:
        import importlib.metadata as md

        import aiconfigurator_core
    except ImportError:
        raise InputError("--data-dir", "", f"{PACKAGE} is not installed: pip install {PACKAGE} "
                                           "(or give --data-dir, a copy of its systems/ folder)") from None
    return Path(aiconfigurator_core.__file__).parent / "systems", md.version(PACKAGE)


def read_parquet(path: Path):
    try:
        import pandas as pd
        return pd.read_parquet(path)
    except ImportError:
        raise InputError(str(path), "", "reading parquet needs pyarrow: pip install -e '.[import]'") from None
    except Exception as e:  # a corrupt or non-parquet file
        raise InputError(str(path), "", f"not a readable parquet table ({type(e).__name__}: {e})") from None


def _version_key(v: str) -> list:
    return [int(p) if p.isdigit() else -1 for p in v.replace("rc", ".").split(".")]


def pick_file(root: Path, system: str, op: str, framework: str, version: str | None, name: str) -> Path | None:
    """``data/<system>/<op>/<framework>/<version>/<name>``: the given version, else the
    newest version folder holding ``name``."""
    base = root / "data" / system / op / framework
    if not base.is_dir():
        return None
    found = sorted((d for d in base.iterdir() if (d / name).is_file()), key=lambda d: _version_key(d.name))
    if version:
        found = [d for d in found if d.name == version]
    return found[-1] / name if found else None


def zoo_shapes() -> tuple[set, set, set]:
    """(n values, k values, (heads, kv_heads) pairs) of every preset at TP 1, 2, 4, 8."""
    ns, ks, pairs = set(), set(), set()
    for name in preset_names():
        model = load_model(name)
        if not covered(model):
            continue
        for tp in ZOO_TP:
            if model.num_heads % tp:
                continue
            for kind in set(model.layers):
                for _, _, n, k, _ in layer_gemms(model, tp, 1, kind):
                    ns.add(n)
                    ks.add(k)
            ns.add(padded_vocab(model) / tp)
            if model.head_dim == HEAD_DIM:
                pairs.add((model.num_heads // tp, int(kv_heads_per_gpu(model, tp))))
    return ns, ks, pairs


def zoo_moe_shapes() -> set:
    """(hidden, expert width, top-k, experts) of every MoE preset the composition covers."""
    out = set()
    for name in preset_names():
        model = load_model(name)
        if covered(model) and model.is_moe:
            out.add((model.hidden_size, model.ffn_size, model.experts_per_token, model.num_experts))
    return out


def moe_tables(df, ref: str) -> list[dict]:
    routing = [r for r in MOE_ROUTING if r in set(df.distribution)]
    if not routing:
        return []
    d = df[df.distribution == routing[0]]
    splits = [(t, 1) for t in ZOO_TP] + [(1, t) for t in ZOO_TP if t > 1]
    out = []
    for src_dtype, dtype in GEMM_DTYPES.items():
        for h, f, k, e in sorted(zoo_moe_shapes()):
            s = d[(d.moe_dtype == src_dtype) & (d.hidden_size == h) & (d.inter_size == f) & (d.topk == k)
                  & (d.num_experts == e)]
            for tp, ep in splits:
                c = s[(s.moe_tp_size == tp) & (s.moe_ep_size == ep)].groupby("num_tokens", as_index=False)["latency"].min()
                if len(c) < 2:
                    continue
                out.append({"dtype": dtype, "hidden": int(h), "inter": int(f), "topk": int(k), "experts": int(e),
                            "tp": tp, "ep": ep, "tokens": [int(x) for x in c.num_tokens],
                            "time_us": [_us(x) for x in c.latency], "source": "published",
                            "ref": f"{ref} (routing {routing[0]})"})
    return out


def bracket(axis: list[float], wanted: set) -> list[float]:
    """The smallest sub-axis holding, for each wanted x, its neighbours on ``axis``."""
    keep = set()
    for x in wanted:
        lo = [a for a in axis if a <= x]
        hi = [a for a in axis if a >= x]
        keep.update(([lo[-1]] if lo else []) + ([hi[0]] if hi else []))
    return sorted(keep)


def _us(ms: float) -> float:
    return float(f"{ms * 1e3:.4g}")


def gemm_tables(df, ref: str) -> list[dict]:
    ns, ks, _ = zoo_shapes()
    out = []
    for src_dtype, dtype in GEMM_DTYPES.items():
        d = df[df.gemm_dtype == src_dtype]
        if d.empty:
            continue
        d = d.groupby(["m", "n", "k"], as_index=False)["latency"].min()  # one kernel per shape: the fastest
        ms = sorted(m for m in d.m.unique() if m & (m - 1) == 0)
        n_axis = bracket(sorted(d.n.unique()), ns)
        k_axis = bracket(sorted(d.k.unique()), ks)
        lat = {(r.m, r.n, r.k): r.latency for r in d.itertuples()}
        # a full grid: while a point is missing (the source skips some of its largest shapes),
        # drop the largest n or k, whichever holds more of the holes (k on a tie); larger GEMMs
        # are timed as blocks inside the table (solver.cost.ops.lookup)
        while any((m, n, k) not in lat for m in ms for n in n_axis for k in k_axis) and min(len(n_axis), len(k_axis)) > 2:
            holes_k = sum((m, n, k_axis[-1]) not in lat for m in ms for n in n_axis)
            holes_n = sum((m, n_axis[-1], k) not in lat for m in ms for k in k_axis)
            (k_axis if holes_k >= holes_n else n_axis).pop()
        if len(ms) < 2 or any((m, n, k) not in lat for m in ms for n in n_axis for k in k_axis):
            continue
        grid = [[[_us(lat[(m, n, k)]) for k in k_axis] for n in n_axis] for m in ms]
        out.append({"dtype": dtype, "m": [int(m) for m in ms], "n": [int(n) for n in n_axis],
                    "k": [int(k) for k in k_axis], "time_us": grid, "source": "published", "ref": ref})
    return out


def attention_tables(df, phase: str, ref: str) -> list[dict]:
    """Prefill (context_attention) or decode (generation_attention) tables for the zoo's heads."""
    _, _, pairs = zoo_shapes()
    d = df[(df.head_dim == HEAD_DIM) & (df.kv_cache_dtype == "bfloat16")]
    kernels = [k for k in ATTENTION_KERNELS if k in set(d.kernel_source)]
    if kernels:
        d = d[d.kernel_source == kernels[0]]
    d = d.assign(length=d.isl if phase == "prefill" else d.isl + d.step)
    second = "seq" if phase == "prefill" else "context"
    out = []
    for heads, kvh in sorted(pairs):
        e = d[(d.num_heads == heads) & (d.num_key_value_heads == kvh)]
        if e.empty:
            continue
        e = e.groupby(["batch_size", "length"], as_index=False)["latency"].min()
        batches = sorted(int(b) for b in e.batch_size.unique())
        # powers of two only: log-space interpolation covers the rest (attention time is a
        # smooth power law in the length), and the table stays a third smaller
        lengths = sorted(int(x) for x in e.length.unique() if x >= 2 and int(x) & (int(x) - 1) == 0)
        rows, filled = [], 0
        for b in batches:
            row = {int(r.length): r.latency for r in e[e.batch_size == b].itertuples()}
            if len(row) < 2:
                break
            times, f = fill_row(lengths, row, _us)
            rows.append(times)
            filled += f
        batches = batches[:len(rows)]
        if len(batches) < 1:
            continue
        entry = {"heads": heads, "kv_heads": kvh, "head_dim": HEAD_DIM, "batch": batches, second: lengths,
                 "time_us": rows, "source": "published",
                 "ref": f"{ref} (kernel {kernels[0] if kernels else 'as listed'})"}
        if filled:
            entry["note"] = (f"{filled} of {len(batches) * len(lengths)} points not in the source (batch x "
                             f"{second} beyond its GPU memory) filled by log-log extrapolation along {second}")
        out.append(entry)
    return out


# AIConfigurator's ``message_size`` counts elements, not bytes: its NCCL all_reduce of
# 268435456 "half" takes 4226 us on 8 A100s, the same as nccl-tests' 536870912-byte (float)
# all_reduce on 8 A100 SXM (4208 us, ../shared/data/nccl oci_bm_gpu4 log) -- and its model
# code passes hidden-size x tokens. Both tables here are 16-bit: 2 bytes per element.
ELEMENT_BYTES = {"half": 2, "bfloat16": 2, "float16": 2}


def allreduce_tables(custom_df, nccl_df, custom_ref: str, nccl_ref: str) -> list[dict]:
    out = []
    if custom_df is not None:
        for impl, tag in (("custom_graph", "graph"), ("custom_eager", "eager")):
            d = custom_df[custom_df.kernel_source.str.lower().str.endswith(tag)]
            nbytes = ELEMENT_BYTES[str(d.allreduce_dtype.iloc[0])] if len(d) else 2
            for n in sorted(d.num_gpus.unique()):
                e = d[d.num_gpus == n].groupby("message_size")["latency"].min()
                out.append({"impl": impl, "ranks": int(n), "size_bytes": [int(s) * nbytes for s in e.index],
                            "time_us": [_us(v) for v in e.values], "source": "published", "ref": custom_ref})
    if nccl_df is not None:
        d = nccl_df[(nccl_df.op_name == "all_reduce") & (nccl_df.nccl_dtype == "half")]
        for n in sorted(d.num_gpus.unique()):
            e = d[d.num_gpus == n].groupby("message_size")["latency"].min()
            out.append({"impl": "nccl", "ranks": int(n), "size_bytes": [int(s) * ELEMENT_BYTES["half"] for s in e.index],
                        "time_us": [_us(v) for v in e.values], "source": "published", "ref": nccl_ref})
    return out


# vLLM facts the composition needs (vllm/distributed/device_communicators/custom_all_reduce.py:
# max_size = 8192 * 1024, _SUPPORTED_WORLD_SIZES = [2, 4, 6, 8], disabled on more than two
# PCIe-only GPUs; vllm/config/compilation.py: CUDA graphs captured up to 512 tokens by default).
VLLM_POLICY_REF = ("vLLM source: custom all-reduce max_size 8 MiB and world sizes 2/4/6/8, off on more than "
                   "two PCIe-only GPUs (device_communicators/custom_all_reduce.py); CUDA graphs up to 512 "
                   "tokens (config/compilation.py max capture size)")


def allreduce_policy(interconnect: str) -> dict:
    return {"custom_max_bytes": 8 * 2**20, "custom_ranks": [2, 4, 6, 8] if interconnect == "nvlink" else [2],
            "cuda_graph_max_tokens": 512, "source": "published", "ref": VLLM_POLICY_REF}


def elementwise(root: Path, system: str, pkg: str) -> dict | None:
    path = root / f"{system}.yaml"
    if not path.is_file():
        return None
    gpu = (load_yaml(path) or {}).get("gpu", {})
    bw, scale = gpu.get("mem_bw"), gpu.get("mem_bw_empirical_scaling_factor", 1.0)
    if not bw:
        return None
    ref = f"{pkg} systems/{system}.yaml gpu.mem_bw x mem_bw_empirical_scaling_factor ({scale})"
    out = {"gbps": {"value": round(bw * scale / 1e9, 1), "source": "published", "ref": ref}}
    lat = gpu.get("mem_empirical_constant_latency")
    if lat is not None:
        out["latency_us"] = {"value": round(lat * 1e6, 3), "source": "published",
                             "ref": f"{pkg} systems/{system}.yaml gpu.mem_empirical_constant_latency"}
    return out


def build_ops(root: Path, pkg_version: str, system: str, backend: str, version: str | None,
              interconnect: str) -> tuple[str, dict, list[str]]:
    """(runtime key, ops JSON for that key, files read) for ``system`` and ``backend``."""
    pkg = f"{PACKAGE} {pkg_version}".strip()

    def cite(path: Path) -> str:
        return f"{pkg}: systems/{path.relative_to(root).as_posix()}"

    files = {
        "gemm": pick_file(root, system, "gemm", backend, version, "gemm_perf.parquet"),
        "prefill": pick_file(root, system, "attention", backend, version, "context_attention_perf.parquet"),
        "decode": pick_file(root, system, "attention", backend, version, "generation_attention_perf.parquet"),
        "custom": pick_file(root, system, "comm", backend, version, "custom_allreduce_perf.parquet"),
        "nccl": pick_file(root, system, "comm", "nccl", None, "nccl_perf.parquet"),
        "moe": pick_file(root, system, "moe", backend, version, "moe_perf.parquet"),
    }
    if files["gemm"] is None and files["prefill"] is None:
        have = root / "data" / system
        raise InputError(str(have), "--system/--backend/--version",
                         f"no {backend} {version or ''} gemm or attention tables for {system}".replace("  ", " "))
    runtime_version = (files["gemm"] or files["prefill"]).parent.name
    ops: dict = {"runtime": f"{backend} {runtime_version}", "source": "published",
                 "ref": f"{pkg} (NVIDIA AIConfigurator per-op database, Apache-2.0), system {system}"}
    if files["gemm"]:
        ops["gemm"] = gemm_tables(read_parquet(files["gemm"]), cite(files["gemm"]))
    if files["prefill"]:
        ops["prefill_attention"] = attention_tables(read_parquet(files["prefill"]), "prefill", cite(files["prefill"]))
    if files["decode"]:
        ops["decode_attention"] = attention_tables(read_parquet(files["decode"]), "decode", cite(files["decode"]))
    if files["moe"]:
        ops["moe"] = moe_tables(read_parquet(files["moe"]), cite(files["moe"]))
    custom = read_parquet(files["custom"]) if files["custom"] else None
    nccl = read_parquet(files["nccl"]) if files["nccl"] else None
    ars = allreduce_tables(custom, nccl, cite(files["custom"]) if files["custom"] else "",
                           cite(files["nccl"]) if files["nccl"] else "")
    if ars:
        ops["all_reduce"] = ars
        ops["allreduce_policy"] = allreduce_policy(interconnect)
    ew = elementwise(root, system, pkg)
    if ew:
        ops["elementwise"] = ew
    key = f"{backend}-{'.'.join(runtime_version.split('.')[:2])}"
    return key, {k: v for k, v in ops.items() if v}, [cite(p) for p in files.values() if p]
