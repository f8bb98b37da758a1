"""Predicted vs measured: the validation table, its summary, JSON and plot.

Validation error (docs/metrics.md): err = (predicted - measured) / measured per row, as a
fraction; the summary is the mean and the max of |err| over a group of rows. An
infeasible prediction (the deployment cannot hold one sequence) counts as err = -1.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from solver.cost.pipeline import PipelineEstimate
from solver.errors import InputError
from solver.inputs.validation_csv import MeasuredRow
from solver.report.table import render

ROLES = ("held-out", "fit", "assumed")


def rel_error(predicted_tok_s: float, measured_tok_s: float) -> float:
    """(predicted - measured) / measured."""
    return (predicted_tok_s - measured_tok_s) / measured_tok_s


def summarize(errors: list[float]) -> dict:
    """{"rows", "mean_abs_err", "max_abs_err"} (fractions; None when there are no rows)."""
    if not errors:
        return {"rows": 0, "mean_abs_err": None, "max_abs_err": None}
    abs_err = [abs(e) for e in errors]
    return {"rows": len(errors), "mean_abs_err": sum(abs_err) / len(abs_err), "max_abs_err": max(abs_err)}


@dataclass(frozen=True)
class RowResult:
    row: MeasuredRow
    est: PipelineEstimate
    role: str            # one of ROLES
    assumed: list[str]   # inputs the row left blank, as "name=value"
    interval: dict | None = None  # solver.cost.intervals.interval of the throughput

    @property
    def inside(self) -> bool | None:
        iv = self.interval
        return None if iv is None else iv["low"] <= self.row.measured_tok_s <= iv["high"]

    @property
    def err(self) -> float:
        return rel_error(self.est.throughput_tok_s, self.row.measured_tok_s)

    def as_dict(self) -> dict:
        r, e, c = self.row, self.est, self.est.concurrency
        return {
            "row": r.row, "model": r.model, "gpu": r.gpu, "nodes": r.nodes, "tp": r.tp, "pp": r.pp,
            "input_len": r.input_len, "output_len": r.output_len,
            "num_requests": r.num_requests, "measured_tok_s": r.measured_tok_s,
            "predicted_tok_s": e.throughput_tok_s, "err": self.err, "role": self.role,
            "assumed": self.assumed, "prefill_s": e.prefill_s, "decode_s": e.decode_s,
            "seqs_at_once": c.seqs if c else None, "limited_by": c.limited_by if c else None,
            "waves": len(c.waves) if c else None, "bottleneck": e.bottleneck,
            **({"predicted_low_tok_s": self.interval["low"], "predicted_high_tok_s": self.interval["high"],
                "uncalibrated": self.interval["uncalibrated"], "inside_interval": self.inside}
               if self.interval else {}),
        }


def summaries(results: list[RowResult]) -> dict:
    out = {role: _with_coverage(summarize([r.err for r in results if r.role == role]),
                                [r for r in results if r.role == role]) for role in ROLES}
    out["all"] = _with_coverage(summarize([r.err for r in results]), results)
    return out


def _with_coverage(summ: dict, results: list[RowResult]) -> dict:
    """Adds ``inside_interval``: the fraction of rows whose measurement lies in [low, high]."""
    ins = [r.inside for r in results if r.inside is not None]
    summ["inside_interval"] = sum(ins) / len(ins) if ins else None
    return summ


def _table(results: list[RowResult], path: str) -> str:
    headers = ["row", "gpu", "nodes", "tp", "pp", "in", "out", "reqs", "measured", "predicted", "low", "high",
               "err%", "at_once", "limit", "prefill_s", "decode_s", "role"]
    rows = []
    for res in results:
        d = res.as_dict()
        reqs = d["num_requests"] if d["num_requests"] is not None else "?"
        rows.append([d["row"], d["gpu"], d["nodes"], d["tp"], d["pp"], d["input_len"], d["output_len"], str(reqs),
                     d["measured_tok_s"], d["predicted_tok_s"], d.get("predicted_low_tok_s", ""),
                     d.get("predicted_high_tok_s", ""), round(100 * d["err"], 1), d["seqs_at_once"],
                     d["limited_by"], d["prefill_s"], d["decode_s"], d["role"]])
    return render(headers, rows, f"{path}: predicted vs measured throughput, tokens/s (prompt + output)")


def _summary_lines(summ: dict) -> list[str]:
    lines = []
    for role in (*ROLES, "all"):
        s = summ[role]
        if s["rows"]:
            cov = "" if s.get("inside_interval") is None else \
                f", measured inside [low, high] on {100 * s['inside_interval']:.0f}% of rows"
            lines.append(f"{role:>8}: {s['rows']:3d} rows, mean |err| {100 * s['mean_abs_err']:.1f}%, "
                         f"max |err| {100 * s['max_abs_err']:.1f}%{cov}")
    return lines


def headline(summ: dict) -> dict:
    """The rows the headline error covers: held-out, else (no fit recorded) all."""
    return summ["held-out"] if summ["held-out"]["rows"] else summ["all"]


def emit_report(results: list[RowResult], path: str, as_json: bool, plot: str | None, warns: list[str]) -> None:
    summ = summaries(results)
    if plot:
        write_plot(results, plot)
    if as_json:
        head = headline(summ)
        print(json.dumps({"csv": path, "rows": [r.as_dict() for r in results],
                          "mean_abs_err": head["mean_abs_err"], "max_abs_err": head["max_abs_err"],
                          "groups": summ, "warnings": warns}, indent=2))
        return
    print(_table(results, path))
    print()
    print("\n".join(_summary_lines(summ)))
    assumed = sorted({a for r in results for a in r.assumed})
    if assumed:
        print(f"assumed rows used: {', '.join(assumed)} (blank in the CSV)")
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)


def write_plot(results: list[RowResult], path: str) -> None:
    """Predicted vs measured on log axes, one marker per role, the y = x line."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot", path, "needs matplotlib (pip install 'placement-planner[plot]')") from None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for role, marker in zip(ROLES, ("o", "s", "x")):
        pts = [(r.row.measured_tok_s, r.est.throughput_tok_s) for r in results if r.role == role]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, label=role)
    vals = [v for r in results for v in (r.row.measured_tok_s, r.est.throughput_tok_s) if v > 0]
    lo, hi = min(vals) / 1.5, max(vals) * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.plot([lo, hi], [lo * 0.8, hi * 0.8], "k:", lw=0.6)
    ax.plot([lo, hi], [lo * 1.2, hi * 1.2], "k:", lw=0.6, label="±20%")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
           xlabel="measured tokens/s", ylabel="predicted tokens/s")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise InputError("--plot", path, f"cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)
