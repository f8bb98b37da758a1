"""``calibrate fit-serving``: fit the serving engine's constants that no micro-benchmark in
a profile gives, on measured end-to-end throughput, and write the ``serving`` section.

Fitted (docs/profile.md, ``serving``): the TP all-reduce the engine pays per call, one
``tp_allreduce`` entry per TP size in the fit rows -- ``hop_us`` (latency per ring step)
and ``busbw_gbps`` (design.md section 4: one fit per n, never derived from another n) --
and ``decode_step_overhead_ms`` (engine time per decode step beyond the GPU). Everything else
(FLOP/s, memory bandwidth, memory model, links) stays the profile's.

Method: calibrate/serving/fit.py (Nelder-Mead on the mean |log(predicted / measured)| of
the ``--fit-rows``, predicted with ``solver validate``'s own function). Rows in ``--held-out``
never enter the objective; their error is only reported (``held_out_*`` in ``fit_error``).
"""

from __future__ import annotations

from pathlib import Path

from calibrate.profile_io import command_line, merge_sections, read_profile_dict, write_profile
from calibrate.serving.fit import fit_serving, serving_section
from solver.errors import InputError
from solver.inputs.profile import load_profile
from solver.inputs.validation_csv import matches, read_measurements


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

    best, fit_s, held_s = fit_serving(fit_rows, held, profile, base, util, args.runtime, args.ref, where)
    fit_error = {"dataset": Path(args.csv).name, "fit_rows": args.fit_rows, "rows": fit_s["rows"],
                 "mean_abs_rel": round(fit_s["mean_abs_err"], 4), "max_abs_rel": round(fit_s["max_abs_err"], 4),
                 "held_out": args.held_out or "all other complete rows", "held_out_rows": held_s["rows"]}
    if held_s["rows"]:
        fit_error.update(held_out_mean_abs_rel=round(held_s["mean_abs_err"], 4),
                         held_out_max_abs_rel=round(held_s["max_abs_err"], 4))
    serving_json = serving_section(best, base, util, args.runtime, args.ref, fit_error)
    for n, (h, b) in sorted(best["tp_allreduce"].items()):
        lo, hi = best["message_bytes"].get(n, (0, 0))
        print(f"tp_allreduce {n} ranks: hop_us = {h:.4g}, busbw_gbps = {b:.4g} "
              f"(pins mean messages of {lo / 2**20:.3g}-{hi / 2**20:.3g} MiB)")
    print(f"decode_step_overhead_ms = {best['decode_step_overhead_ms']:.4g}")
    print(f"fit on {fit_s['rows']} rows: mean |err| {100 * fit_s['mean_abs_err']:.1f}%, "
          f"max {100 * fit_s['max_abs_err']:.1f}%")
    if held_s["rows"]:
        print(f"held out {held_s['rows']} rows: mean |err| {100 * held_s['mean_abs_err']:.1f}%, "
              f"max {100 * held_s['max_abs_err']:.1f}%")
    if args.dry_run:
        return 0
    update = {"serving": serving_json,
              "provenance": {"command": command_line(), "summary": f"serving fit on {args.ref}", "raw": [args.csv]}}
    write_profile(args.profile, merge_sections(read_profile_dict(args.profile), update, ("serving",)))
    print(f"wrote serving section of {args.profile}")
    return 0
