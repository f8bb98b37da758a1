"""scripts/profile_nccl.py checks everything before it measures (issue #10): bad flags,
no torch, nccl without CUDA, gloo into a real profile -- one line, exit 2, nothing written.
World size 1 runs the whole path on one-rank groups and touches no profile."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calibrate.cli import main as calibrate

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")


@pytest.fixture
def env1(monkeypatch):
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("flags, field", [
    (["--iters", "0"], "--iters"), (["--warmup", "-1"], "--warmup"), (["--timeout", "-3"], "--timeout"),
    (["--nominal-gbps", "-5"], "--nominal-gbps"), (["--min-bytes", "2M", "--max-bytes", "1M"], "--min-bytes"),
    (["--collectives", "all_reduce,bogus"], "--collectives"), (["--sizes-per-doubling", "0"], "--sizes-per-doubling"),
])
def test_bad_flags_one_line(tmp_path, capsys, env1, flags, field):
    from calibrate.nccl.run import main
    assert main(["--out", str(tmp_path / "p.json"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_without_torch(tmp_path, capsys, env1, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    from calibrate.nccl.run import main
    assert main(["--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs torch" in err


def test_nccl_without_cuda(tmp_path, capsys, env1):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from calibrate.nccl.run import main
    assert main(["--out", str(tmp_path / "p.json"), "--backend", "nccl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend" in err and "CUDA" in err


def test_not_under_torchrun(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    from calibrate.nccl.run import main
    assert main(["--out", str(tmp_path / "p.json")]) == 2
    assert "RANK" in capsys.readouterr().err


def _run1(tmp: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "scripts" / "profile_nccl.py"), "--backend", "gloo",
           "--init-method", f"file://{tmp}/init", "--min-bytes", "1K", "--max-bytes", "4K", "--iters", "2",
           "--warmup", "0", "--dtype", "fp32", *flags]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_world_one_and_preflight(tmp_path):
    """One process, gloo: (1) into a real A100 profile: refused before measuring, profile
    and raw untouched; (2) an existing --raw-out: refused; (3) into a synthetic profile:
    4 collectives (no send_recv) x 3 sizes (1, 2, 4 KiB) one-rank points, profile unchanged."""
    real, syn, raw = tmp_path / "real.json", tmp_path / "syn.json", tmp_path / "raw.csv"
    assert calibrate(["init", "--gpu", "A100-80GB", "--out", str(real)]) == 0
    assert calibrate(["init", "--gpu", "A100-80GB", "--synthetic", "--out", str(syn)]) == 0
    before = real.read_text(), syn.read_text()
    r = _run1(tmp_path, "--out", str(real), "--raw-out", str(raw))
    assert r.returncode == 2 and "synthetic" in r.stderr and "nothing measured" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not raw.exists() and real.read_text() == before[0]
    raw.write_text("precious\n")
    r = _run1(tmp_path, "--out", str(syn), "--raw-out", str(raw))
    assert r.returncode == 2 and "--force" in r.stderr and raw.read_text() == "precious\n"
    r = _run1(tmp_path, "--out", str(syn), "--raw-out", str(tmp_path / "w1.csv"))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "w1.csv").open()))
    assert len(rows) == 4 * 3 and {r_["ranks"] for r_ in rows} == {"1"}
    assert syn.read_text() == before[1] and "profile not touched" in r.stdout
    assert json.loads(syn.read_text())["provenance"]["synthetic"] is True
