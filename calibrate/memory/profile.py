"""The ``memory`` and ``compute`` sections fitted from raw memory/time rows.

``fit_into_profile`` reads nothing but its arguments and the profile it updates: it fits the
activation-peak model and the prefill efficiency curve (calibrate/memory/fit.py) and merges
the ``memory`` and ``compute`` sections through ``profile_io`` -- collectives and network are
never touched. ``calibrate fit-memory`` and ``scripts/profile_memory.py`` both call it.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from calibrate.defaults import skeleton
from calibrate.memory import fit as mem_fit
from calibrate.profile_io import command_line, merge_sections, read_profile_dict, write_profile
from solver.errors import InputError
from solver.units import GIB

DEFAULT_HOLDOUT = "tp=2;batch=8,seq=2048;batch=1,seq=8192"

# What ``peak_bytes - kv_bytes`` is, per runtime family (the fitted quantity; docs/profile.md).
_TARGET_NOTES = {
    "transformers": (
        "fitted quantity: max_memory_allocated during one prefill forward of the HF model body (embeddings, "
        "L decoder layers, final norm; no LM head) minus memory_allocated before it, minus the KV cache it "
        "creates. It includes the embedding output, which HF keeps alive as inputs_embeds for the whole "
        "forward, and the output hidden states. Minus KV, the peak does not grow with L for L >= 2: the "
        "4-layer rows are the 1-layer rows + exactly T*h*p (inputs_embeds beside the running hidden state), "
        "so the fit uses stages of >= 2 layers and over-predicts 1-layer stages by T*h*p (safe side)."),
    "native": (
        "fitted quantity: max_memory_allocated during one forward of one TP-sharded decoder layer minus "
        "memory_allocated before it (weights and the input hidden states excluded), minus the K/V it "
        "returns; includes the layer output. A stage that keeps its input alive adds T*h*p."),
}


def load_rows(paths: list[str]) -> tuple[list[dict], list[dict]]:
    rows, metas = [], []
    for p in paths:
        rows += mem_fit.read_raw(p)
        meta = Path(str(p) + ".meta.json")
        metas.append(json.loads(meta.read_text()) if meta.exists() else {"raw": str(p)})
    return rows, metas


def _pick_runtime(rows: list[dict], wanted: str | None, flag: str) -> str:
    have = sorted({r["runtime"] for r in rows})
    if wanted is None:
        if len(have) != 1:
            raise InputError(flag, "", f"raw rows hold several runtimes ({', '.join(have)}); name one")
        return have[0]
    if wanted not in have:
        raise InputError(flag, wanted, f"no rows for this runtime; have {', '.join(have)}")
    return wanted


def _source(rows: list[dict]) -> str:
    """``measured`` only if every row used is; CPU dry runs are ``synthetic``."""
    srcs = {r.get("source") or "synthetic" for r in rows}
    return "measured" if srcs == {"measured"} else "synthetic"


def _ref(rows: list[dict], metas: list[dict], runtime: str) -> str:
    data = sorted({m.get("data") or m.get("raw", "") for m in metas if m.get("runtime") in (None, runtime)})
    dev = sorted({r.get("device") or "" for r in rows})
    return f"runtime {runtime} on {', '.join(dev)}; data: {'; '.join(d for d in data if d)}"


def memory_section(rows: list[dict], metas: list[dict], runtime: str, holdout_spec: str,
                   min_layers: int, mlp: str, attn_term: bool,
                   act_model: str = "phases_max_v1") -> tuple[dict, mem_fit.ActivationFit]:
    holdout = mem_fit.parse_holdout(holdout_spec)
    sel = [r for r in rows if r["runtime"] == runtime and r["phase"] == "prefill"
           and r["layers"] >= min_layers and bool(r["gated_mlp"]) == (mlp == "gated")]
    if act_model == "phases_max_v1":
        from calibrate.memory.phases import phases_record
        return {"activation_peak": phases_record(sel, holdout, holdout_spec, _source, _ref, metas, runtime,
                                                 _TARGET_NOTES.get(runtime.split("-")[0], ""),
                                                 {"min_layers": min_layers, "mlp": mlp})}, None
    fit = mem_fit.fit_activation(sel, holdout, attn_term=attn_term)
    used = fit.fit_rows + fit.held_rows
    family = runtime.split("-")[0]
    dropped = "; ".join(f"{k}=0: {v}" for k, v in fit.dropped.items())
    act = {
        "model": "tokens_linear_v1", "runtime": runtime, "coef": {k: round(v, 6) for k, v in fit.coef.items()},
        "source": _source(used), "ref": _ref(used, metas, runtime),
        **mem_fit.activation_fit_fields(used, fit.held_err, fit.fit_err, holdout_spec,
                                        {"min_layers": min_layers, "mlp": mlp}),
        "note": (f"{_TARGET_NOTES.get(family, 'fitted quantity: peak_bytes - kv_bytes of the raw rows.')} "
                 f"Rows: {mlp} MLP, layers >= {min_layers}; least squares on relative error. {dropped}"),
    }
    section = {"activation_peak": act}
    over = [r["nontorch_bytes"] for r in sel if r.get("nontorch_bytes") is not None]
    if over:  # measured by mem_probe (mem_get_info); the shared data has no such column
        section["runtime_overhead_gib"] = {
            "value": round(max(over) / GIB, 4), "source": _source(sel), "ref": _ref(sel, metas, runtime),
            "range": {"gib": [round(min(over) / GIB, 4), round(max(over) / GIB, 4)]},
            "note": "max over grid points of (total - free from torch.cuda.mem_get_info) - memory_reserved(): "
                    "CUDA context, kernel images, NCCL/cuBLAS buffers outside the caching allocator"}
    slack = [r["reserved_slack_bytes"] / mem_fit.activation_target(r) for r in sel
             if r.get("reserved_slack_bytes") is not None and mem_fit.activation_target(r) > 0]
    if slack:
        section["fragmentation_frac"] = {
            "value": round(mem_fit.median(slack), 4), "source": _source(sel), "ref": _ref(sel, metas, runtime),
            "range": {"frac": [round(min(slack), 4), round(max(slack), 4)]},
            "note": "median over grid points of (max_memory_reserved - max_memory_allocated) / (peak - kv)"}
    return section, fit


def compute_section(rows: list[dict], metas: list[dict], runtime: str, holdout_spec: str, min_layers: int,
                    peak_tflops: float, hbm_gbps: float, elementwise: bool) -> tuple[dict, mem_fit.PrefillFit]:
    sel = [r for r in rows if r["runtime"] == runtime and r["phase"] == "prefill" and r["layers"] >= min_layers]
    holdout = mem_fit.parse_holdout(holdout_spec)
    fit = mem_fit.fit_prefill(sel, holdout, peak_tflops * 1e12, hbm_gbps * 1e9, elementwise=elementwise)
    used = fit.fit_rows + fit.held_rows
    held, infit = mem_fit.error_summary(fit.held_err), mem_fit.error_summary(fit.fit_err)
    err = {"max_rel": held["max_rel"], "mean_rel": held["mean_rel"], "held_out": held["n"],
           "fit_points": infit["n"], "in_fit_max_rel": infit["max_rel"],
           "metric": "|predicted/measured - 1| of prefill time on rows held out of the fit",
           "holdout": holdout_spec, "selection": {"min_layers": min_layers}, "runtime": runtime}
    rng = mem_fit.value_range(used, layer_gflop=lambda r: round(mem_fit.layer_gflop(r), 3), tp="tp", hidden="hidden",
                              tokens=lambda r: r["batch"] * r["seq"])
    ref = _ref(used, metas, runtime)
    methods = ", ".join(sorted({r.get("time_method") or "?" for r in used}))
    curve = {"kind": "saturating" if fit.x_half_gflop > 0 else "constant", "x_quantity": "layer_gflop",
             "source": _source(used), "ref": ref, "range": rng, "fit_error": err,
             "note": (f"achieved / peak ({peak_tflops:g} TFLOP/s) FLOP rate of prefill matmuls + causal attention "
                      f"(FLOPs: design.md section 5, calibrate.memory.fit.prefill_flops); timing: {methods}. "
                      + ("Fitted jointly with compute.prefill_elementwise_passes: use both."
                         if elementwise else "Curve alone (no unsharded term)."))}
    if fit.x_half_gflop > 0:
        curve.update(eff_max=round(fit.eff_max, 4), x_half=round(fit.x_half_gflop, 3))
    else:
        curve["value"] = round(fit.eff_max, 4)
    section = {"prefill_efficiency": curve}
    if elementwise:
        section["prefill_elementwise_passes"] = {
            "value": round(fit.passes, 3), "source": _source(used), "ref": ref, "range": rng, "fit_error": err,
            "note": "per layer, prefill adds passes * T*h*p_act / (hbm_gbps*1e9) seconds: full HBM passes over "
                    "the unsharded T x h activation (norms, residual adds, rotary) that do not shrink with TP"}
    return section, fit


def _provenance(metas: list[dict], runtimes: set[str]) -> dict:
    use = [m for m in metas if m.get("runtime") in runtimes or "runtime" not in m] or metas
    keys = ("device", "torch", "cuda", "nccl", "transformers", "data")
    prov = {"created": _dt.date.today().isoformat(), "command": command_line(), "runtimes": sorted(runtimes)}
    for k in keys:
        vals = sorted({str(m[k]) for m in use if m.get(k)})
        if vals:
            prov[k] = "; ".join(vals)
    return prov


def decode_section(rows: list[dict], metas: list[dict], runtime: str, holdout_spec: str, hbm_gbps: float) -> dict:
    """``compute.decode_efficiency`` from timed decode rows; {} when there are none (the
    shared H100 data has none usable: its decode times are launch/host-bound)."""
    sel = [r for r in rows if r["runtime"] == runtime and r["phase"] == "decode" and r.get("time_ms")]
    if len(sel) < 3:
        return {}
    eff_max, x_half, fit_err, held_err = mem_fit.fit_decode(sel, mem_fit.parse_holdout(holdout_spec), hbm_gbps * 1e9)
    held, infit = mem_fit.error_summary(held_err), mem_fit.error_summary(fit_err)
    return {"decode_efficiency": {
        "kind": "saturating", "x_quantity": "bytes", "eff_max": round(min(eff_max, 1.0), 4), "x_half": round(x_half),
        "source": _source(sel), "ref": _ref(sel, metas, runtime),
        "range": mem_fit.value_range(sel, bytes=lambda r: round(mem_fit.decode_read_bytes(r)), tp="tp"),
        "fit_error": {"max_rel": held["max_rel"], "mean_rel": held["mean_rel"], "held_out": held["n"],
                      "fit_points": infit["n"], "in_fit_max_rel": infit["max_rel"], "holdout": holdout_spec,
                      "runtime": runtime, "metric": "|predicted/measured - 1| of decode step time, held-out rows"},
        "note": "achieved / nominal HBM bandwidth of one decode step; x = weights + K/V bytes of one layer on one GPU"}}


def fit_into_profile(rows: list[dict], metas: list[dict], out_path: str, *, gpu: str | None = None,
                     memory_runtime: str | None = None, compute_runtime: str | None = None,
                     holdout: str = DEFAULT_HOLDOUT, min_layers: int = 1, compute_min_layers: int = 1,
                     mlp: str = "gated", attn_term: bool = False, elementwise: bool = True,
                     raw_paths: list[str] | None = None, rates: tuple[float, float] | None = None,
                     act_model: str = "phases_max_v1") -> dict:
    """Fit and merge ``memory`` + ``compute`` into ``out_path`` (created from datasheet
    defaults when missing and ``gpu`` is given). Returns the profile dict written. ``rates``
    (peak TFLOP/s, HBM GB/s) replaces the datasheet pair: only for the CPU dry run, whose
    efficiencies are relative to the CPU it ran on (and whose decode fit is skipped)."""
    mem_rt = _pick_runtime(rows, memory_runtime, "--memory-runtime")
    comp_rt = _pick_runtime(rows, compute_runtime or mem_rt, "--compute-runtime")
    base = read_profile_dict(out_path)
    if base is None:
        if not gpu:
            raise InputError(out_path, "", "does not exist; pass --gpu to start it from datasheet defaults")
        base = skeleton(gpu, command=command_line())
    g = base.get("gpu", {})
    try:
        peak = g["peak_tflops"].get(rows[0]["dtype"], g["peak_tflops"].get("fp16"))["value"]
        hbm = g["hbm_gbps"]["value"]
    except (KeyError, TypeError):
        raise InputError(out_path, "gpu", "needs peak_tflops.<dtype> and hbm_gbps to fit efficiency") from None
    if rates:
        peak, hbm = rates
    mem, _ = memory_section(rows, metas, mem_rt, holdout, min_layers, mlp, attn_term, act_model)
    comp, _ = compute_section(rows, metas, comp_rt, holdout, compute_min_layers, peak, hbm, elementwise)
    if not rates:
        comp.update(decode_section(rows, metas, comp_rt, holdout, hbm))
    else:
        comp["prefill_efficiency"]["note"] += f" DRY RUN: relative to {peak:.3g} TFLOP/s (10x the best CPU rate)."
    prov = _provenance(metas, {mem_rt, comp_rt})
    prov["raw"] = list(raw_paths or [])  # calibrate report re-reads these for predicted-vs-measured
    out = merge_sections(base, {"memory": mem, "compute": comp, "provenance": prov}, ("memory", "compute"))
    if "nothing measured yet" in out.get("provenance", {}).get("summary", ""):
        out["provenance"]["summary"] = "datasheet numbers, defaults and the fits listed in provenance.sections"
    write_profile(out_path, out)
    return out
