"""Shared H100 data -> raw rows, and the shipped profiles/h100.json built from them."""

import json
from pathlib import Path

import pytest

from calibrate.memory import profile as mem_profile
from calibrate.importers.h100_shared import import_shared
from solver.inputs.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests/fixtures/h100_shared_sample"


def test_import_sample_rows():
    """native line 1: b=8 s=512 h=4096 t=1, peak 0.554688 GiB = 595,592,960 B (6-decimal GiB),
    kv = 2*4096 tokens*32 heads*128*2 B = 67,108,864 B (the file's 0.0625 GiB); FLOPs
    1,675,037,245,440 over 2.5808 ms = 649.0 TFLOP/s, as the file says."""
    rows = import_shared(SAMPLE)
    nat = rows["native-sdpa"][0]
    assert nat["kv_bytes"] == 67108864
    assert nat["peak_bytes"] == round(0.554688 * 2**30)
    assert nat["flops"] / (nat["time_ms"] * 1e-3) / 1e12 == pytest.approx(649.0, abs=0.1)
    hf = rows["transformers-5.17-sdpa"]
    # 4 layers, tp=1, b=8 s=512, 8 KV heads: 2*4096*8*128*2 B*4 layers = 64 MiB = 0.0625 GiB
    assert [r["kv_bytes"] for r in hf if r["layers"] == 4 and r["tp"] == 1] == [67108864]
    assert {r["source"] for r in hf} == {"measured"}


def test_bad_kv_column_is_one_line_error(tmp_path):
    for name in ("native_layer_prefill.csv", "transformers_llama_prefill.csv"):
        text = (SAMPLE / name).read_text()
        (tmp_path / name).write_text(text.replace(",0.0625,0.376953,", ",0.5,0.376953,"))
    with pytest.raises(Exception, match="kv_gib"):
        import_shared(tmp_path)


def test_shipped_h100_profile_is_measured_within_10_percent():
    prof = load_profile(ROOT / "profiles/h100.json")
    act = prof.activation
    assert act.source == "measured" and "shared/data/h100" in act.ref
    assert act.fit_error["held_out"] >= 5 and act.fit_error["max_rel"] <= 0.10
    assert prof.prefill_efficiency.source == "measured" and prof.prefill_efficiency.fit_error["max_rel"] <= 0.10
    assert prof.decode_efficiency.source == "default"  # shared decode times are launch-bound
    assert prof.runtime_overhead_gib.source == "default"  # no mem_get_info in the shared data
    assert "1.15" not in json.dumps(prof.raw["memory"])


def test_refit_from_shipped_raw_reproduces_profile(tmp_path):
    """profiles/raw/h100_*.csv + the build script's flags give back the shipped coefficients."""
    shipped = json.loads((ROOT / "profiles/h100.json").read_text())
    raws = [str(ROOT / "profiles/raw/h100_transformers.csv"), str(ROOT / "profiles/raw/h100_native.csv")]
    rows, metas = mem_profile.load_rows(raws)
    out = mem_profile.fit_into_profile(rows, metas, str(tmp_path / "h.json"), gpu="H100",
                                   memory_runtime="transformers-5.17-sdpa", compute_runtime="native-sdpa",
                                   min_layers=2, raw_paths=raws)
    assert out["memory"]["activation_peak"]["phases"] == shipped["memory"]["activation_peak"]["phases"]
    assert out["compute"]["prefill_efficiency"] == shipped["compute"]["prefill_efficiency"]
    assert "collectives" not in shipped["provenance"]["sections"].get("memory", {})
