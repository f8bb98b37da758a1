"""``solver validate`` and ``calibrate fit-serving`` end to end on small CSVs."""

import json
import shutil
from pathlib import Path

import pytest

from calibrate.cli import main as calibrate_main
from solver.cli import main as solver_main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
HEADER = ("model,gpu,nodes,gpus_used_per_node,interconnect,nic_gbps,tp,pp,input_len,output_len,"
          "num_requests,measured_tok_s,source\n")


def _csv(write, rows):
    return write("m.csv", HEADER + "".join(rows))


def test_validate_json(write, capsys):
    """One complete row and one with a blank num_requests: the headline error covers the
    complete (held-out) row only; the other is marked `assumed`."""
    path = _csv(write, ["llama3-8b,SYN,1,2,nvlink,,2,1,1000,100,8,5000,lab\n",
                        "llama3-8b,SYN,2,1,nvlink,25,1,2,1000,100,,4000,lab\n"])
    assert solver_main(["validate", str(path), "--profile", str(FIXTURES / "synthetic_profile.json"),
                        "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    held, assumed = out["rows"]
    assert (held["role"], assumed["role"]) == ("held-out", "assumed")
    assert assumed["assumed"] == ["num_requests=30"]
    assert out["mean_abs_err"] == pytest.approx(abs(held["err"]))
    assert held["err"] == pytest.approx(held["predicted_tok_s"] / 5000 - 1)
    assert out["groups"]["all"]["rows"] == 2


def test_validate_table_and_plot(write, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = _csv(write, ["llama3-8b,SYN,1,2,nvlink,,2,1,1000,100,8,5000,lab\n"])
    png = tmp_path / "err.png"
    assert solver_main(["validate", str(path), "--profile", str(FIXTURES / "synthetic_profile.json"), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "predicted vs measured" in out and "held-out:   1 rows" in out
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("row, match", [
    ("llama3-8b,H100,1,2,nvlink,,2,1,1000,100,8,5000,lab\n", r"row 1 \(line 2\), column gpu: no profile for GPU 'H100'"),
    ("llama9,SYN,1,2,nvlink,,2,1,1000,100,8,5000,lab\n", r"row 1 \(line 2\), column model: unknown preset"),
    ("llama3-8b,SYN,1,2,nvlink,,2,1,1000,100,8,-5,lab\n", r"column measured_tok_s: must be >= "),
])
def test_validate_bad_input_exits_2_with_one_line(write, capsys, row, match):
    path = _csv(write, [row])
    assert solver_main(["validate", str(path), "--profile", str(FIXTURES / "synthetic_profile.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    import re
    assert re.search(match, err), err


def test_fit_serving_recovers_a_known_setting(write, tmp_path, capsys):
    """Rows "measured" by the model itself with an engine all-reduce (2 ranks: hop 30 us,
    busbw 2 GB/s) and no step overhead: three rows are fitted back to < 1% error (three
    parameters; hop and step overhead trade off, so the values need not come back), the
    fourth, a PP2 deployment held out, is predicted within 5%; the fit is written with its
    provenance."""
    truth = tmp_path / "truth.json"
    raw = json.loads((FIXTURES / "synthetic_profile.json").read_text())
    raw["serving"] = {"tp_allreduce": [{"ranks": 2, "hop_us": 30.0, "busbw_gbps": 2.0, "source": "synthetic"}]}
    truth.write_text(json.dumps(raw))
    configs = [(2, 1, 1000, 100, 8), (2, 1, 200, 400, 32), (2, 1, 4000, 50, 4), (2, 2, 1000, 200, 16)]
    rows = []
    for tp, pp, inp, out, batch in configs:
        rows.append(f"llama3-8b,SYN,1,{tp * pp},nvlink,,{tp},{pp},{inp},{out},{batch},1,lab\n")
    path = _csv(write, rows)
    assert solver_main(["validate", str(path), "--profile", str(truth), "--json"]) == 0
    predicted = [r["predicted_tok_s"] for r in json.loads(capsys.readouterr().out)["rows"]]
    rows = [r.replace(",1,lab", f",{p:.6g},{'fit' if i < 3 else 'hold'}") for i, (r, p) in enumerate(zip(rows, predicted))]
    path = _csv(write, rows)
    prof = tmp_path / "syn.json"
    shutil.copy(FIXTURES / "synthetic_profile.json", prof)
    assert calibrate_main(["fit-serving", str(path), "--profile", str(prof), "--fit-rows", "source=fit",
                           "--gpu-memory-utilization", "0.9", "--runtime", "synthetic", "--ref", "test"]) == 0
    serving = json.loads(prof.read_text())["serving"]
    (ar,) = serving["tp_allreduce"]
    assert ar["fit_error"]["max_abs_rel"] < 0.01 and ar["fit_error"]["held_out_rows"] == 1
    assert ar["fit_error"]["held_out_max_abs_rel"] < 0.05
    assert ar["source"] == "published" and "test" in ar["ref"]


def test_fit_serving_needs_rows(write, tmp_path):
    path = _csv(write, ["llama3-8b,SYN,1,2,nvlink,,2,1,1000,100,,5000,lab\n"])
    prof = tmp_path / "syn.json"
    shutil.copy(FIXTURES / "synthetic_profile.json", prof)
    assert calibrate_main(["fit-serving", str(path), "--profile", str(prof), "--fit-rows", "source=lab",
                           "--gpu-memory-utilization", "0.9", "--runtime", "x", "--ref", "y"]) == 2


def test_fit_serving_bus_bandwidth_never_exceeds_the_link():
    """The search maps R to (0, cap): logit 0 is cap/2 (31.5 -> 15.75 GB/s), a huge logit stays
    below the PCIe 4.0 x16 31.5 GB/s whatever Nelder-Mead tries; hop is exp(x): exp(log 10) =
    10 us; overhead sqrt(0.25)^2 = 0.25 ms. Encoding a start above the cap clamps it to 99%."""
    import math

    from calibrate.serving.fit import _decode, _encode
    d = _decode([math.log(10.0), 0.0, 0.5], [8], 31.5)
    assert d["tp_allreduce"][8] == pytest.approx((10.0, 15.75)) and d["decode_step_overhead_ms"] == 0.25
    assert _decode([0.0, 50.0, 0.0], [8], 31.5)["tp_allreduce"][8][1] <= 31.5
    x = _encode(10.0, 80.0, 0.25, [8], 31.5)
    assert _decode(x, [8], 31.5)["tp_allreduce"][8][1] == pytest.approx(0.99 * 31.5)
