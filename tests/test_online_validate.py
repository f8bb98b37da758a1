"""`solver validate` on an online CSV: rows simulated, errors per metric and split."""

import json

import pytest

from solver.cli import main
from solver.inputs.online_csv import read_online
from tests.conftest import FIXTURES, ROOT

SYN = str(FIXTURES / "synthetic_profile.json")
HEADER = "id,split,gpu,model,tp,input_len,output_len,concurrency,request_rate,num_prompts,tpot_p99_ms,output_tok_s\n"


def test_online_validate_json(capsys, write):
    """Two rows on the synthetic GPU; the measured values are the model's own predictions
    scaled by 1.1 and 0.8, so the errors are -1/11 and +1/4 exactly."""
    probe = write("p.csv", HEADER + "a,fit,SYN,llama3-8b,1,256,16,2,,20,1,1\n")
    assert main(["validate", str(probe), "--profile", SYN, "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)["rows"][0]["predicted"]
    tpot, tok = pred["tpot_p99_ms"], pred["output_tok_s"]
    csv = write("m.csv", HEADER + f"a,fit,SYN,llama3-8b,1,256,16,2,,20,{tpot * 1.1},{tok * 0.8}\n"
                                  f"b,held-out,SYN,llama3-8b,1,256,16,2,,20,{tpot * 1.1},\n")
    assert main(["validate", str(csv), "--profile", SYN, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "online"
    assert out["rows"][0]["err"]["tpot_p99_ms"] == pytest.approx(-1 / 11)
    assert out["rows"][0]["err"]["output_tok_s"] == pytest.approx(0.25)
    assert out["errors"]["tpot_p99_ms"]["held-out"]["mean_abs_err"] == pytest.approx(1 / 11)
    assert "output_tok_s" in out["errors"] and "held-out" not in out["errors"]["output_tok_s"]


@pytest.mark.parametrize("line, msg", [
    ("a,fit,SYN,llama3-8b,1,256,16,,,20,1,1", "column concurrency: give a concurrency or a request_rate"),
    ("a,fit,SYN,llama3-8b,1,256,16,2,,20,,", "no measured value"),
    ("a,maybe,SYN,llama3-8b,1,256,16,2,,20,1,", "column split: must be one of fit, held-out"),
    ("a,fit,SYN,llama3-8b,1,256,16,-2,,20,1,", "column concurrency: must be >= 1"),
])
def test_online_csv_errors(write, line, msg):
    from solver.errors import InputError
    with pytest.raises(InputError, match=msg):
        read_online(write("bad.csv", HEADER + line + "\n"))


def test_online_validate_bad_gpu_is_one_line(capsys, write):
    csv = write("g.csv", HEADER + "a,fit,NOPE-GPU,llama3-8b,1,256,16,2,,20,1,\n")
    assert main(["validate", str(csv), "--profile", SYN]) == 2
    err = capsys.readouterr().err.strip()
    assert "g.csv: row 1 (line 2), column gpu" in err and len(err.splitlines()) == 1


def test_shipped_online_data_reads():
    """The committed data file parses; every row names its source URL."""
    rows = read_online(ROOT / "data/online/a100_vllm019_online.csv")
    assert len(rows) == 26 and all(r.columns["source"].startswith("https://github.com/") for r in rows)
    assert {r.split for r in rows} == {"fit", "held-out"}
