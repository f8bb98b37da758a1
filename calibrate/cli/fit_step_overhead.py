"""``calibrate fit-step-overhead``: the engine's per-step overhead on top of a profile's op tables."""

from __future__ import annotations

from pathlib import Path

from calibrate.ops.overhead import fit_overhead, overhead_json
from calibrate.profile_io import command_line, read_profile_dict, write_profile
from solver.cli_common import collect_warnings
from solver.cost.ops.latency import predict_latency
from solver.errors import InputError
from solver.inputs.latency_csv import read_latency_rows
from solver.inputs.model import load_model
from solver.inputs.ops_profile import tables_for
from solver.inputs.profile import load_profile, parse_profile


def register(sub) -> None:
    p = sub.add_parser(
        "fit-step-overhead", help="fit the serving engine's per-step overhead on measured batch latencies",
        description="For the rows of a latency CSV (data/step_times/*.csv: batch, input_len, output_len, "
                    "latency_s of vLLM benchmark_latency runs) whose GPU is the profile's, subtract the kernel "
                    "time the profile's op tables predict and fit overhead = c0 + per_seq x b + per_rank x (t-1) "
                    "+ per_seq_rank x b x (t-1) ms per step by non-negative least squares on the rows with "
                    "split=fit. Writes ops.<runtime>.step_overhead_ms with the held-out error.")
    p.add_argument("csv", help="latency CSV (columns in solver/inputs/latency_csv.py)")
    p.add_argument("--profile", required=True, help="profile with op tables (schema 2) to update")
    p.add_argument("--runtime", default="vllm", help="op-table runtime to update (default vllm: newest vllm-*)")
    p.add_argument("--ref", required=True, help="where the measurements come from")
    p.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    profile = load_profile(args.profile)
    tables = tables_for(profile.ops, args.runtime)
    if tables is None:
        raise InputError(args.profile, "ops", f"no {args.runtime} op tables: run calibrate import-aiconfigurator first")
    rows = [r for r in read_latency_rows(args.csv) if profile.matches(r.gpu)]
    fit_rows = [r for r in rows if r.split == "fit"]
    if not fit_rows:
        raise InputError(args.csv, "split", f"no fit rows for {profile.gpu_name}")
    models = {r.model: load_model(r.model) for r in rows}
    data = read_profile_dict(args.profile)
    raw = dict(data)
    raw["ops"] = {k: {kk: vv for kk, vv in v.items() if kk != "step_overhead_ms"} for k, v in data["ops"].items()}
    bare = parse_profile(raw, args.profile)
    with collect_warnings(False):
        coef = fit_overhead(fit_rows, models, bare)
        trial = dict(raw)
        trial["ops"] = {**raw["ops"], tables.key: {**raw["ops"][tables.key],
                                                   "step_overhead_ms": overhead_json(coef, "trial", {})}}
        fitted = parse_profile(trial, args.profile)
        errs = {r.id: predict_latency(r, models[r.model], fitted).latency_s(r.output_len) / r.latency_s - 1
                for r in rows}
    def summary(split):
        e = [abs(errs[r.id]) for r in rows if r.split == split]
        return (len(e), sum(e) / len(e) if e else 0.0, max(e) if e else 0.0)
    (nf, mf, xf), (nh, mh, xh) = summary("fit"), summary("held-out")
    for k, v in coef.items():
        print(f"{k} = {v:.4g} ms")
    print(f"latency error: fit {nf} rows mean {100 * mf:.1f}% max {100 * xf:.1f}%; "
          f"held out {nh} rows mean {100 * mh:.1f}% max {100 * xh:.1f}%")
    if args.dry_run:
        return 0
    fit_error = {"dataset": Path(args.csv).name, "fit_rows": nf, "mean_abs_rel": round(mf, 4),
                 "max_abs_rel": round(xf, 4), "held_out_rows": nh, "held_out_mean_abs_rel": round(mh, 4),
                 "held_out_max_abs_rel": round(xh, 4), "metric": "batch latency (prefill + decode steps)"}
    ref = f"fitted by `calibrate fit-step-overhead` on the split=fit rows of {Path(args.csv).name}: {args.ref}"
    data["ops"][tables.key]["step_overhead_ms"] = overhead_json(coef, ref, fit_error)
    prov = data.setdefault("provenance", {}).setdefault("sections", {})
    prov["ops.step_overhead_ms"] = {"command": command_line(), "summary": ref}
    write_profile(args.profile, data)
    print(f"wrote ops.{tables.key}.step_overhead_ms of {args.profile}")
    return 0
