"""``calibrate fit-serving``: fit the serving engine's constants that no micro-benchmark in
a profile gives, on measured end-to-end throughput, and write the ``serving`` section.

Fitted (docs/profile.md, ``serving``): the TP all-reduce the engine pays per call, one
``tp_allreduce`` entry per TP size in the fit rows -- ``hop_us`` (latency per ring step)
and ``busbw_gbps`` (design.md section 4: one fit per n, never derived from another n) --
and ``decode_step_overhead_ms`` (engine time per decode step beyond the GPU). Everything else
(FLOP/s, memory bandwidth, memory model, links) stays the profile's.

Method: minimise the mean |log(predicted / measured)| over the ``--fit-rows`` selection with
Nelder-Mead, predicting with ``solver validate``'s own function, so the fit and the
validation share one model. Rows in ``--held-out`` never enter the objective; their error
is only reported (and recorded as ``held_out_*`` in ``fit_error``).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

import numpy as np

from calibrate.profile_io import merge_sections, read_profile_dict, write_profile
from solver.cli_common import collect_warnings
from solver.cmd_validate import predict_row
from solver.errors import InputError
from solver.inputs.profile import load_profile, parse_profile
from solver.inputs.validation_csv import matches, read_measurements
from solver.report.validate_report import rel_error, summarize

# Starts of the search (hop_us, busbw_gbps, overhead_ms): a PCIe 4.0 ring near its nominal
# busbw (31.5 GB/s x 0.8, calibrate/defaults.py) with 10 us per step (design.md section 4),
# and a slow, host-staged one; the best of the runs wins (Nelder-Mead finds local minima).
STARTS = ((10.0, 25.2, 0.1), (50.0, 3.0, 1.0))


def register(sub) -> None:
    p = sub.add_parser(
        "fit-serving", help="fit serving-engine constants (TP all-reduce, step overhead) on measured runs",
        description="Fit the TP all-reduce (hop_us, busbw_gbps per TP size) and decode_step_overhead_ms "
                    "of the profile's `serving` section so that `solver validate` predicts the --fit-rows of a "
                    "measurements CSV; report the error on --held-out rows, which the fit never sees. "
                    "Writes only the `serving` section (atomically).")
    p.add_argument("csv", help="measurements CSV (the columns of `solver validate`)")
    p.add_argument("--profile", required=True, help="profile JSON to update (its GPU selects the rows)")
    p.add_argument("--fit-rows", required=True, metavar="SELECTION",
                   help="rows to fit on: col=value terms joined by commas, e.g. 'source=our_experiment,nodes=1'")
    p.add_argument("--held-out", default="", metavar="SELECTION",
                   help="rows to report the error on (default: every other row of this GPU with no blank "
                        "num_requests / nic_gbps)")
    p.add_argument("--gpu-memory-utilization", type=float, required=True,
                   help="the setting the measured runs used (recorded in the profile with --ref)")
    p.add_argument("--runtime", required=True, help="engine and version the runs used, e.g. 'vllm 0.10.0'")
    p.add_argument("--ref", required=True, help="where the measurements come from (dataset, authors)")
    p.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    p.set_defaults(func=run)


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


def _decode(x: np.ndarray, ranks: list[int]) -> dict:
    """Search space: logs of hop_us and busbw_gbps per TP size, then sqrt of the overhead
    (so every point of R^k is a valid, non-negative parameter set)."""
    ar = {n: (math.exp(x[2 * i]), math.exp(x[2 * i + 1])) for i, n in enumerate(ranks)}
    return {"tp_allreduce": ar, "decode_step_overhead_ms": float(x[-1]) ** 2}


def _encode(hop_us: float, busbw_gbps: float, overhead_ms: float, ranks: list[int]) -> np.ndarray:
    return np.array([math.log(hop_us), math.log(busbw_gbps)] * len(ranks) + [math.sqrt(overhead_ms)])


def _serving(fit: dict, base: dict, util: float, runtime: str, ref: str, fit_error: dict | None) -> dict:
    """Profile JSON for the serving section: ``base`` with the fitted keys replaced."""
    src = {"source": "published", "ref": f"fitted end to end by `calibrate fit-serving` on {ref}"}
    if fit_error:
        src["fit_error"] = fit_error
    out = {k: v for k, v in base.items() if k not in ("tp_allreduce", "decode_step_overhead_ms")}
    out["runtime"] = runtime
    out["gpu_memory_utilization"] = {"value": util, "source": "published",
                                     "ref": f"the setting of the measured deployments: {ref}"}
    out["decode_step_overhead_ms"] = {"value": round(fit["decode_step_overhead_ms"], 4), **src}
    out["tp_allreduce"] = [{"ranks": n, "hop_us": round(h, 3), "busbw_gbps": round(b, 4), **src}
                           for n, (h, b) in sorted(fit["tp_allreduce"].items())]
    return out


def _args(util: float) -> argparse.Namespace:
    # the rows carry every input, so nothing is assumed
    return argparse.Namespace(assume_batch=1, assume_nic_gbps=1.0, gpu_memory_utilization=util, max_num_seqs=None)


def errors(rows, profile, serving_json: dict, util: float, where: str) -> list[float]:
    """Relative errors of ``rows`` predicted with ``profile`` whose serving section is ``serving_json``."""
    prof = parse_profile({**profile.raw, "serving": serving_json}, where)
    return [rel_error(predict_row(r, [prof], _args(util)).throughput_tok_s, r.measured_tok_s) for r in rows]


def run(args) -> int:
    rows = read_measurements(args.csv)
    profile = load_profile(args.profile)
    mine = [r for r in rows if profile.matches(r.gpu)]
    complete = [r for r in mine if r.num_requests is not None and (r.nic_gbps is not None or r.nodes == 1)]
    fit_rows = [r for r in complete if matches(r, args.fit_rows)]
    if not fit_rows:
        raise InputError(args.csv, "--fit-rows", f"selects no {profile.gpu_name} row with num_requests and nic_gbps")
    held = [r for r in complete if r not in fit_rows and (not args.held_out or matches(r, args.held_out))]
    base = dict((profile.raw or {}).get("serving", {}))
    util, where = args.gpu_memory_utilization, args.profile

    ranks = sorted({r.tp for r in fit_rows if r.tp > 1})

    def objective(x: np.ndarray) -> float:
        sv = _serving(_decode(x, ranks), base, util, args.runtime, args.ref, None)
        return float(np.mean([abs(math.log1p(e)) if e > -1 else 10.0 for e in errors(fit_rows, profile, sv, util, where)]))

    with collect_warnings(False):
        xs = [nelder_mead(objective, _encode(*s0, ranks), iters=150 * (len(ranks) + 1)) for s0 in STARTS]
        best = _decode(min(xs, key=objective), ranks)
        serving_json = _serving(best, base, util, args.runtime, args.ref, None)
        fit_s = summarize(errors(fit_rows, profile, serving_json, util, where))
        held_s = summarize(errors(held, profile, serving_json, util, where))
    fit_error = {"dataset": Path(args.csv).name, "fit_rows": args.fit_rows, "rows": fit_s["rows"],
                 "mean_abs_rel": round(fit_s["mean_abs_err"], 4), "max_abs_rel": round(fit_s["max_abs_err"], 4),
                 "held_out": args.held_out or "all other complete rows", "held_out_rows": held_s["rows"]}
    if held_s["rows"]:
        fit_error.update(held_out_mean_abs_rel=round(held_s["mean_abs_err"], 4),
                         held_out_max_abs_rel=round(held_s["max_abs_err"], 4))
    serving_json = _serving(best, base, util, args.runtime, args.ref, fit_error)
    for n, (h, b) in sorted(best["tp_allreduce"].items()):
        print(f"tp_allreduce {n} ranks: hop_us = {h:.4g}, busbw_gbps = {b:.4g}")
    print(f"decode_step_overhead_ms = {best['decode_step_overhead_ms']:.4g}")
    print(f"fit on {fit_s['rows']} rows: mean |err| {100 * fit_s['mean_abs_err']:.1f}%, "
          f"max {100 * fit_s['max_abs_err']:.1f}%")
    if held_s["rows"]:
        print(f"held out {held_s['rows']} rows: mean |err| {100 * held_s['mean_abs_err']:.1f}%, "
              f"max {100 * held_s['max_abs_err']:.1f}%")
    if args.dry_run:
        return 0
    cmd = "calibrate " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    update = {"serving": serving_json, "provenance": {"command": cmd, "summary": f"serving fit on {args.ref}"}}
    write_profile(args.profile, merge_sections(read_profile_dict(args.profile), update, ("serving",)))
    print(f"wrote serving section of {args.profile}")
    return 0
