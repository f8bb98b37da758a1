"""Predict measured online runs: one row of an online CSV -> the scheduler simulation.

Library layer of ``solver validate`` on online files and of ``scripts/bench_online.py``.
Each row is one replica (tp x pp GPUs of one type in one node, even layer split) under the
row's load; the prediction is ``solver.cost.online.simulate`` with the row's request count
(default 20 x concurrency) and lengths, compared metric by metric with what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dc_replace
from functools import lru_cache

from solver.cost.online.estimate import default_requests
from solver.cost.online.simulate import SimResult, simulate
from solver.cost.online.steps import StepModel
from solver.cost.online.traffic import Traffic
from solver.cost.pipeline import even_split
from solver.cost.serving import serving_config
from solver.cost.stage import Stage
from solver.errors import InputError
from solver.inputs.model import load_model
from solver.inputs.online_csv import METRICS, OnlineRow
from solver.inputs.profile import Profile, profile_for
from solver.inputs.validation_csv import where_row
from solver.report.validate_report import rel_error, summarize


@lru_cache(maxsize=64)
def _model(name: str):
    return load_model(name)


def replica(row: OnlineRow, profile: Profile) -> StepModel:
    """The row's replica: pp stages of TP ``row.tp`` in one node, the row's engine settings."""
    model = _model(row.model)
    if model.num_heads % row.tp or row.pp > model.num_layers:
        raise InputError("", "tp", f"tp {row.tp} x pp {row.pp} does not fit {model.name}")
    stages = [Stage(profile, row.tp, n, first=i == 0, last=i == row.pp - 1)
              for i, n in enumerate(even_split(model.num_layers, row.pp))]
    cfg = serving_config(profile, row.gpu_memory_utilization, row.max_num_seqs)
    if row.max_num_batched_tokens is not None:
        cfg = dc_replace(cfg, max_num_batched_tokens=row.max_num_batched_tokens)
    return StepModel(model, stages, [None] * (row.pp - 1), dtype=row.dtype, kv_dtype=row.kv_dtype, serving=cfg,
                     kv_tokens=row.kv_cache_tokens)


def traffic_of(row: OnlineRow) -> Traffic:
    """Open loop when a rate is given (a concurrency cap beside it is not modelled), else closed."""
    if row.request_rate is not None:
        return Traffic(row.input_len, row.output_len, rate_per_s=row.request_rate)
    return Traffic(row.input_len, row.output_len, concurrency=row.concurrency)


def predicted(sim: SimResult, column: str) -> float:
    what, q = METRICS[column]
    if what == "output_tok_s":
        return sim.output_tok_s
    arr = f"{what}_s"
    if q == "mean":
        return float(getattr(sim, arr).mean()) * 1e3
    return sim.pct(arr, float(q[1:])) * 1e3


@dataclass(frozen=True)
class OnlineResult:
    row: OnlineRow
    predicted: dict     # metric column -> predicted value
    errors: dict        # metric column -> (predicted - measured) / measured
    sim: SimResult


def predict_online_row(row: OnlineRow, profiles: list[Profile], csv_path: str = "",
                       profile_override: Profile | None = None) -> OnlineResult:
    """Simulate the row on its GPU's profile (``profile_override``: a refitted copy)."""
    try:
        profile = profile_override or profile_for(row.gpu, profiles)
        steps = replica(row, profile)
        traffic = traffic_of(row)
    except InputError as e:
        raise InputError(csv_path, f"{where_row(row.row, row.line)}, column {e.field.lstrip('-') or 'gpu'}",
                         e.reason) from None
    n = row.num_prompts or default_requests(traffic)
    sim = simulate(steps, traffic, n)
    pred = {c: predicted(sim, c) for c in row.measured}
    return OnlineResult(row, pred, {c: rel_error(pred[c], row.measured[c]) for c in pred}, sim)


def error_table(results: list[OnlineResult]) -> dict:
    """Per metric column, per split: rows, mean and max |error| (fractions)."""
    out: dict = {}
    for col in METRICS:
        for split in ("fit", "held-out"):
            errs = [r.errors[col] for r in results if col in r.errors and r.row.split == split]
            if errs:
                out.setdefault(col, {})[split] = summarize(errs)
    return out
