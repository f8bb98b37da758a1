"""The profile's ``serving`` section: parsing, errors, and the engine all-reduce it carries."""

import json

import pytest

from solver.cost import comm
from solver.errors import InputError
from solver.inputs.profile import load_profile


def _with_serving(synthetic_profile, tmp_path, serving):
    raw = json.loads(open(synthetic_profile.path).read())
    raw["serving"] = serving
    p = tmp_path / "p.json"
    p.write_text(json.dumps(raw))
    return load_profile(p)


AR4 = {"ranks": 4, "hop_us": 10.0, "busbw_gbps": 5.0, "source": "synthetic"}


def test_engine_allreduce_wins_over_collective_fit(synthetic_profile, tmp_path):
    """4 ranks, 1e6 B: 2(4-1) = 6 hops x 10 us + 2(3)/4 x 1e6 B / 5 GB/s (300 us) = 360 us
    (the synthetic collective fit alone would give 10 + 15 = 25 us)."""
    prof = _with_serving(synthetic_profile, tmp_path, {"tp_allreduce": [AR4], "runtime": "synthetic"})
    assert comm.tp_allreduce_s(prof, 4, 1e6) == pytest.approx(360e-6)
    assert comm.tp_allreduce_s(synthetic_profile, 4, 1e6) == pytest.approx(25e-6)


def test_engine_allreduce_nearest_ranks_with_warning(synthetic_profile, tmp_path):
    """2 ranks from the 4-rank entry: 2 hops x 10 us + 1 x 1e6 / 5e3 us = 220 us."""
    from solver.cost.warn import CalibrationWarning
    prof = _with_serving(synthetic_profile, tmp_path, {"tp_allreduce": [AR4]})
    with pytest.warns(CalibrationWarning, match="no serving.tp_allreduce entry for 2 ranks"):
        assert comm.tp_allreduce_s(prof, 2, 1e6) == pytest.approx(220e-6)


def test_serving_values_parsed(synthetic_profile, tmp_path):
    prof = _with_serving(synthetic_profile, tmp_path, {
        "gpu_memory_utilization": {"value": 0.85, "source": "published", "ref": "x"},
        "max_num_seqs": {"value": 128, "source": "default"}})
    assert prof.serving["gpu_memory_utilization"].value == 0.85
    assert prof.serving["max_num_seqs"].source == "default"


@pytest.mark.parametrize("serving, match", [
    ({"decode_step_overhead": {"value": 1, "source": "default"}}, r"serving.decode_step_overhead: unknown key"),
    ({"gpu_memory_utilization": {"value": 1.5, "source": "default"}}, r"must be in \[0.05, 1\]"),
    ({"max_num_seqs": {"value": 8, "source": "guess"}}, r"serving.max_num_seqs.source: must be one of"),
    ({"tp_allreduce": [AR4, AR4]}, r"one entry per ranks"),
    ({"tp_allreduce": [{"ranks": 4, "hop_us": 1.0, "source": "default"}]},
     r"serving.tp_allreduce\[0\].busbw_gbps: required"),
])
def test_serving_errors_name_the_field(synthetic_profile, tmp_path, serving, match):
    with pytest.raises(InputError, match=match):
        _with_serving(synthetic_profile, tmp_path, serving)


def test_shipped_l40s_profile_has_a_fitted_serving_section():
    """profiles/l40s.json: written by scripts/build_published_profiles.sh (fit-serving)."""
    from pathlib import Path
    prof = load_profile(Path(__file__).resolve().parents[1] / "profiles" / "l40s.json")
    assert {a.ranks for a in prof.engine_allreduce} == {4, 8}
    assert all(a.source == "published" and a.fit_error["held_out_rows"] > 0 for a in prof.engine_allreduce)
    assert prof.serving["gpu_memory_utilization"].value == 0.85
    assert prof.interconnect == "pcie"


def test_shipped_a10g_profile_says_its_tflops_are_assumed():
    from pathlib import Path
    prof = load_profile(Path(__file__).resolve().parents[1] / "profiles" / "a10g.json")
    assert prof.matches("A10G") and prof.matches("NVIDIA A10G")
    assert prof.peak_tflops["fp16"].source == "default"
    assert prof.hbm_gbps.value == 600.0
