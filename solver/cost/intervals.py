"""Low / expected / high predictions from provenance (docs/metrics.md, "Intervals").

Every profile number marked ``default`` is an assumption; it carries a plausible range (its
own ``plausible`` [low, high], a default curve's ``plausible_scale``, else the relative
spread of ``SPREAD`` below). The cost model is monotone in each of them (a faster GPU, a
cheaper overhead never slows a deployment), so evaluating it at two corners bounds it:

* ``low``: every default at its pessimistic end (rates low, overheads and memory high);
* ``high``: every default at its optimistic end.

A calibrated number has no range: it does not widen the interval. A prediction whose two
corners differ rests on a default and is flagged *uncalibrated*. Where the profile carries
an end-to-end fit of the serving model (``serving.*.fit_error``, held-out error on real
deployments), the corners are widened by that measured held-out max error too -- the model's
own validated error, the only spread a fully calibrated prediction keeps. A KV-cache interval
(``kv_interval``) is widened instead by the engine memory fit's held-out error, absolute GiB of
what the engine reserves per GPU (``memory.<runtime>.fit_error.held_out_max_abs_gib``).

Three parts of the serving model also move at the corners (``Profile.corner``), each because
the data does not identify it:

* the engine all-reduce fit (``serving.tp_allreduce``) pins t(S) only at the mean messages
  of its fit rows (``message_bytes``); a call of another size takes the slower (``low``) or
  faster (``high``) of the fit's extrapolation and the profile's imported all-reduce table
  at that size (``solver.cost.ops.compose._allreduce``, ``comm.fit_pins``);
* vLLM V1 allocates KV blocks as tokens are written (``solver.cost.kv_admission``); the
  expected value reserves whole contexts (the planner's wave model), the ``high`` corner
  plays the V1 schedule where it is faster (``ServingConfig.kv_on_demand``);
* vLLM 0.8-0.11 sample on FlashInfer only where it is installed (``engine_settings``
  ``sampler_path``); the expected value and ``low`` take PyTorch's sort (pip's default
  install), the ``high`` corner FlashInfer's smaller profile-run peak
  (``solver.cost.engine_memory.profile_run_peak``).
"""

from __future__ import annotations

from dataclasses import replace

from solver.inputs.profile import Curve, Profile, Value

# Relative [low, high] multipliers of a `default` value that gives no `plausible` range
# of its own, and why. Names are profile fields (network keys by name).
SPREAD = {
    "peak_tflops": (0.5, 1.0, "a default peak is a sibling part's datasheet figure: an upper bound"),
    "hbm_gbps": (0.8, 1.0, "datasheet bandwidth is an upper bound"),
    "intra_node_gbps": (0.5, 1.0, "nominal link rate is an upper bound"),
    "prefill_efficiency": (0.6, 1.4, "measured H100 prefill layers reach 0.46-0.69 of peak (shared/data/h100); "
                                     "small or sharded GEMMs less"),
    "decode_efficiency": (0.5, 1.2, "decode reaches 35-85% of nominal HBM bandwidth across public kernels"),
    "runtime_overhead_gib": (0.3, 3.6, "non-torch memory 0.3-3.6 GiB in public vLLM logs (docs/vllm_memory.md)"),
    "fragmentation_frac": (0.0, 4.0, "0-20% reserved-minus-allocated slack"),
    "nic_efficiency": (0.5, 1.0, "achieved / nominal NIC bandwidth"),
    "intra_node_p2p_efficiency": (0.5, 1.0, "achieved / nominal peer-to-peer bandwidth"),
    "intra_node_alpha_us": (0.5, 4.0, "per-message latency of NCCL inside a node, 5-40 us"),
    "inter_node_alpha_us": (0.5, 4.0, "per-message latency across nodes, 20-160 us"),
    "memory_cuda_total_gib": (0.985, 1.0, "a missing CUDA-visible total: nvidia-smi's stands in, an upper bound; "
                                          "the sourced profiles' CUDA totals sit 0.5-1.5% below it (docs/profile.md)"),
    "borrowed_allreduce": (0.5, 2.0, "an engine all-reduce fit measured at another rank count (serving."
                                     "tp_allreduce): busbw and per-hop time within 2x either way"),
}
TP_SIZES = (2, 4, 8)
# Absolute plausible ranges of the serving defaults a profile may lack (solver/cost/serving.py
# DEFAULTS assume 0): engine CPU time per step, vLLM's scheduler + sampler + detokenizer.
SERVING_PLAUSIBLE = {"decode_step_overhead_ms": (0.0, 10.0), "prefill_overhead_ms": (0.0, 50.0)}
HIGHER_IS_BETTER = {"peak_tflops", "hbm_gbps", "intra_node_gbps", "prefill_efficiency", "decode_efficiency",
                    "nic_efficiency", "intra_node_p2p_efficiency", "memory_cuda_total_gib"}
SIDES = ("low", "high")


def _end(name: str, v: Value, side: str) -> Value:
    if v.source != "default":
        return v
    if v.plausible is not None:
        lo, hi = v.plausible
    elif name in SPREAD:
        lo, hi = v.value * SPREAD[name][0], v.value * SPREAD[name][1]
    else:
        return v
    pessimistic = lo if name in HIGHER_IS_BETTER else hi
    optimistic = hi if name in HIGHER_IS_BETTER else lo
    return replace(v, value=pessimistic if side == "low" else optimistic)


def _curve_end(name: str, c: Curve, side: str) -> Curve:
    if c.source != "default":
        return c
    lo, hi = c.plausible_scale or SPREAD[name][:2]
    s = lo if side == "low" else hi
    p = dict(c.params)
    if c.kind == "constant":
        p["value"] = min(1.0, p["value"] * s)
    elif c.kind == "saturating":
        p["eff_max"] = min(1.0, p["eff_max"] * s)
    else:
        p["y"] = [min(1.0, y * s) for y in p["y"]]
    return replace(c, params=p)


def engine_end(em, side: str):
    """An engine memory section (``memory.<runtime>``) at ``side``: its `default` non-torch
    figures and CUDA-graph amount at their plausible ends (calibrate's vLLM fit takes the same)."""
    nt = {k: _end("runtime_overhead_gib", v, side) for k, v in em.non_torch_gib.items()}
    return replace(em, non_torch_gib=nt, cudagraph_gib=_end("cudagraph_gib", em.cudagraph_gib, side))


def _allreduce_ends(fits: tuple, side: str) -> tuple:
    """Measured rank counts unchanged; a missing one (which comm.tp_allreduce_s would borrow
    from the nearest) becomes an explicit `default` entry at the ``side`` end of SPREAD."""
    if not fits:
        return fits
    lo, hi = SPREAD["borrowed_allreduce"][:2]
    worse, better = (hi, lo) if side == "low" else (lo, hi)
    out = list(fits)
    for n in TP_SIZES:
        if all(f.ranks != n for f in fits):
            near = min(fits, key=lambda a: (abs(a.ranks - n), a.ranks))
            out.append(replace(near, ranks=n, hop_us=near.hop_us * worse, busbw_gbps=near.busbw_gbps * better,
                               source="default", ref=f"borrowed from the {near.ranks}-rank fit (intervals.SPREAD)",
                               message_bytes=None))
    return tuple(out)


_CORNERS: dict = {}


def corner(profile: Profile, side: str) -> Profile:
    """``profile`` with every default at its ``side`` end ("low": pessimistic)."""
    key = (id(profile), side)
    if key in _CORNERS and _CORNERS[key][0] is profile:
        return _CORNERS[key][1]
    serving = dict(profile.serving)
    for k, (lo, hi) in SERVING_PLAUSIBLE.items():
        if k not in serving:
            serving[k] = Value(hi if side == "low" else lo, "default", "intervals.SERVING_PLAUSIBLE")
    out = replace(
        profile,
        engine_allreduce=_allreduce_ends(profile.engine_allreduce, side),
        peak_tflops={k: _end("peak_tflops", v, side) for k, v in profile.peak_tflops.items()},
        hbm_gbps=_end("hbm_gbps", profile.hbm_gbps, side),
        memory_cuda_total_gib=_end("memory_cuda_total_gib", profile.cuda_total_gib(), side),
        intra_node_gbps=_end("intra_node_gbps", profile.intra_node_gbps, side),
        network={k: _end(k, v, side) for k, v in profile.network.items()},
        runtime_overhead_gib=_end("runtime_overhead_gib", profile.runtime_overhead_gib, side),
        fragmentation_frac=_end("fragmentation_frac", profile.fragmentation_frac, side),
        prefill_efficiency=_curve_end("prefill_efficiency", profile.prefill_efficiency, side),
        decode_efficiency=_curve_end("decode_efficiency", profile.decode_efficiency, side),
        serving=serving,
        engine_memory={rt: engine_end(em, side) for rt, em in profile.engine_memory.items()},
        corner=side,
    )
    _CORNERS[key] = (profile, out)
    return out


def fit_spread(profile: Profile) -> float:
    """Held-out max relative error of the profile's end-to-end serving fit (0 when none)."""
    errs = [(v.fit_error or {}).get("held_out_max_abs_rel") for v in profile.serving.values()]
    errs = [e for e in errs if isinstance(e, (int, float))]
    return max(errs) if errs else 0.0


def reservation_error_gib(em) -> float:
    """Held-out max |reservation error| GiB per GPU of an engine memory section's fit
    (``memory.<runtime>.fit_error.held_out_max_abs_gib``; 0 when the section has none)."""
    e = (em.fit_error or {}).get("held_out_max_abs_gib") if em is not None else None
    return float(e) if isinstance(e, (int, float)) else 0.0


def reserve_end(profile: Profile, side: str, runtime: str = "vllm") -> Profile:
    """``corner(profile, side)`` with the engine's reservation moved by its fit's held-out error:
    up at ``low`` (fewer KV bytes), down at ``high`` -- carried on ``non_torch_gib.base``, which
    every GPU of every stage pays, so each GPU's KV bytes move by exactly that many GiB."""
    out = corner(profile, side)
    em = out.engine_memory.get(runtime)
    err = reservation_error_gib(em)
    if not err:
        return out
    base = em.non_torch_gib["base"]
    nt = {**em.non_torch_gib, "base": replace(base, value=base.value + (err if side == "low" else -err))}
    return replace(out, engine_memory={**out.engine_memory, runtime: replace(em, non_torch_gib=nt)})


def kv_interval(evaluate, stages, runtime: str = "vllm") -> dict:
    """``interval`` for a KV-cache quantity: the corners, then each end's reservation moved by the
    engine memory fit's held-out error in GiB (``reserve_end``) -- not the serving fit's relative
    spread, a throughput error. ``uncalibrated`` still says only whether a default moved it."""
    exp = evaluate(stages)
    at = [evaluate(at_corner(stages, side)) for side in SIDES]
    uncal = any(abs(v - exp) > 1e-9 * max(1.0, abs(exp)) for v in at)
    err = max(reservation_error_gib(s.profile.engine_memory.get(runtime)) for s in stages)
    # reserve_end is the corner itself where no stage's fit records an error: reuse those values
    ends = [evaluate([replace(s, profile=reserve_end(s.profile, side, runtime)) for s in stages])
            for side in SIDES] if err else at
    return {"low": min(ends + [exp]), "expected": exp, "high": max(ends + [exp]), "uncalibrated": uncal,
            "memory_fit_error_gib": err}


def at_corner(stages, side: str) -> list:
    return [replace(s, profile=corner(s.profile, side)) for s in stages]


def interval(evaluate, stages) -> dict:
    """{"low", "expected", "high", "uncalibrated"} of ``evaluate(stages)`` over the corners;
    the fit spread of the stages' profiles widens both ends."""
    exp = evaluate(stages)
    ends = [evaluate(at_corner(stages, side)) for side in SIDES]
    uncal = any(abs(e - exp) > 1e-9 * max(1.0, abs(exp)) for e in ends)
    spread = max(fit_spread(s.profile) for s in stages)
    lo, hi = min(ends + [exp]), max(ends + [exp])
    return {"low": lo * (1 - spread), "expected": exp, "high": hi * (1 + spread), "uncalibrated": uncal,
            "fit_spread": spread}


def defaults_used(profile: Profile) -> list[str]:
    """Names of the profile's `default` numbers that have a range (what can widen an interval)."""
    out = [f"gpu.peak_tflops.{k}" for k, v in profile.peak_tflops.items() if v.source == "default"]
    out += [f"gpu.{n}" for n in ("hbm_gbps", "intra_node_gbps") if getattr(profile, n).source == "default"]
    out += ["gpu.memory_cuda_total_gib"] if profile.cuda_total_gib().source == "default" else []
    out += [f"compute.{n}" for n in ("prefill_efficiency", "decode_efficiency")
            if getattr(profile, n).source == "default"]
    out += [f"network.{k}" for k, v in profile.network.items() if v.source == "default" and k in SPREAD]
    out += [f"serving.{k} (assumed 0)" for k in SERVING_PLAUSIBLE if k not in profile.serving]
    if profile.engine_allreduce:
        have = {f.ranks for f in profile.engine_allreduce}
        out += [f"serving.tp_allreduce[{n} ranks] (borrowed)" for n in TP_SIZES if n not in have]
        out += [f"serving.tp_allreduce[{f.ranks} ranks] outside the mean messages its fit pins "
                + (f"({f.message_bytes[0] / 2**20:.2g}-{f.message_bytes[1] / 2**20:.2g} MiB)" if f.message_bytes
                   else "(none recorded)") for f in profile.engine_allreduce]
    for rt, em in profile.engine_memory.items():
        out += [f"memory.{rt}.non_torch_gib.{k}" for k, v in em.non_torch_gib.items()
                if v.source == "default" and v.plausible]
        g = em.cudagraph_gib
        if g.source == "default" and g.plausible:
            out.append(f"memory.{rt}.cudagraph_gib (in vLLM's KV budget from 0.20)")
    return out
