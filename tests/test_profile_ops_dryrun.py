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
