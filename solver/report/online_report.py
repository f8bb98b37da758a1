"""``solver validate`` on an online CSV: predicted vs measured latency and throughput per
row and metric, and the error table per metric with fit and held-out rows apart."""

from __future__ import annotations

import json
import sys

from solver.report.online_rows import OnlineResult, error_table
from solver.report.table import render


def results_table(results: list[OnlineResult], title: str) -> str:
    headers = ["row", "tp", "in", "out", "load", "metric", "measured", "predicted", "err%", "split"]
    rows = []
    for res in results:
        r = res.row
        load = f"c{r.concurrency}" if r.request_rate is None else f"{r.request_rate:g}/s"
        for col in res.predicted:
            rows.append([r.label, r.tp, r.input_len, r.output_len, load, col, r.measured[col], res.predicted[col],
                         round(100 * res.errors[col], 1), r.split])
    return render(headers, rows, title)


def summary_table(results: list[OnlineResult]) -> str:
    headers = ["metric", "split", "rows", "mean |err| %", "max |err| %"]
    rows = [[col, split, s["rows"], round(100 * s["mean_abs_err"], 1), round(100 * s["max_abs_err"], 1)]
            for col, by_split in error_table(results).items() for split, s in by_split.items()]
    return render(headers, rows, "error per metric ((predicted - measured) / measured)")


def emit_online_report(results: list[OnlineResult], path: str, as_json: bool, warns: list[str]) -> None:
    if as_json:
        rows = [{"row": r.row.row, "id": r.row.label, "split": r.row.split, "measured": r.row.measured,
                 "predicted": r.predicted, "err": r.errors, "preemptions": r.sim.preemptions} for r in results]
        print(json.dumps({"csv": path, "kind": "online", "rows": rows, "errors": error_table(results),
                          "warnings": warns}, indent=2))
        return
    print(results_table(results, f"{path}: predicted vs measured (ms; output_tok_s in tokens/s)"))
    print()
    print(summary_table(results))
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)
