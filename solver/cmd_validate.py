"""``solver validate``: predict measured deployments and report the error per row.

Each CSV row is one deployment (tp x pp GPUs of one type over ``nodes`` nodes) serving an
offline batch; the prediction is ``estimate_pipeline`` -- the same function ``estimate``
and the planner use -- on an even layer split (solver/report/validate_rows.py).
"""

from __future__ import annotations

import argparse

from solver.cli_common import collect_warnings, fraction, positive_float
from solver.errors import InputError
from solver.inputs.profile import load_profiles
from solver.inputs.online_csv import is_online_csv, read_online
from solver.inputs.validation_csv import read_measurements
from solver.report.online_report import emit_online_report
from solver.report.online_rows import predict_online_row
from solver.report.validate_report import RowResult, emit_report
from solver.report.validate_rows import assumed_inputs, fit_record, predict_row, predict_row_interval, role

# Stated in --help and in each row that uses them (see docs/metrics.md, "validation error").
ASSUME_BATCH = 30          # the request count in the shared L40S dataset's metadata
ASSUME_NIC_GBPS = 12.5     # 100 Gb/s: the slowest NIC in the shared L40S dataset
# Plausible ranges of those assumptions, for the prediction interval: the dataset's metadata says
# 30 requests, its measurement script at a later commit 50; its instances have 12.5-50 GB/s NICs.
ASSUME_BATCH_RANGE = (30, 50)
ASSUME_NIC_RANGE = (12.5, 50.0)


def register(sub) -> None:
    p = sub.add_parser(
        "validate", help="predict measured deployments (CSV) and report predicted vs measured throughput",
        description="For each row of a CSV of measured offline-batch deployments, predict tokens/s "
                    "(prompt + output tokens / elapsed s) with the serving model of `solver estimate` and "
                    "print predicted vs measured, the error (predicted - measured) / measured per row, and "
                    "the mean and max absolute error. Rows the profile's serving fit used are marked `fit`; "
                    "rows with a blank num_requests or (multi-node) nic_gbps are predicted with an assumed "
                    "value, marked `assumed`; the headline error is over the other (`held-out`) rows. "
                    "Exit 0 whatever the error, 2 on bad input.")
    p.add_argument("csv", help="measurements: model, gpu, nodes, gpus_used_per_node, interconnect, nic_gbps "
                               "(GB/s per direction), tp, pp, input_len, output_len, num_requests, measured_tok_s")
    p.add_argument("--profile", required=True, nargs="+",
                   help="profile JSON file(s) or folder(s) of them; each row's gpu picks one by name or alias")
    p.add_argument("--assume-batch", type=int, default=ASSUME_BATCH,
                   help=f"batch for rows with a blank num_requests (default {ASSUME_BATCH}: the request count "
                        "in the metadata of the shared L40S dataset)")
    p.add_argument("--assume-batch-range", type=_int_pair, default=ASSUME_BATCH_RANGE, metavar="LO,HI",
                   help="plausible batch of rows with a blank num_requests, for the interval (default 30,50)")
    p.add_argument("--assume-nic-range", type=_float_pair, default=ASSUME_NIC_RANGE, metavar="LO,HI",
                   help="plausible NIC GB/s of rows with a blank nic_gbps, for the interval (default 12.5,50)")
    p.add_argument("--assume-nic-gbps", type=positive_float, default=ASSUME_NIC_GBPS,
                   help=f"NIC GB/s per direction for multi-node rows with a blank nic_gbps (default "
                        f"{ASSUME_NIC_GBPS:g} = 100 Gb/s)")
    p.add_argument("--gpu-memory-utilization", type=fraction, default=None,
                   help="override for every row (default: the row's column, else the profile's serving "
                        "section, else vLLM's 0.9)")
    p.add_argument("--max-num-seqs", type=int, default=None,
                   help="override for every row (default: the row's column, else the profile, else 256)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: rows and mean_abs_err / max_abs_err as fractions (0.12 = 12%%)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also write a predicted-vs-measured plot (needs matplotlib)")
    p.add_argument("--strict", action="store_true",
                   help="refuse (exit 2) when a prediction leaves a profile's calibrated range")
    p.set_defaults(func=run)


def _pair(text: str, kind):
    try:
        lo, hi = (kind(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return lo, hi


def _int_pair(text: str):
    return _pair(text, int)


def _float_pair(text: str):
    return _pair(text, float)


def run(args) -> int:
    if is_online_csv(args.csv):
        return run_online(args)
    if args.assume_batch < 1:
        raise InputError("", "--assume-batch", f"must be >= 1, got {args.assume_batch}")
    if args.gpu_memory_utilization is not None and not 0 < args.gpu_memory_utilization <= 1:
        raise InputError("", "--gpu-memory-utilization", f"must be in (0, 1], got {args.gpu_memory_utilization}")
    if args.max_num_seqs is not None and args.max_num_seqs < 1:
        raise InputError("", "--max-num-seqs", f"must be >= 1, got {args.max_num_seqs}")
    rows = read_measurements(args.csv)
    profiles = load_profiles(args.profile)
    fit = fit_record(profiles)
    results = []
    with collect_warnings(args.strict) as warns:
        for row in rows:
            est = predict_row(row, profiles, args)
            assumed = assumed_inputs(row, args)
            results.append(RowResult(row, est, role(row, args.csv, fit, assumed), assumed,
                                     predict_row_interval(row, profiles, args)))
    emit_report(results, args.csv, args.json, args.plot, warns)
    return 0



def run_online(args) -> int:
    """Online measurements (a concurrency or request_rate column): simulate each row with the
    online model (solver.cost.online) and compare every measured latency percentile."""
    rows = read_online(args.csv)
    profiles = load_profiles(args.profile)
    with collect_warnings(args.strict) as warns:
        results = [predict_online_row(row, profiles, args.csv) for row in rows]
    emit_online_report(results, args.csv, args.json, warns)
    return 0
