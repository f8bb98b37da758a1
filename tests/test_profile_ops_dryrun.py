"""scripts/profile_ops.py --dry-run -> calibrate fit-ops -> a profile the solver reads: the whole
measurement path on CPU, with synthetic (labelled) data."""

import json
import subprocess
import sys

import pytest

from calibrate.cli import main
from conftest import ROOT
from solver.cost.stage import Stage, stage_breakdown
from solver.inputs.model import load_model
from solver.inputs.profile import load_profile
from solver.inputs.workload import Workload


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    subprocess.run([sys.executable, str(ROOT / "scripts/profile_ops.py"), "--dry-run", "--out-dir", str(out),
                    "--models", "llama3-8b", "--tp", "1,2", "--max-m", "64"], check=True, capture_output=True)
    return out / "ops_syn_80.csv"


def test_raw_csv_and_metadata(raw):
    meta = json.loads((raw.parent / (raw.name + ".meta.json")).read_text())
    assert meta["source"] == "synthetic" and "dry-run" in meta["note"]
    assert "gemm,bf16,1,4096,4096," in raw.read_text()


def test_fit_ops_writes_tables_the_solver_uses(raw, tmp_path):
    out = tmp_path / "p.json"
    assert main(["fit-ops", str(raw), "--out", str(out), "--gpu", "A100-80GB"]) == 0
    prof = load_profile(out)
    tab = prof.ops["native"]
    g = tab.gemm["bf16"]
    # m = 1..64 (max-m 64); llama3-8b TP1/TP2 shards: k in {4096, 2048 (o at TP2), 14336, 7168}
    assert g.axes[0] == (1, 2, 4, 8, 16, 32, 64) and {2048, 4096, 7168, 14336} <= set(g.axes[2])
    # synthetic GEMM m=1, n=4096 (o_proj), k=4096: 5 us + 2(4096 + 4096*4096 + 4096) = 33,570,816 B at 1e12 B/s
    i_n, i_k = g.axes[1].index(4096.0), g.axes[2].index(4096.0)
    assert g.values[i_n * len(g.axes[2]) + i_k] == pytest.approx(5 + 33.570816, rel=1e-3)
    assert tab.gemm["bf16"].source == "synthetic"
    ops = stage_breakdown(Stage(prof, 2, 2, True, True), load_model("llama3-8b"), Workload(batch=2, prompt_len=64), 2)
    assert any(o.name == "qkv_proj" and o.source.startswith("synthetic") for o in ops[1])


def _fake_measured(raw, tmp_path, gpu):
    """The dry-run CSV relabelled as measured on ``gpu`` (rows and .meta.json): the GPU rule's input."""
    csv_path = tmp_path / "ops_real.csv"
    csv_path.write_text(raw.read_text().replace(",synthetic\n", ",measured\n"))
    meta = json.loads((raw.parent / (raw.name + ".meta.json")).read_text())
    (tmp_path / "ops_real.csv.meta.json").write_text(json.dumps(dict(meta, gpu=gpu, source="measured")))
    return csv_path


def test_fit_ops_refuses_synthetic_into_a_real_profile(raw, tmp_path, capsys):
    """SYN-80 dry-run rows into a profile made by `calibrate init` (not --synthetic): exit 2, file unchanged."""
    out = tmp_path / "a100.json"
    assert main(["init", "--gpu", "A100-80GB", "--out", str(out)]) == 0
    before = out.read_text()
    assert main(["fit-ops", str(raw), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "provenance.synthetic" in err and "init --synthetic" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == before
    # a profile created as synthetic takes them (GPU rule not applied: SYN-80 stands for any GPU there)
    syn = tmp_path / "syn.json"
    assert main(["init", "--gpu", "A100-80GB", "--out", str(syn), "--synthetic"]) == 0
    assert main(["fit-ops", str(raw), "--out", str(syn)]) == 0
    assert load_profile(syn).ops["native"].gemm["bf16"].source == "synthetic"


def test_fit_ops_gpu_rule(raw, tmp_path, capsys):
    """Data measured on an H100 into an A100 profile: refused without --proxy-reason (exit 2, nothing
    written), accepted with it (the reason lands in the tables' ref); A100 data goes in as is."""
    out = tmp_path / "a100.json"
    assert main(["init", "--gpu", "A100-80GB", "--out", str(out)]) == 0
    before = out.read_text()
    h100 = _fake_measured(raw, tmp_path, "NVIDIA H100 80GB HBM3")
    assert main(["fit-ops", str(h100), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--proxy-reason" in err and "H100" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == before
    assert main(["fit-ops", str(h100), "--out", str(out), "--proxy-reason", "same kernels, test"]) == 0
    g = load_profile(out).ops["native"].gemm["bf16"]
    assert g.source == "measured" and "same kernels, test" in json.dumps(json.loads(out.read_text())["ops"])
    a100 = _fake_measured(raw, tmp_path, "NVIDIA A100-SXM4-80GB")
    assert main(["fit-ops", str(a100), "--out", str(out)]) == 0
    assert "measured on" not in json.dumps(json.loads(out.read_text())["ops"])
