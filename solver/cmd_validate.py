"""``solver validate``: predict measured deployments and report the error per row.

Each CSV row is one deployment (tp x pp GPUs of one type over ``nodes`` nodes) serving an
offline batch; the prediction is ``estimate_pipeline`` -- the same function ``estimate``
and the planner use -- on an even layer split.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from solver.cli_common import collect_warnings, fraction, positive_float
from solver.cost.pipeline import PipelineEstimate, estimate_pipeline, even_split
from solver.cost.serving import serving_config
from solver.cost.stage import Stage
from solver.cost.warn import note
from solver.errors import InputError
from solver.inputs.model import load_model
from solver.inputs.profile import Profile, load_profiles, profile_for
from solver.inputs.validation_csv import MeasuredRow, matches, read_measurements, where_row
from solver.inputs.workload import Workload
from solver.report.validate_report import RowResult, emit_report

# Stated in --help and in each row that uses them (see docs/metrics.md, "validation error").
ASSUME_BATCH = 30          # the request count in the shared L40S dataset's metadata
ASSUME_NIC_GBPS = 12.5     # 100 Gb/s: the slowest NIC in the shared L40S dataset


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


@lru_cache(maxsize=64)
def _model(name: str):
    return load_model(name)


def deployment(row: MeasuredRow, profile: Profile, assume_nic_gbps: float):
    """Stages (even layer split) and links of a row. Stages spread over the nodes as evenly
    as they go, in order (stage i on node i x nodes // pp): a TP group never spans nodes."""
    model = _model(row.model)
    if model.num_heads % row.tp or row.pp > model.num_layers:
        raise InputError("", "tp" if model.num_heads % row.tp else "pp",
                         f"tp {row.tp} x pp {row.pp} does not fit {model.name}")
    stages = [Stage(profile, row.tp, n, first=i == 0, last=i == row.pp - 1)
              for i, n in enumerate(even_split(model.num_layers, row.pp))]
    node_of = [i * row.nodes // row.pp for i in range(row.pp)]
    nic = row.nic_gbps if row.nic_gbps is not None else assume_nic_gbps
    links = [None if node_of[i] == node_of[i + 1] else nic for i in range(row.pp - 1)]
    return model, stages, links


def assumed_inputs(row: MeasuredRow, args) -> list[str]:
    out = []
    if row.num_requests is None:
        out.append(f"num_requests={args.assume_batch}")
    if row.nic_gbps is None and row.nodes > 1:
        out.append(f"nic_gbps={args.assume_nic_gbps:g}")
    return out


# CLI-style field names the input checks use -> the CSV column they come from
_COLUMN_OF = {"--batch": "num_requests", "--prompt-len": "input_len", "--output-len": "output_len",
              "--dtype": "dtype", "--model": "model"}


def _resolve(row: MeasuredRow, profiles: list[Profile], args):
    """Profile, model, stages, links and workload of a row; errors name its CSV cell."""
    column = "gpu"
    try:
        profile = profile_for(row.gpu, profiles)
        column = "model"
        model, stages, links = deployment(row, profile, args.assume_nic_gbps)
        workload = Workload(batch=row.num_requests or args.assume_batch, prompt_len=row.input_len,
                            output_len=row.output_len, dtype=row.dtype)
    except InputError as e:
        column = _COLUMN_OF.get(e.where, _COLUMN_OF.get(e.field, e.field if e.field in ("tp", "pp") else column))
        raise InputError(getattr(args, "csv", ""), f"{where_row(row.row, row.line)}, column {column}",
                         e.reason) from None
    return profile, model, stages, links, workload


def predict_row(row: MeasuredRow, profiles: list[Profile], args) -> PipelineEstimate:
    """The throughput prediction for one row. ``args`` needs assume_batch, assume_nic_gbps,
    gpu_memory_utilization and max_num_seqs (None: row, then profile, then vLLM default)."""
    profile, model, stages, links, workload = _resolve(row, profiles, args)
    if row.interconnect != profile.interconnect:
        note(f"{profile.path}: profiled on {profile.interconnect}, row {row.row} ran on {row.interconnect}")
    util = args.gpu_memory_utilization or row.gpu_memory_utilization
    cfg = serving_config(profile, util, args.max_num_seqs or row.max_num_seqs)
    return estimate_pipeline(model, workload, stages, links, "vllm", serving=cfg)


def fit_record(profiles: list[Profile]) -> tuple[str, str] | None:
    """(dataset file name, row selection) that the profiles' serving fit used, if recorded."""
    for prof in profiles:
        for v in prof.serving.values():
            fe = v.fit_error or {}
            if fe.get("dataset") and "fit_rows" in fe:
                return Path(fe["dataset"]).name, fe["fit_rows"]
    return None


def role(row: MeasuredRow, csv_path: str, fit: tuple[str, str] | None, assumed: list[str]) -> str:
    if fit and Path(csv_path).name == fit[0] and matches(row, fit[1]):
        return "fit"
    return "assumed" if assumed else "held-out"


def run(args) -> int:
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
            results.append(RowResult(row, est, role(row, args.csv, fit, assumed), assumed))
    emit_report(results, args.csv, args.json, args.plot, warns)
    return 0

