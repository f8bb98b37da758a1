"""Fit the serving engine's constants on measured end-to-end throughput (``calibrate fit-serving``).

Fitted (docs/profile.md, ``serving``): the TP all-reduce the engine pays per call, one
``tp_allreduce`` entry per TP size in the fit rows -- ``hop_us`` (latency per ring step)
and ``busbw_gbps`` (design.md section 4: one fit per n, never derived from another n) --
and ``decode_step_overhead_ms`` (engine time per decode step beyond the GPU). Everything else
(FLOP/s, memory bandwidth, memory model, links) stays the profile's.

Method: minimise the mean |log(predicted / measured)| over the fit rows with Nelder-Mead,
predicting with ``solver validate``'s own function (``solver.report.validate_rows``), so the
fit and the validation share one model. Held-out rows never enter the objective; their error
is only reported.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from solver.cli_common import collect_warnings
from solver.inputs.profile import parse_profile
from solver.report.validate_report import rel_error, summarize
from solver.report.validate_rows import predict_row

# Starts of the search (hop_us, busbw_gbps, overhead_ms): a PCIe 4.0 ring near its nominal
# busbw (31.5 GB/s x 0.8, calibrate/defaults.py) with 10 us per step (design.md section 4),
# and a slow, host-staged one; the best of the runs wins (Nelder-Mead finds local minima).
STARTS = ((10.0, 25.2, 0.1), (50.0, 3.0, 1.0))


def nelder_mead(f, x0: np.ndarray, step: float = 0.5, iters: int = 400, tol: float = 1e-6) -> np.ndarray:
    """Minimise ``f`` from ``x0`` (standard reflection/expansion/contraction/shrink steps)."""
    pts = [x0] + [x0 + step * np.eye(len(x0))[i] for i in range(len(x0))]
    vals = [f(x) for x in pts]
    for _ in range(iters):
        order = np.argsort(vals)
        pts, vals = [pts[i] for i in order], [vals[i] for i in order]
        if vals[-1] - vals[0] < tol:
            break
        centre = np.mean(pts[:-1], axis=0)
        refl = centre + (centre - pts[-1])
        fr = f(refl)
        if fr < vals[0]:
            exp = centre + 2 * (centre - pts[-1])
            fe = f(exp)
            pts[-1], vals[-1] = (exp, fe) if fe < fr else (refl, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = refl, fr
        else:
            con = centre + 0.5 * (pts[-1] - centre)
            fc = f(con)
            if fc < vals[-1]:
                pts[-1], vals[-1] = con, fc
            else:
                pts = [pts[0] + 0.5 * (p - pts[0]) for p in pts]
                vals = [f(p) for p in pts]
    return pts[int(np.argmin(vals))]


def _decode(x: np.ndarray, ranks: list[int], cap_gbps: float) -> dict:
    """Search space: log of hop_us and the logit of busbw_gbps / ``cap_gbps`` per TP size,
    then sqrt of the overhead (so every point of R^k is a valid, non-negative parameter set).
    A ring's bus bandwidth cannot exceed the link's nominal rate per direction (the profile's
    ``gpu.intra_node_gbps``): unbounded, three single-node TP8 rows put an L40S 8-rank fit at
    80 GB/s on PCIe 4.0 x16 (31.5 GB/s) with 90 us per hop, i.e. all of a step's slowness in
    latency, which then misprices every other message size."""
    ar = {n: (math.exp(x[2 * i]), cap_gbps / (1.0 + math.exp(-x[2 * i + 1]))) for i, n in enumerate(ranks)}
    return {"tp_allreduce": ar, "decode_step_overhead_ms": float(x[-1]) ** 2}


def _encode(hop_us: float, busbw_gbps: float, overhead_ms: float, ranks: list[int], cap_gbps: float) -> np.ndarray:
    b = min(busbw_gbps, 0.99 * cap_gbps) / cap_gbps
    return np.array([math.log(hop_us), math.log(b / (1.0 - b))] * len(ranks) + [math.sqrt(overhead_ms)])


def serving_section(fit: dict, base: dict, util: float, runtime: str, ref: str, fit_error: dict | None) -> dict:
    """Profile JSON for the serving section: ``base`` with the fitted keys replaced."""
    src = {"source": "published", "ref": f"fitted end to end by `calibrate fit-serving` on {ref}"}
    if fit_error:
        src["fit_error"] = fit_error
    out = {k: v for k, v in base.items() if k not in ("tp_allreduce", "decode_step_overhead_ms")}
    out["runtime"] = runtime
    out["gpu_memory_utilization"] = {"value": util, "source": "published",
                                     "ref": f"the setting of the measured deployments: {ref}"}
    out["decode_step_overhead_ms"] = {"value": round(fit["decode_step_overhead_ms"], 4), **src}
    sizes = fit.get("message_bytes", {})
    out["tp_allreduce"] = [{"ranks": n, "hop_us": round(h, 3), "busbw_gbps": round(b, 4),
                            **({"message_bytes": [round(x) for x in sizes[n]]} if n in sizes else {}), **src}
                           for n, (h, b) in sorted(fit["tp_allreduce"].items())]
    return out


def message_ranges(rows, profile, serving_json: dict, util: float, where: str) -> dict:
    """{ranks: (smallest, largest)} of the fit rows' mean all-reduce message (bytes per call,
    ``PipelineEstimate.allreduce_mean_bytes``). With t(S) = a + b*S per call (hop_us, busbw),
    a row's all-reduce time is calls x t(mean S): each fit row pins t at its own mean message
    and nothing else. Rows whose means coincide (e.g. one prompt/output ratio) pin one point;
    the split between latency and bandwidth, hence t at any other size, is then extrapolated."""
    prof = parse_profile({**profile.raw, "serving": serving_json}, where)
    out: dict[int, list[float]] = {}
    for r in rows:
        if r.tp > 1:
            out.setdefault(r.tp, []).append(predict_row(r, [prof], _args(util)).allreduce_mean_bytes)
    return {n: (min(v), max(v)) for n, v in out.items()}


def _args(util: float) -> argparse.Namespace:
    # the rows carry every input, so nothing is assumed
    return argparse.Namespace(assume_batch=1, assume_nic_gbps=1.0, gpu_memory_utilization=util, max_num_seqs=None)


def errors(rows, profile, serving_json: dict, util: float, where: str) -> list[float]:
    """Relative errors of ``rows`` predicted with ``profile`` whose serving section is ``serving_json``."""
    prof = parse_profile({**profile.raw, "serving": serving_json}, where)
    return [rel_error(predict_row(r, [prof], _args(util)).throughput_tok_s, r.measured_tok_s) for r in rows]


def fit_serving(fit_rows, held, profile, base: dict, util: float, runtime: str, ref: str, where: str):
    """Best fit (``_decode`` form) and the error summaries on the fit rows and the held-out rows."""
    ranks = sorted({r.tp for r in fit_rows if r.tp > 1})
    cap = profile.intra_node_gbps.value

    def objective(x: np.ndarray) -> float:
        sv = serving_section(_decode(x, ranks, cap), base, util, runtime, ref, None)
        return float(np.mean([abs(math.log1p(e)) if e > -1 else 10.0 for e in errors(fit_rows, profile, sv, util, where)]))

    with collect_warnings(False):
        xs = [nelder_mead(objective, _encode(*s0, ranks, cap), iters=150 * (len(ranks) + 1)) for s0 in STARTS]
        best = _decode(min(xs, key=objective), ranks, cap)
        serving_json = serving_section(best, base, util, runtime, ref, None)
        best["message_bytes"] = message_ranges(fit_rows, profile, serving_json, util, where)
        fit_s = summarize(errors(fit_rows, profile, serving_json, util, where))
        held_s = summarize(errors(held, profile, serving_json, util, where))
    return best, fit_s, held_s
