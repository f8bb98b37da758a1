"""scripts/gpu_check.sh and its report (calibrate/gpu_check.py), on CPU.

The GPU steps cannot run here; the dry run goes through the same script: the synthetic op
sweep and its fit, the NCCL step on gloo at world size 1 (torchrun, one process) and the
report; the memory dry runs are covered by test_mem_dryrun*.py."""

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from calibrate.gpu_check import compare_rows, report, shipped_profile
from calibrate.memory import fit as mem_fit
from solver.inputs.fields import load_json

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_shipped_profile_by_device_name():
    assert shipped_profile("NVIDIA H100 80GB HBM3", ROOT / "profiles").name == "h100.json"
    assert shipped_profile("NVIDIA A100-SXM4-80GB", ROOT / "profiles").name == "a100.json"
    assert shipped_profile("Some Future GPU", ROOT / "profiles") is None


def test_shipped_h100_predicts_its_own_native_rows():
    """profiles/h100.json's prefill curve was fitted on profiles/raw/h100_native.csv (held-out
    max 7.8%): predicting every prefill row again stays within 10% on average."""
    rows = mem_fit.read_raw(ROOT / "profiles" / "raw" / "h100_native.csv")
    line = compare_rows(load_json(ROOT / "profiles" / "h100.json"), rows)[0]
    mean = float(re.search(r"mean \|err\| ([\d.]+)%", line).group(1))
    assert line.startswith("- prefill time") and mean < 10.0


def test_report_sections(tmp_path):
    (tmp_path / "raw").mkdir()
    shutil.copy(ROOT / "profiles" / "raw" / "h100_native.csv", tmp_path / "raw" / "h100_native.csv")
    (tmp_path / "steps.tsv").write_text("mem_native\t0\t42\n")
    text = report(tmp_path, str(ROOT / "profiles" / "h100.json"))
    assert "| mem_native | 0 | 42 |" in text and "## Memory / time: h100_native.csv" in text
    assert "Refit: `calibrate fit-memory" in text


def dry_run(out, steps: str) -> None:
    """Run gpu_check.sh --dry-run into ``out`` with only ``steps``, on this test's interpreter."""
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_ONLY": steps, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", str(SCRIPT), str(out), "--dry-run"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash, timeout")
def test_dry_run_nccl_and_report(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    dry_run(out, "ops ops_fit nccl report")
    steps = dict(ln.split("\t")[:2] for ln in (out / "steps.tsv").read_text().splitlines())
    assert steps["nccl"] == "0" and steps["report"] == "0" and steps["mem_native"].startswith("not run")
    assert steps["ops"] == "0" and steps["ops_fit"] == "0"  # synthetic op sweep fitted by calibrate fit-ops
    rows = list(csv.DictReader((out / "raw" / "nccl_world1.csv").open()))
    # all_reduce, all_gather, reduce_scatter, broadcast (no send_recv at one rank) x 1 KiB..1 MiB
    assert len(rows) == 4 * 11 and {r_["ranks"] for r_ in rows} == {"1"}
    text = (out / "report.md").read_text()
    assert "## NCCL at world size 1" in text and "## Op sweep" in text
    r = subprocess.run(["bash", str(SCRIPT), str(out), "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 2 and "not empty" in r.stderr  # results are never overwritten


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash, timeout")
def test_dry_run_hf_memory_report_uses_the_shipped_phases_model(tmp_path):
    """The HF memory step's rows are compared with the shipped H100 activation model, a max over
    phases (``phases_max_v1``, no ``coef``): the report step must predict with it, not crash."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path / "out"
    dry_run(out, "mem_hf report")
    report = (out / "report.md").read_text()
    assert "activation peak minus KV (transformers-5.17-sdpa model): mean |err|" in report
