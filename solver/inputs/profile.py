"""The profile file: the one contract between ``calibrate`` (writer) and ``solver`` (reader).

Schema (version 1) is documented in ``docs/profile.md``. Every number the cost model uses
comes from here, each with its ``source``: ``measured`` (real hardware, provenance says
who/how), ``published`` (datasheet or public benchmark), ``synthetic`` (test fixtures) or
``default`` (a documented assumption used when nothing was calibrated).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from solver.errors import InputError
from solver.inputs.fields import Fields, finite_number, load_json
from solver.inputs.memory_models import RUNTIMES, parse_engine_memory, parse_phases
from solver.inputs.ops_profile import parse_ops
from solver.inputs.profile_records import (ActivationModel, CollectiveFit, Curve, EngineAllReduce, Profile, Value)

SCHEMA_VERSION = 2
# Versions this loader reads: 1 (no op tables) and 2 (adds the optional ``ops`` section,
# solver/inputs/ops_profile.py). Writers keep a file's version unless they add ``ops``.
READABLE_VERSIONS = (1, 2)
SOURCES = ("measured", "published", "synthetic", "default")
SCOPES = ("intra_node", "inter_node")
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv")
# A profile may also carry all_to_all fits (nccl-tests alltoall_perf; MoE expert parallelism
# dispatch/combine); COLLECTIVES is what calibrate sweeps.
PROFILE_COLLECTIVES = COLLECTIVES + ("all_to_all",)
CURVE_KINDS = ("constant", "saturating", "table")
ACTIVATION_MODELS = ("tokens_linear_v1", "phases_max_v1")  # phases_max_v1: solver/inputs/memory_models.py
# Coefficients of the activation-peak model (design.md section 5):
# peak = c0_bytes + T*p*(c_h*h + c_h_t*h/t + c_f_t*f/t + c_q_t*a*d/t) + c_attn_t*b*s^2*(a/t)*p
ACTIVATION_COEFS = ("c0_bytes", "c_h", "c_h_t", "c_f_t", "c_q_t", "c_attn_t")

# ``plausible``: [low, high] of a ``default`` value, propagated into prediction intervals.
_VALUE_KEYS = ("value", "source", "ref", "range", "fit_error", "note", "plausible")
# The ``serving`` section: a serving engine's knobs and per-step overheads, each a value
# record (docs/profile.md; used by solver/cost/serving.py). Bounds: name -> (min, max).
SERVING_KEYS = {
    "gpu_memory_utilization": (0.05, 1.0),  # fraction of GPU memory the engine may use
    "max_num_seqs": (1, 1e6),               # sequences scheduled at once (vLLM --max-num-seqs)
    "max_num_batched_tokens": (1, 1e8),     # prompt tokens one prefill step may take
    "decode_step_overhead_ms": (0.0, 1e4),  # engine time per decode step beyond GPU kernels
    "prefill_overhead_ms": (0.0, 1e5),      # engine time per prefill step beyond GPU kernels
}


# ---------------------------------------------------------------- parsing

# Bounds of a value record's ``value`` (test, text). Rates and capacities divide: > 0.
POSITIVE, NONNEG = (lambda v: v > 0, "> 0"), (lambda v: v >= 0, ">= 0")
EFFICIENCY, FRACTION = (lambda v: 0 < v <= 1, "in (0, 1]"), (lambda v: 0 <= v <= 1, "in [0, 1]")
NETWORK_BOUNDS = {"intra_node_alpha_us": NONNEG, "inter_node_alpha_us": NONNEG,
                  "nic_efficiency": EFFICIENCY, "intra_node_p2p_efficiency": EFFICIENCY}


def _value(data, where: str, path: str, bounds: tuple | None = None) -> Value:
    """A value record; ``value`` is finite and, with ``bounds``, within them."""
    f = Fields(data, where, path, _VALUE_KEYS)
    v = f.get("value", float)
    if bounds is not None and not bounds[0](v):
        raise f.error("value", f"must be {bounds[1]}, got {v:g}")
    return Value(
        value=v,
        source=f.get("source", str, choices=SOURCES),
        ref=f.get("ref", str, ""),
        range=f.get("range", dict, None),
        fit_error=f.get("fit_error", dict, None),
        plausible=_plausible(f, v),
    )


def _plausible(f: Fields, v: float) -> tuple[float, float] | None:
    pl = f.get("plausible", list, None)
    if pl is None:
        return None
    if len(pl) != 2 or not all(finite_number(x) for x in pl) or not pl[0] <= v <= pl[1]:
        raise f.error("plausible", f"must be [low, high] around the value {v:g}, got {pl!r}")
    return (float(pl[0]), float(pl[1]))


def _curve(data, where: str, path: str) -> Curve:
    f = Fields(data, where, path, ("kind", "x", "x_quantity", "value", "eff_max", "x_half", "y",
                                   "source", "ref", "range", "fit_error", "note", "plausible_scale"))
    kind = f.get("kind", str, choices=CURVE_KINDS)
    if kind == "constant":
        params = {"value": f.get("value", float, min_value=1e-6, max_value=1.0)}
    elif kind == "saturating":
        params = {"eff_max": f.get("eff_max", float, min_value=1e-6, max_value=1.0),
                  "x_half": f.get("x_half", float, min_value=0.0)}
    else:
        xs, ys = f.get("x", list), f.get("y", list)
        if len(xs) != len(ys) or len(xs) < 2:
            raise f.error("y", "table needs x and y lists of equal length >= 2")
        if any(not finite_number(v) or v <= 0 for v in xs) or sorted(xs) != list(xs):
            raise f.error("x", "must be positive numbers in increasing order")
        if any(not finite_number(v) or not 0 < v <= 1 for v in ys):
            raise f.error("y", "efficiencies must be numbers in (0, 1]")
        params = {"x": [float(v) for v in xs], "y": [float(v) for v in ys]}
    scale = f.get("plausible_scale", list, None)  # [low, high] multipliers of a default curve
    if scale is not None and (len(scale) != 2 or not all(finite_number(x) and x > 0 for x in scale)
                              or not scale[0] <= 1 <= scale[1]):
        raise f.error("plausible_scale", f"must be [low <= 1, high >= 1], got {scale!r}")
    return Curve(kind=kind, x_quantity=f.get("x_quantity", str, "layer_gflop"), params=params,
                 source=f.get("source", str, choices=SOURCES), ref=f.get("ref", str, ""),
                 range=f.get("range", dict, None), fit_error=f.get("fit_error", dict, None),
                 plausible_scale=tuple(float(x) for x in scale) if scale else None)


def _collective(data, where: str, path: str) -> CollectiveFit:
    f = Fields(data, where, path, ("collective", "ranks", "scope", "alpha_us", "busbw_gbps", "source",
                                   "ref", "range_bytes", "max_rel_err", "mean_rel_err", "nominal_gbps",
                                   "efficiency", "table", "runtime", "note", "fit_points", "lines",
                                   "held_out_rel_err", "flagged_bytes"))
    rng = f.get("range_bytes", list, None)
    if rng is not None and (len(rng) != 2 or not all(finite_number(v) for v in rng)):
        raise f.error("range_bytes", "must be [min_bytes, max_bytes]")
    table = f.get("table", dict, None)
    sizes, times, interp = (), (), "loglog"
    if table is not None:
        tf = Fields(table, where, f"{path}.table", ("size_bytes", "time_us", "interp"))
        sizes, times = tf.get("size_bytes", list), tf.get("time_us", list)
        interp = tf.get("interp", str, "loglog", choices=("loglog", "linear"))
        if len(sizes) != len(times) or len(sizes) < 2:
            raise tf.error("time_us", "size_bytes (increasing) and time_us need equal length >= 2")
        if not all(finite_number(v) and v > 0 for v in (*sizes, *times)) or sorted(sizes) != list(sizes):
            raise tf.error("time_us", "must be finite numbers > 0, and size_bytes too (increasing)")
    held = f.get("held_out_rel_err", list, [])
    if not all(isinstance(h, list) and len(h) == 2 and all(finite_number(v) for v in h) for h in held):
        raise f.error("held_out_rel_err", "must be a list of [size_bytes, relative error] pairs")
    lines = []
    for i, ln in enumerate(f.get("lines", list, [])):
        lf = Fields(ln, where, f"{path}.lines[{i}]", ("alpha_us", "busbw_gbps"))
        lines.append((lf.get("alpha_us", float, min_value=0.0), lf.get("busbw_gbps", float, min_value=1e-6)))
    return CollectiveFit(
        collective=f.get("collective", str, choices=PROFILE_COLLECTIVES),
        ranks=f.get("ranks", int, min_value=2),
        scope=f.get("scope", str, choices=SCOPES),
        alpha_us=f.get("alpha_us", float, min_value=0.0),
        busbw_gbps=f.get("busbw_gbps", float, min_value=1e-6),
        source=f.get("source", str, choices=SOURCES),
        ref=f.get("ref", str, ""),
        range_bytes=tuple(rng) if rng else None,
        max_rel_err=f.get("max_rel_err", float, None),
        mean_rel_err=f.get("mean_rel_err", float, None),
        nominal_gbps=f.get("nominal_gbps", float, None),
        table_size_bytes=tuple(float(s) for s in sizes),
        table_time_us=tuple(float(t) for t in times),
        table_interp=interp,
        lines=tuple(lines),
        held_out_rel_err=tuple((float(a), float(b)) for a, b in held),
    )


def _activation(data, where: str, path: str):
    if isinstance(data, dict) and data.get("model") == "phases_max_v1":
        return parse_phases(data, where, path, SOURCES)
    f = Fields(data, where, path, ("model", "coef", "source", "runtime", "ref", "range", "fit_error", "note"))
    coef_raw = f.get("coef", dict)
    cf = Fields(coef_raw, where, f"{path}.coef", ACTIVATION_COEFS)
    coef = {k: cf.get(k, float, 0.0) for k in ACTIVATION_COEFS}
    return ActivationModel(model=f.get("model", str, choices=ACTIVATION_MODELS), coef=coef,
                           source=f.get("source", str, choices=SOURCES), runtime=f.get("runtime", str, ""),
                           ref=f.get("ref", str, ""), range=f.get("range", dict, None),
                           fit_error=f.get("fit_error", dict, None))


def _serving(data, where: str) -> tuple[dict, tuple[EngineAllReduce, ...]]:
    """Validated ``serving`` section: SERVING_KEYS value records, the ``tp_allreduce`` list
    (one entry per group size), ``runtime``/``note`` text."""
    f = Fields(data, where, "serving", (*SERVING_KEYS, "tp_allreduce", "runtime", "note"))
    f.get("runtime", str, "")
    out = {}
    for key, (lo, hi) in SERVING_KEYS.items():
        if key in f.data:
            v = _value(f.data[key], where, f"serving.{key}")
            if not lo <= v.value <= hi:
                raise f.error(key, f"value must be in [{lo:g}, {hi:g}], got {v.value:g}")
            out[key] = v
    ars = tuple(_engine_allreduce(c, where, f"serving.tp_allreduce[{i}]")
                for i, c in enumerate(f.get("tp_allreduce", list, [])))
    if len({a.ranks for a in ars}) != len(ars):
        raise f.error("tp_allreduce", "one entry per ranks")
    return out, ars


def _engine_allreduce(data, where: str, path: str) -> EngineAllReduce:
    f = Fields(data, where, path, ("ranks", "hop_us", "busbw_gbps", "source", "ref", "fit_error", "note",
                                   "message_bytes"))
    size = f.get("message_bytes", list, None)
    if size is not None and (len(size) != 2 or not all(finite_number(x) and x > 0 for x in size)
                             or size[0] > size[1]):
        raise f.error("message_bytes", f"must be [smallest, largest] positive bytes, got {size!r}")
    return EngineAllReduce(ranks=f.get("ranks", int, min_value=2), hop_us=f.get("hop_us", float, min_value=0.0),
                           busbw_gbps=f.get("busbw_gbps", float, min_value=1e-6),
                           source=f.get("source", str, choices=SOURCES), ref=f.get("ref", str, ""),
                           fit_error=f.get("fit_error", dict, None),
                           message_bytes=(float(size[0]), float(size[1])) if size is not None else None)


def parse_profile(data: object, where: str) -> Profile:
    top = Fields(data, where, "", ("schema_version", "gpu", "provenance", "collectives", "network",
                                   "memory", "compute", "serving", "ops", "notes"))
    version = top.get("schema_version", int)
    if version not in READABLE_VERSIONS:
        raise top.error("schema_version", f"unsupported version {version}; this solver reads "
                                          f"{', '.join(map(str, READABLE_VERSIONS))}")
    if "ops" in top.data and version < 2:
        raise top.error("ops", "op tables need schema_version 2")
    g = Fields(top.get("gpu", dict), where, "gpu", ("name", "aliases", "memory_gib", "interconnect",
                                                    "intra_node_gbps", "peak_tflops", "hbm_gbps", "note",
                                                    "compute_capability", "memory_cuda_total_gib"))
    peaks_raw = g.get("peak_tflops", dict)
    if not peaks_raw:
        raise g.error("peak_tflops", "needs at least one dtype (bf16, fp16, fp8)")
    peaks = {k: _value(v, where, f"gpu.peak_tflops.{k}", POSITIVE) for k, v in peaks_raw.items()}
    aliases = g.get("aliases", list, [])
    if not all(isinstance(a, str) for a in aliases):
        raise g.error("aliases", "must be a list of strings")
    colls_raw = top.get("collectives", list, [])
    colls = tuple(_collective(c, where, f"collectives[{i}]") for i, c in enumerate(colls_raw))
    net_raw = top.get("network", dict)
    net_f = Fields(net_raw, where, "network", ("inter_node_alpha_us", "nic_efficiency",
                                               "intra_node_alpha_us", "intra_node_p2p_efficiency"))
    for k in NETWORK_BOUNDS:  # solver/cost/comm.py falls back on all four
        net_f.get(k, dict)
    network = {k: _value(v, where, f"network.{k}", NETWORK_BOUNDS[k]) for k, v in net_f.data.items()}
    mem = Fields(top.get("memory", dict), where, "memory",
                 ("activation_peak", "runtime_overhead_gib", "fragmentation_frac", "note", *RUNTIMES))
    comp = Fields(top.get("compute", dict), where, "compute",
                  ("prefill_efficiency", "decode_efficiency", "prefill_elementwise_passes", "note"))
    act_raw = mem.get("activation_peak", dict, None)
    serving, engine_allreduce = _serving(top.get("serving", dict, {}), where)
    return Profile(
        path=where,
        gpu_name=g.get("name", str),
        aliases=tuple(aliases),
        interconnect=g.get("interconnect", str, choices=("nvlink", "pcie")),
        memory_gib=_value(g.get("memory_gib", dict), where, "gpu.memory_gib", POSITIVE),
        intra_node_gbps=_value(g.get("intra_node_gbps", dict), where, "gpu.intra_node_gbps", POSITIVE),
        peak_tflops=peaks,
        hbm_gbps=_value(g.get("hbm_gbps", dict), where, "gpu.hbm_gbps", POSITIVE),
        collectives=colls,
        network=network,
        activation=_activation(act_raw, where, "memory.activation_peak") if act_raw else None,
        runtime_overhead_gib=_value(mem.get("runtime_overhead_gib", dict), where, "memory.runtime_overhead_gib", NONNEG),
        fragmentation_frac=_value(mem.get("fragmentation_frac", dict), where, "memory.fragmentation_frac", FRACTION),
        prefill_efficiency=_curve(comp.get("prefill_efficiency", dict), where, "compute.prefill_efficiency"),
        decode_efficiency=_curve(comp.get("decode_efficiency", dict), where, "compute.decode_efficiency"),
        provenance=top.get("provenance", dict, {}),
        serving=serving,
        engine_allreduce=engine_allreduce,
        prefill_elementwise_passes=(_value(comp.data["prefill_elementwise_passes"], where,
                                           "compute.prefill_elementwise_passes", NONNEG)
                                    if "prefill_elementwise_passes" in comp.data else None),
        engine_memory={rt: parse_engine_memory(mem.data[rt], where, rt, _value, SOURCES)
                       for rt in RUNTIMES if rt in mem.data},
        ops=parse_ops(top.data["ops"], where) if "ops" in top.data else {},
        raw=data,
        compute_capability=(_value(g.data["compute_capability"], where, "gpu.compute_capability", POSITIVE)
                            if "compute_capability" in g.data else None),
        memory_cuda_total_gib=(_value(g.data["memory_cuda_total_gib"], where, "gpu.memory_cuda_total_gib",
                                      POSITIVE) if "memory_cuda_total_gib" in g.data else None),
    )


def parse_engine_section(data: dict, where: str, runtime: str = "vllm"):
    """One ``memory.<runtime>`` section as a profile holds it (calibrate's vLLM fit reads its own
    section back this way to take the solver's corners of it)."""
    return parse_engine_memory(data, where, runtime, _value, SOURCES)


def load_profile(path: str | Path) -> Profile:
    return parse_profile(load_json(path), str(path))


def load_profiles(paths: list[str]) -> list[Profile]:
    """Each entry a profile file or a folder of ``*.json`` profiles. Explicit files come
    first and are marked so: ``profile_for`` prefers them to a folder's."""
    files, globbed = [], []
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            found = sorted(pp.glob("*.json"))
            if not found:
                raise InputError(str(pp), "", "folder holds no *.json profiles")
            globbed.extend(dataclasses.replace(load_profile(f), from_folder=True) for f in found)
        else:
            files.append(load_profile(pp))
    return files + globbed


def profile_for(gpu: str, profiles: list[Profile], where: str = "") -> Profile:
    """The profile of GPU type ``gpu``: an explicit file beats a folder's; two candidates of
    the same kind (two files, or two profiles in folders) are an error naming both."""
    found = [p for p in profiles if p.matches(gpu)]
    explicit = [p for p in found if not p.from_folder]
    tier = explicit or found
    paths = list(dict.fromkeys(str(Path(p.path)) for p in tier))
    if len(paths) > 1:
        kind = "files" if explicit else "profiles in the --profile folder(s)"
        raise InputError(where or paths[0], "gpu", f"{len(paths)} {kind} describe GPU {gpu!r}: {' and '.join(paths)}; "
                                                   "pass the one to use with --profile FILE (a file beats a folder)")
    if tier:
        return tier[0]
    have = ", ".join(p.gpu_name for p in profiles) or "none"
    raise InputError(where, "gpu", f"no profile for GPU {gpu!r}; profiles given: {have}")
