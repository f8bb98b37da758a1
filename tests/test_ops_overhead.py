"""``calibrate fit-step-overhead`` recovers the overhead that generated the latencies (brute
force: latencies computed by the same model with known coefficients), and the held-out
rows are scored, not fitted."""

import json

import pytest

from calibrate.cli import main
from solver.cost.ops.latency import predict_latency
from solver.inputs.latency_csv import read_latency_rows
from solver.inputs.model import load_model
from solver.inputs.profile import load_profile

from conftest import FIXTURES
from test_ops_tables import SRC, ops_section

TRUE = {"decode": 2.0, "per_seq": 0.1, "per_rank": 0.5, "per_seq_rank": 0.02}
HEAD = "id,split,gpu,model,tp,pp,runtime,dtype,batch,input_len,output_len,latency_s,source,note\n"


def _profile(tmp_path, name, overhead):
    data = json.loads((FIXTURES / "synthetic_profile.json").read_text())
    ops = ops_section()
    ops["vllm-0.1"]["all_reduce"] += [{"impl": "nccl", "ranks": r, "size_bytes": [1, 1e9], "time_us": [100, 100], **SRC}
                                      for r in (4, 8)]
    if overhead:
        ops["vllm-0.1"]["step_overhead_ms"] = {k: {"value": v, **SRC} for k, v in overhead.items()}
        ops["vllm-0.1"]["step_overhead_ms"]["prefill"] = {"value": overhead["decode"], **SRC}
    else:
        del ops["vllm-0.1"]["step_overhead_ms"]
    data.update(schema_version=2, ops=ops)
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_fit_recovers_known_overhead(tmp_path, capsys):
    truth = load_profile(_profile(tmp_path, "truth.json", TRUE))
    model = load_model("llama3-8b")
    csv = tmp_path / "lat.csv"
    lines = [HEAD]
    for i, (tp, b) in enumerate([(2, 1), (8, 1), (2, 64), (8, 64), (4, 16), (4, 1)]):
        split = "held-out" if tp == 4 else "fit"
        lines.append(f"r{i},{split},SYN-80,llama3-8b,{tp},1,vllm,bf16,{b},8,50,1.0,test,\n")
    csv.write_text("".join(lines))
    rows = read_latency_rows(str(csv))
    lat = [predict_latency(r, model, truth).latency_s(r.output_len) for r in rows]
    csv.write_text(HEAD + "".join(ln.replace(",1.0,test", f",{t:.9f},test") for ln, t in zip(lines[1:], lat)))
    target = _profile(tmp_path, "fit.json", None)
    assert main(["fit-step-overhead", str(csv), "--profile", str(target), "--ref", "brute force"]) == 0
    got = json.loads(target.read_text())["ops"]["vllm-0.1"]["step_overhead_ms"]
    for k, v in TRUE.items():
        assert got[k]["value"] == pytest.approx(v, rel=1e-3, abs=1e-4)
    fe = got["decode"]["fit_error"]
    assert fe["fit_rows"] == 4 and fe["held_out_rows"] == 2 and fe["held_out_max_abs_rel"] < 1e-4
