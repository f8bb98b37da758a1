"""scripts/profile_memory.py --dry-run (CPU): shapes, files, fit plumbing; and the report."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from calibrate.memory import fit as mem_fit
from calibrate.memory.report import memory_report, plot_memory
from solver.inputs.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")
sys.path.insert(0, str(ROOT / "scripts"))
import profile_memory  # noqa: E402


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    d = tmp_path_factory.mktemp("dry")
    rc = profile_memory.main(["--dry-run", "--out", str(d / "p.json")])  # raw: default path
    assert rc == 0
    return d


def _raw(d: Path) -> Path:
    (raw,) = (d / "raw").glob("cpu_dry_run_native_*.csv")  # beside --out, named by content
    return raw


def test_dry_run_writes_synthetic_profile_and_raw(dry):
    prof = load_profile(dry / "p.json")  # well-formed: the solver's own loader accepts it
    assert prof.activation.source == "synthetic" and prof.prefill_efficiency.source == "synthetic"
    assert '"source": "measured"' not in (dry / "p.json").read_text()
    rows = mem_fit.read_raw(_raw(dry))
    # tiny grid: 2 shapes x tp {1,2} x layers {1,2} x 3 (b, s) points, a prefill and a decode row each
    assert len(rows) == 2 * 2 * 2 * 3 * 2
    pre = [r for r in rows if r["phase"] == "prefill"]
    assert all(r["peak_bytes"] > r["kv_bytes"] > 0 for r in pre)
    # native cache: K and V, b*(s+1) slots x local kv heads x d x 4 B (fp32) per layer
    r = next(r for r in pre if r["hidden"] == 128 and r["tp"] == 1 and r["layers"] == 1 and r["batch"] == 2
             and r["seq"] == 16)
    assert r["kv_bytes"] == 2 * 2 * 17 * 2 * 32 * 4
    meta = json.loads(Path(str(_raw(dry)) + ".meta.json").read_text())
    assert meta["source"] == "synthetic" and meta["device"].startswith("cpu")
    assert str(_raw(dry)) in json.loads((dry / "p.json").read_text())["provenance"]["sections"]["memory"]["raw"]


def test_dry_run_never_writes_into_the_repo(dry):
    """--out elsewhere: nothing under the repo's profiles/raw names a dry run."""
    assert not list((ROOT / "profiles" / "raw").glob("*dry_run*")) and not (ROOT / "profiles/raw/h100_native.csv.tmp").exists()


def test_existing_raw_refused_before_work(tmp_path, capsys):
    raw = tmp_path / "r.csv"
    raw.write_text("precious\n")
    assert profile_memory.main(["--dry-run", "--out", str(tmp_path / "p.json"), "--raw", str(raw)]) == 2
    assert "--force" in capsys.readouterr().err and raw.read_text() == "precious\n"
    assert not (tmp_path / "p.json").exists()


def test_dry_run_refuses_to_overwrite_measured(tmp_path):
    target = tmp_path / "h100.json"
    shutil.copy(ROOT / "profiles/h100.json", target)
    before = target.read_text()
    assert profile_memory.main(["--dry-run", "--out", str(target), "--raw", str(tmp_path / "r.csv")]) == 2
    assert target.read_text() == before


def test_report_table_and_png(tmp_path):
    prof = json.loads((ROOT / "profiles/h100.json").read_text())
    raws = [str(ROOT / "profiles/raw/h100_transformers.csv"), str(ROOT / "profiles/raw/h100_native.csv")]
    text = memory_report(prof, raws)
    assert "transformers-5.17-sdpa" in text and "held-out" in text
    pytest.importorskip("matplotlib")
    assert plot_memory(prof, raws, str(tmp_path / "m.png"))
    assert (tmp_path / "m.png").stat().st_size > 1000
