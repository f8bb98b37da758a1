"""Predict measured deployments: one CSV row of ``solver validate`` -> ``estimate_pipeline``.

Library layer shared by ``solver validate`` and ``calibrate fit-serving`` (which fits the
serving constants with this same prediction). Each row is one deployment (tp x pp GPUs of
one type over ``nodes`` nodes) serving an offline batch, on an even layer split.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from solver.cost.pipeline import PipelineEstimate, estimate_pipeline, even_split
from solver.cost.serving import serving_config
from solver.cost.stage import Stage
from solver.cost.warn import note
from solver.errors import InputError
from solver.inputs.model import load_model
from solver.inputs.profile import Profile, profile_for
from solver.inputs.validation_csv import MeasuredRow, matches, where_row
from solver.inputs.workload import Workload


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


def predict_row_interval(row: MeasuredRow, profiles: list[Profile], args) -> dict:
    """Low / expected / high throughput of a row over the profile's default ranges and its
    serving fit's held-out error (solver/cost/intervals.py). An input the row leaves blank is
    an assumption too: the low end takes the pessimistic end of its plausible range
    (``args.assume_batch_range``, ``args.assume_nic_range``: fewer requests in flight, the
    slower NIC), the high end the other."""
    from types import SimpleNamespace

    from solver.cost import intervals
    util = args.gpu_memory_utilization or row.gpu_memory_utilization
    seqs = args.max_num_seqs or row.max_num_seqs
    ends = {}
    for side, k in (("expected", None), ("low", 0), ("high", 1)):
        a = args if k is None else SimpleNamespace(**{**vars(args), "assume_batch": args.assume_batch_range[k],
                                                      "assume_nic_gbps": args.assume_nic_range[k]})
        _profile, model, stages, links, workload = _resolve(row, profiles, a)

        def evaluate(st, model=model, workload=workload, links=links):
            cfg = serving_config(st[0].profile, util, seqs)
            return estimate_pipeline(model, workload, st, links, "vllm", serving=cfg).throughput_tok_s
        ends[side] = intervals.interval(evaluate, stages)
    out = dict(ends["expected"])
    out["low"], out["high"] = min(e["low"] for e in ends.values()), max(e["high"] for e in ends.values())
    out["uncalibrated"] = any(e["uncalibrated"] for e in ends.values())
    return out


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
