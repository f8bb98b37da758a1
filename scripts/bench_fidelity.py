"""Fidelity of the op-level cost model against every real dataset, beside the v1 roofline.

    python scripts/bench_fidelity.py [--markdown]

Per dataset, GPU and TP: mean and max |error| of what the dataset measures, fit rows and
held-out rows apart, for the shipped profiles (op tables, schema 2) and for the v1 roofline
(the same profile without its op tables; for the L40S, the v1 profile as shipped at commit
V1_REV, whose serving constants were fitted on the roofline).

- ``data/step_times/a100_vllm_latency.csv``: vLLM ``benchmark_latency`` on A100 (public
  issues): batch latency = prefill + (output - 1) decode steps; with 1-32-token prompts the
  prefill is one step, so the error is the decode-step error. Fit rows: the engine overhead
  (``calibrate fit-step-overhead``); nothing else is fitted on them.
- ``../shared/data/h100/native_layer_prefill.csv``: one decoder layer's prefill on an H100
  (TP shard emulated, no communication). Nothing of the op model is fitted on it; the v1
  curve was (``compute.prefill_efficiency``, its held-out rows marked).
- ``../shared/data/vllm/l40s_llama70b_offline.csv``: vLLM 0.10 offline throughput on L40S;
  rows with known batch and NIC; fit/held-out as the profile's serving fit records.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solver.cost.compute import prefill_layer_s  # noqa: E402
from solver.cost.ops.compose import Step, layer_ops  # noqa: E402
from solver.cost.ops.latency import predict_latency  # noqa: E402
from solver.inputs.latency_csv import read_latency_rows  # noqa: E402
from solver.inputs.model import ModelSpec, load_model  # noqa: E402
from solver.inputs.ops_profile import tables_for  # noqa: E402
from solver.inputs.profile import load_profile, parse_profile  # noqa: E402
from solver.inputs.validation_csv import matches, read_measurements  # noqa: E402
from solver.inputs.workload import Workload  # noqa: E402
from solver.report.table import render  # noqa: E402
from solver.report.validate_rows import fit_record, predict_row  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
V1_REV = "121dbde"  # last commit with schema-1 shipped profiles (serving fit on the roofline)


def roofline(profile):
    """The same profile without op tables: the v1 model."""
    raw = {k: v for k, v in profile.raw.items() if k != "ops"}
    return parse_profile({**raw, "schema_version": 1}, profile.path + " (v1 roofline)")


def v1_profile(name: str):
    try:
        text = subprocess.run(["git", "show", f"{V1_REV}:profiles/{name}"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return parse_profile(json.loads(text), f"profiles/{name}@{V1_REV}")


def latency_rows(out):
    prof = load_profile(ROOT / "profiles/a100.json")
    v1 = roofline(prof)
    for r in read_latency_rows(str(ROOT / "data/step_times/a100_vllm_latency.csv")):
        model = load_model(str(ROOT / r.model) if r.model.endswith(".json") else r.model)
        new = predict_latency(r, model, prof).latency_s(r.output_len) / r.latency_s - 1
        old = predict_latency(r, model, v1).latency_s(r.output_len) / r.latency_s - 1
        out.append(("A100 vLLM batch latency (decode steps)", r.gpu, r.tp, r.split, new, old))


def native_prefill_rows(out):
    prof = load_profile(ROOT / "profiles/h100.json")
    tables = tables_for(prof.ops, "vllm")
    fe = prof.prefill_efficiency.fit_error or {}
    path = SHARED / "h100/native_layer_prefill.csv"
    import csv
    for r in csv.DictReader(open(path)):
        b, s, tp = int(r["batch"]), int(r["seq"]), int(r["tp"])
        h, a, kv, f = int(r["hidden"]), int(r["heads"]), int(r["kv_heads"]), int(r["ffn"])
        model = ModelSpec(name="layer", num_layers=1, hidden_size=h, num_heads=a, num_kv_heads=kv, head_dim=h // a,
                          ffn_size=f, vocab_size=32000, gated_mlp=r["gated_mlp"] == "1")
        w = Workload(batch=b, prompt_len=s, output_len=0, dtype=r["dtype"])
        ops = layer_ops(prof, tables, model, tp, w, Step(prefill_batch=b, prefill_len=s, prefill_context=s))
        t_new = sum(o.total_s for o in ops if not o.comm)
        t_old = prefill_layer_s(prof, model, tp, w, b)
        meas = float(r["forward_ms"]) * 1e-3
        held = any(matches_native(r, sel) for sel in str(fe.get("holdout", "")).split(";") if sel)
        out.append(("H100 one-layer prefill (native SDPA)", "H100", tp, "held-out",
                    t_new / meas - 1, (t_old / meas - 1, "held-out" if held else "fit")))


def matches_native(r: dict, sel: str) -> bool:
    terms = [t.split("=") for t in sel.split(",") if "=" in t]
    return bool(terms) and all(str(r.get(k, "")).strip() == v.strip() for k, v in terms)


def l40s_rows(out):
    prof = load_profile(ROOT / "profiles/l40s.json")
    v1 = v1_profile("l40s.json")
    csv_path = str(SHARED / "vllm/l40s_llama70b_offline.csv")
    args = argparse.Namespace(assume_batch=30, assume_nic_gbps=12.5, gpu_memory_utilization=None, max_num_seqs=None,
                              csv=csv_path)
    fit_new, fit_old = fit_record([prof]), fit_record([v1]) if v1 else None
    for r in read_measurements(csv_path):
        if r.num_requests is None or (r.nodes > 1 and r.nic_gbps is None):
            continue
        new = predict_row(r, [prof], args).throughput_tok_s / r.measured_tok_s - 1
        split = "fit" if fit_new and matches(r, fit_new[1]) else "held-out"
        old = None
        if v1 is not None:
            old = (predict_row(r, [v1], args).throughput_tok_s / r.measured_tok_s - 1,
                   "fit" if fit_old and matches(r, fit_old[1]) else "held-out")
        out.append(("L40S vLLM 0.10 offline throughput", "L40S", r.tp, split, new, old))


def table(rows, markdown: bool) -> str:
    groups = defaultdict(lambda: {"fit": [], "held-out": [], "v1": {"fit": [], "held-out": []}})
    for ds, gpu, tp, split, new, old in rows:
        g = groups[(ds, gpu, tp)]
        g[split].append(abs(new))
        if old is not None:
            o, osplit = old if isinstance(old, tuple) else (old, split)
            g["v1"][osplit].append(abs(o))
    head = ["dataset", "GPU", "TP", "fit rows", "fit mean/max %", "held-out rows", "held-out mean/max %",
            "v1 roofline held-out mean/max %", "v1 fit mean/max %"]

    def mm(e):
        return f"{100 * sum(e) / len(e):.1f} / {100 * max(e):.1f}" if e else "-"
    body = [[ds, gpu, tp, len(g["fit"]), mm(g["fit"]), len(g["held-out"]), mm(g["held-out"]),
             mm(g["v1"]["held-out"]), mm(g["v1"]["fit"])] for (ds, gpu, tp), g in sorted(groups.items())]
    if not markdown:
        return render(head, body)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in body])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = p.parse_args(argv)
    rows: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-range notes: the table is the point here
        latency_rows(rows)
        native_prefill_rows(rows)
        if (SHARED / "vllm/l40s_llama70b_offline.csv").exists():
            l40s_rows(rows)
    print(table(rows, args.markdown))
    held = [abs(r[4]) for r in rows if r[3] == "held-out" and not r[0].startswith("H100")]
    if held:
        print(f"\nvLLM rows held out of every fit: {len(held)}, mean |err| {100 * sum(held) / len(held):.1f}%, "
              f"max {100 * max(held):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
