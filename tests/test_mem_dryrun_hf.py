"""The Hugging Face builder of scripts/profile_memory.py on CPU (--dry-run): a real
``LlamaModel`` from a ``LlamaConfig`` with TP-sharded sizes, no download. Skipped when
transformers is not installed (it is in the ``test`` extra)."""

import sys
from pathlib import Path

import pytest

from calibrate.memory import fit as mem_fit
from solver.inputs.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(ROOT / "scripts"))
import profile_memory  # noqa: E402


def test_transformers_dry_run(tmp_path):
    rc = profile_memory.main(["--dry-run", "--runtime", "transformers", "--out", str(tmp_path / "p.json"),
                              "--raw", str(tmp_path / "raw.csv")])
    assert rc == 0
    prof = load_profile(tmp_path / "p.json")
    assert prof.activation.runtime.startswith("transformers-") and prof.activation.source == "synthetic"
    rows = mem_fit.read_raw(tmp_path / "raw.csv")
    assert len(rows) == 2 * 2 * 2 * 3 * 2  # same tiny grid as the native dry run
    r = next(r for r in rows if r["phase"] == "prefill" and r["hidden"] == 128 and r["tp"] == 1
             and r["layers"] == 1 and r["batch"] == 2 and r["seq"] == 16)
    # HF DynamicCache: K and V, b*s slots x local kv heads x d x 4 B (fp32) per layer
    assert r["kv_bytes"] == 2 * 2 * 16 * 2 * 32 * 4
