"""Fit ``memory.vllm`` (solver/cost/engine_memory.py) from vLLM start-up memory points.

Points are rows in the columns of shared/data/vllm_memory/logs.csv (``calibrate
import-vllm-log`` writes the same). Per engine family (V0 < 0.8 <= V1: the profiling code
differs) the fit is, in order:

1. activation phases: ``mlp`` = ``MLP_COUNT`` (checked against the rows that print it);
   ``sampler`` c_v = mean of printed peak / (R x V x 4) over rows whose peak exceeds the MLP
   phase by > 5% (0 when none);
2. non-torch memory per GPU: ``base`` = mean over its single-GPU rows, ``tp_extra`` = mean
   over its TP >= 2 rows minus base (the family mean where a GPU has none); rows that print no
   non-torch figure give it as the residual gpu_memory_utilization x total - weights (as
   logged) - KV - predicted activation peak.

Every row is then predicted end to end (weights from solver.cost.memory, not the log) and
``kv_cache_gib`` per GPU compared, fit rows and held-out rows apart. No safety factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from calibrate.memory.phases import predict
from calibrate.memory.vllm_points import INTERCONNECT, Case, is_held, parse_holdout, read_points, resolve
from solver.cost import engine_settings as es
from solver.cost import intervals
from solver.cost.engine_memory import flashinfer_at, kv_cache_bytes, sampler_phases
from solver.errors import InputError
from solver.inputs.profile import parse_engine_section
from solver.units import GIB


# The MLP phase of vLLM's dummy forward, counted: residual, normed hidden state and the
# down-projection output (3 x h), gate_up output and its SiLU-and-mul product (3 x f/t; vLLM's
# fused kernels keep no fp32 norm temporaries). The two RTX 3090 rows (#10517, 20,000 and
# 29,000 tokens) print 2.07 and 2.99 GiB: 13.5 units of T*h*p = 3 + 3 x 3.5, to 0.5%. The
# points hold one model shape per TP at most, so the count is not refitted from them.
MLP_COUNT = {"c_h": 3.0, "c_f_t": 3.0}
# CUDA-graph memory. From 0.20 vLLM measures it before sizing the KV cache: the free-memory drop of
# the largest capture per mode, max over modes, plus (graphs - 1) x the second capture's drop per
# mode (0.27.1 v1/worker/gpu_model_runner.py:6645-6813 profile_cudagraph_memory). The shared
# rows log only 0.10's PIECEWISE capture totals on one model (0.50 TP1, 0.65 TP2), which do not
# identify the pool per capture size, mode and TP, so the amount is a `default` whose plausible
# range spans the public logs, and the interval carries it.
GRAPHS_DEFAULT_GIB = (0.5, "With no logged capture: the 0.10.1.1 A100 TP1 capture (shared rows 17-18)")
GRAPHS_PLAUSIBLE_GIB = (0.17, 2.46, "public logs: 0.17 GiB estimated (vLLM 0.2x, Qwen TP4 on RTX 3090s, "
                                    "noonghunna/club-3090#127) to 2.46 GiB (vllm-project/vllm#7553: 0.5.4, "
                                    "Yi-34B TP4 on RTX 4090s, nvidia-smi with graphs minus --enforce-eager)")


@dataclass
class FamilyFit:
    family: str
    phases: dict
    non_torch: dict           # GPU name (or "*": the family mean) -> {"base", "tp_extra"} GiB
    fit_cases: list
    held_cases: list
    how: list = field(default_factory=list)
    graphs_gib: float = 0.0   # the profile's cudagraph_gib (engine_section): median of the logged captures

    def nt_gib(self, gpu: str, tp: int, interconnect: str | None = None,
               version: tuple[int, int] | None = None) -> float:
        """Non-torch GiB: the GPU's own fit, else the mean over GPUs of its interconnect class
        (``tp_extra`` 0 for a PCIe class with no TP >= 2 row: no custom all-reduce buffers);
        the extra only where the version counts the communicators (es.comm_in_non_torch)."""
        return sum(self.nt_parts(gpu, tp, interconnect, version))

    def nt_parts(self, gpu: str, tp: int, interconnect: str | None = None,
                 version: tuple[int, int] | None = None) -> tuple[float, float]:
        """(base, the TP >= 2 extra where counted, else 0) GiB of ``nt_gib``."""
        own = self.non_torch.get(gpu, {})
        cls = self.class_mean(interconnect or INTERCONNECT.get(gpu, ""))
        base = own.get("base", cls["base"])
        extra = own.get("tp_extra")
        if extra is None:
            extra = cls["tp_extra"]
        return base, (extra if tp >= 2 and es.comm_in_non_torch(version)[0] else 0.0)

    def class_mean(self, interconnect: str) -> dict:
        same = [v for g, v in self.non_torch.items() if g != "*" and INTERCONNECT.get(g) == interconnect]
        extras = [v["tp_extra"] for v in same if v.get("tp_extra") is not None]
        base = _mean([v["base"] for v in same]) if same else self.non_torch["*"]["base"]
        extra = _mean(extras) if extras else (0.0 if interconnect == "pcie" else self.non_torch["*"]["tp_extra"] or 0.0)
        return {"base": base, "tp_extra": extra}


def _mean(vals: list[float]) -> float | None:
    return float(np.mean(vals)) if vals else None


def fit_family(family: str, fit: list[Case], held: list[Case]) -> FamilyFit:
    how = []
    mlp = dict(MLP_COUNT)
    # only V0 rows fit c_v: V1's sampler phase is its code path (Case.phases)
    over = [c for c in fit if c.row.get("activation_peak_gib") is not None and not es.is_v1(c.version)
            and c.row["activation_peak_gib"] * GIB > 1.05 * predict({"mlp": mlp}, c.terms())[0]
            and c.terms()["c_v"] > 0]
    c_v = _mean([c.row["activation_peak_gib"] * GIB / c.terms()["c_v"] for c in over]) or 0.0
    how.append(f"sampler phase c_v = {c_v:.3f} from {len(over)} rows whose printed peak exceeds the MLP phase"
               + (" (lines " + ", ".join(str(c.row['line']) for c in over) + ")" if over else
                  "; none: c_v = 0 (not separable from non-torch memory in these rows)"))
    phases = {"mlp": mlp, "sampler": {"c_v": c_v}}
    if any(es.is_v1(c.version) for c in fit):
        how.append("V1 rows: sampler phase from the version's code path (engine_settings.sampler_bytes_per_logit)")
    graphs = [c.row["cudagraph_gib"] for c in fit + held if c.row.get("cudagraph_gib")]
    graphs_gib = float(np.median(graphs)) if graphs else GRAPHS_DEFAULT_GIB[0]
    by_gpu: dict = {}
    for c in fit:
        nt = c.row.get("non_torch_gib")
        if nt is None and c.row.get("kv_cache_gib") is not None and c.row.get("weights_gib") is not None:
            peak = predict(c.phases(phases), c.terms())[0]
            # vLLM's rule solved for non-torch memory: what the budget leaves with none, minus KV
            nt = kv_cache_bytes(c.total_gib * GIB, c.util, c.row["weights_gib"] * GIB, 0.0, peak,
                                c.graphs_gib(graphs_gib) * GIB, c.runner_buffers_bytes()) / GIB - c.row["kv_cache_gib"]
            how.append(f"line {c.row['line']}: non-torch {nt:.3f} GiB as the residual of the budget")
        if nt is not None:  # from 0.11 a TP >= 2 row's non-torch holds no communicators: a base figure
            multi = c.tp >= 2 and es.comm_in_non_torch(c.version)[0]
            by_gpu.setdefault(c.row["gpu"], {1: [], 2: []})[2 if multi else 1].append(nt)
    non_torch = {}
    for gpu, d in by_gpu.items():
        base = _mean(d[1])
        if base is not None:
            multi = _mean(d[2])
            non_torch[gpu] = {"base": base, "tp_extra": max(0.0, multi - base) if multi is not None else None}
    if not non_torch:
        raise InputError("points", "non_torch_gib", f"no single-GPU {family} row gives non-torch memory")
    extras = [v["tp_extra"] for v in non_torch.values() if v["tp_extra"] is not None]
    non_torch["*"] = {"base": _mean([v["base"] for v in non_torch.values()]), "tp_extra": _mean(extras)}
    return FamilyFit(family, phases, non_torch, fit, held, how, graphs_gib)


def predict_case(c: Case, ff: FamilyFit, nt_gib: float | None = None, graphs_gib: float | None = None,
                 flashinfer_unlogged: bool | None = None) -> dict:
    """GiB per GPU: weights (solver's formula), non-torch, activation peak, KV. The keywords
    put the fit's defaults at an interval corner (kv_interval): non-torch GiB, the CUDA-graph
    amount where the row logs none, FlashInfer where the log does not say which sampler ran."""
    peak, phase = predict(c.phases(ff.phases, flashinfer_unlogged), c.terms())
    nt = ff.nt_gib(c.row["gpu"], c.tp, version=c.version) if nt_gib is None else nt_gib
    w = c.weights_bytes()
    graphs = c.graphs_gib(ff.graphs_gib if graphs_gib is None else graphs_gib)
    kv = kv_cache_bytes(c.total_gib * GIB, c.util, w, nt * GIB, peak, graphs * GIB, c.runner_buffers_bytes()) / GIB
    return {"weights_gib": w / GIB, "non_torch_gib": nt, "activation_peak_gib": peak / GIB, "phase": phase,
            "kv_cache_gib": kv}


def kv_interval(c: Case, ff: FamilyFit, all_fits: dict, holdout_spec: str = "") -> dict:
    """{"low", "expected", "high", "defaults"} KV GiB per GPU of ``c``, over the corners the
    solver takes (solver/cost/intervals.py) of what this fit would ship for the row's GPU and
    version: the ``memory.vllm`` section (engine_section) read back as a profile holds it and
    put at each side by ``intervals.engine_end`` -- non-torch ``base`` / ``tp_extra`` and the
    CUDA-graph amount, each where it is a `default`, at its plausible end -- and, as
    ``engine_memory.profile_run_peak`` does, the high corner on FlashInfer's sampler where the
    log does not say which ran. The row's own settings, total and logged figures are known:
    they do not widen it. Both ends then move out by the section's ``fit_error.held_out_max_abs_gib``
    (the family's held-out reservation error), as the solver's KV interval does: for a held-out
    row that width is made of the held-out rows' own errors, so only rows never fitted (the
    bench's judge set) test it independently. No serving fit spread (intervals.fit_spread)."""
    gpu = c.row["gpu"]
    section = engine_section(ff, lambda g: g == gpu, "%d.%d" % c.version, "vllm_fit", holdout_spec, all_fits,
                             INTERCONNECT.get(gpu, ""))
    em = parse_engine_section(section, f"kv_interval line {c.row['line']}")
    nt, base, extra = em.non_torch_gib, *ff.nt_parts(gpu, c.tp, version=c.version)
    counted = c.tp >= 2 and es.comm_in_non_torch(c.version)[0]
    defaults = [f"non_torch_gib.{k}" for k in ("base", "tp_extra")
                if nt[k].source == "default" and (k == "base" or counted)]
    if c.graphs_gib(0.0) != c.graphs_gib(1.0):
        defaults.append("cudagraph_gib (in the budget, not logged)")
    if es.is_v1(c.version) and c.flashinfer_logged() is None and (
            es.sampler_bytes_per_logit(c.version, c.sampler_rows, True, c.v2, c.tp)[0]
            != es.sampler_bytes_per_logit(c.version, c.sampler_rows, None, c.v2, c.tp)[0]):
        defaults.append("sampler path (FlashInfer not logged)")
    exp = predict_case(c, ff)["kv_cache_gib"]
    ends = []
    for side in intervals.SIDES:
        end = intervals.engine_end(em, side)
        b = end.non_torch_gib["base"].value if nt["base"].source == "default" else base
        x = (end.non_torch_gib["tp_extra"].value if nt["tp_extra"].source == "default" else extra) if counted else 0.0
        ends.append(predict_case(c, ff, b + x, end.cudagraph_gib.value, flashinfer_at(side))["kv_cache_gib"])
    err = intervals.reservation_error_gib(em)  # the fit's held-out error: a calibrated row keeps it
    return {"low": min(ends + [exp]) - err, "expected": exp, "high": max(ends + [exp]) + err,
            "defaults": defaults, "fit_error_gib": err}


def kv_error(c: Case, ff: FamilyFit) -> float | None:
    meas = c.kv_measured_gib()
    if meas is None or meas <= 0:
        return None
    return predict_case(c, ff)["kv_cache_gib"] / meas - 1


def kv_error_gib(c: Case, ff: FamilyFit) -> float | None:
    """Predicted minus logged KV GiB per GPU. The row's budget (gpu_memory_utilization x total)
    is known, so this is minus the error of what the fit reserves out of it: weights (the
    solver's formula), non-torch memory, the activation peak and graphs counted in the budget."""
    meas = c.kv_measured_gib()
    if meas is None or meas <= 0:
        return None
    return predict_case(c, ff)["kv_cache_gib"] - meas


def reservation_error(ff: FamilyFit, holdout_spec: str) -> dict:
    """``memory.vllm.fit_error``: max and mean |reservation error| GiB per GPU over the family's
    fit rows and held-out rows (docs/profile.md). The solver widens a KV interval by
    ``held_out_max_abs_gib`` (solver/cost/intervals.py reservation_error_gib)."""
    out = {"metric": "|predicted - logged KV cache GiB per GPU| = |error of the reserved GiB| (the budget is known)",
           "family": ff.family, "holdout": holdout_spec}
    for tag, cases in (("fit", ff.fit_cases), ("held_out", ff.held_cases)):
        a = [abs(e) for e in (kv_error_gib(c, ff) for c in cases) if e is not None]
        out[f"{tag}_rows"] = len(a)
        out[f"{tag}_max_abs_gib"] = round(float(np.max(a)), 4) if a else None
        out[f"{tag}_mean_abs_gib"] = round(float(np.mean(a)), 4) if a else None
    return out


def relerr(errs: list[float]) -> dict:
    a = [abs(e) for e in errs if e is not None and math.isfinite(e)]
    return {"n": len(a), "mean_rel": round(float(np.mean(a)), 4) if a else None,
            "max_rel": round(float(np.max(a)), 4) if a else None}


def fit_points(paths: list[str], holdout_spec: str) -> tuple[dict, list[dict]]:
    """(family -> FamilyFit, skipped rows with reasons) over every point CSV."""
    clauses = parse_holdout(holdout_spec)
    cases: dict = {"device_wide": ([], []), "since_init": ([], [])}
    skipped = []
    for p in paths:
        for r in read_points(p):
            c, why = resolve(r)
            if c is None:
                skipped.append({**r, "why": why})
                continue
            informs = r.get("activation_peak_gib") is not None or r.get("non_torch_gib") is not None or (
                r.get("kv_cache_gib") is not None and r.get("weights_gib") is not None)
            # a row that gives nothing to fit (only KV tokens or blocks) can only judge the fit
            cases[c.family][1 if is_held(r, clauses) or not informs else 0].append(c)
    fits = {fam: fit_family(fam, fit, held) for fam, (fit, held) in cases.items() if fit}
    return fits, skipped


def _rec(value: float, source: str, ref: str, plausible: tuple | None = None, note: str = "") -> dict:
    out = {"value": round(value, 4), "source": source, "ref": ref}
    if plausible is not None:
        out["plausible"] = [round(min(plausible[0], value), 4), round(max(plausible[1], value), 4)]
    if note:
        out["note"] = note
    return out


def engine_section(ff: FamilyFit, profile_gpu_matches, version: str, ref: str, holdout_spec: str,
                   all_fits: dict, interconnect: str = "nvlink") -> dict:
    """``memory.vllm`` for one GPU profile. ``profile_gpu_matches(name)`` says whether a point's
    GPU is this profile's; its own non-torch figures are ``published``, else the family mean
    is a ``default`` whose plausible range spans every GPU and engine family in the points."""
    own = next((g for g in ff.non_torch if g != "*" and profile_gpu_matches(g)), None)
    spread = [v[k] for f in all_fits.values() for g, v in f.non_torch.items() if g != "*"
              for k in ("base",) if v.get(k) is not None]
    extras = [v["tp_extra"] for f in all_fits.values() for g, v in f.non_torch.items()
              if g != "*" and v.get("tp_extra") is not None]
    fit_err = relerr([kv_error(c, ff) for c in ff.fit_cases])
    held_err = relerr([kv_error(c, ff) for c in ff.held_cases])
    err = {"metric": "|predicted/logged - 1| of KV cache GiB per GPU", "fit": fit_err, "held_out": held_err,
           "holdout": holdout_spec}
    if own:
        nt = ff.non_torch[own]
        base = _rec(nt["base"], "published", f"{ref}: mean of {own} single-GPU rows")
        extra_v = nt["tp_extra"] if nt["tp_extra"] is not None else ff.non_torch["*"]["tp_extra"] or 0.0
        extra = (_rec(extra_v, "published", f"{ref}: {own} TP >= 2 rows minus base") if nt["tp_extra"] is not None
                 else _rec(extra_v, "default", f"{ref}: mean over GPUs (none of {own} at TP >= 2)",
                           (min(extras or [0.0]), max(extras or [extra_v]))))
    else:
        cls = ff.class_mean(interconnect)
        base = _rec(cls["base"], "default", f"{ref}: mean over other GPUs' rows (none of this GPU)",
                    (min(spread), max(spread)))
        why = ("no custom all-reduce without NVLink/P2P (vllm custom_all_reduce.py): NCCL buffers only"
               if interconnect == "pcie" else f"mean over other {interconnect} GPUs' TP >= 2 rows")
        extra = _rec(cls["tp_extra"], "default", f"{ref}: {why}",
                     (0.0, 0.5 if interconnect == "pcie" else max(extras or [cls["tp_extra"]])))
    graphs = [c.row["cudagraph_gib"] for c in ff.fit_cases + ff.held_cases if c.row.get("cudagraph_gib")]
    v = es.parse_version(version)
    phases = sampler_phases(dict(ff.phases), v, 256)  # what the solver takes for this version
    return {
        "version": version,
        "non_torch_gib": {"base": base, "tp_extra": extra,
                          "note": "memory outside torch's allocator after the profile run: CUDA context, NCCL "
                                  "communicators, custom all-reduce buffers (TP >= 2)"},
        "activation_peak": {
            "model": "phases_max_v1", "runtime": f"vllm {version}",
            "phases": {n: {k: round(x, 6) for k, x in c.items()} for n, c in phases.items()},
            "source": "published", "ref": ref, "fit_error": err,
            "note": "profile run: one dummy forward of max_num_batched_tokens tokens (MLP phase, counted and "
                    "checked on the logs) and the sampler over min(max_num_seqs, max_num_batched_tokens) rows "
                    "of fp32 logits. " + " | ".join(ff.how)},
        "cudagraph_gib": _rec(ff.graphs_gib, "default",
                              f"{ref}: median of {len(graphs)} logged 'Graph capturing finished ... took X GiB' "
                              f"(vLLM 0.10 PIECEWISE captures); from 0.20 vLLM subtracts its own estimate, "
                              f"which these rows do not identify" + ("" if graphs else f". {GRAPHS_DEFAULT_GIB[1]}")
                              + f"; plausible: {GRAPHS_PLAUSIBLE_GIB[2]}", GRAPHS_PLAUSIBLE_GIB[:2]),
        "fragmentation_frac": _rec(0.0, "published", "vLLM subtracts torch's allocated peak, not reserved memory "
                                                     "(Worker.determine_available_memory): no fragmentation term"),
        "cudagraph_in_budget": False,
        "fit_error": reservation_error(ff, holdout_spec),
        "note": "vLLM's own accounting (docs/vllm_memory.md): kv = gpu_memory_utilization x total - weights - "
                "non_torch - activation_peak; CUDA graphs are captured after the KV cache is sized",
    }
