"""Profile contract: the shipped files load, bad files are rejected with file + field."""

import json

import pytest

from solver.errors import InputError
from solver.inputs.profile import load_profile, load_profiles, profile_for
from tests.conftest import FIXTURES, ROOT


def _synthetic() -> dict:
    return json.loads((FIXTURES / "synthetic_profile.json").read_text())


def test_shipped_profiles_load_and_never_claim_measured_a100():
    profs = load_profiles([str(ROOT / "profiles")])
    names = {p.gpu_name for p in profs}
    assert {"A100-SXM4-80GB", "H100-SXM-80GB"} <= names
    a100 = next(p for p in profs if p.gpu_name == "A100-SXM4-80GB")
    # design.md section 6: no A100 was measured for this project
    for c in a100.collectives:
        assert c.source != "measured"
    assert a100.memory_gib.source == "published"


def test_gpu_alias_matching():
    profs = load_profiles([str(ROOT / "profiles")])
    assert profile_for("a100-80gb", profs).gpu_name == "A100-SXM4-80GB"
    assert profile_for("NVIDIA H100 80GB HBM3", profs).gpu_name == "H100-SXM-80GB"
    with pytest.raises(InputError, match="no profile for GPU 'B200'"):
        profile_for("B200", profs)


def _bad(tmp_path, mutate):
    d = _synthetic()
    mutate(d)
    p = tmp_path / "p.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError) as e:
        load_profile(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)
    return e.value


def test_wrong_schema_version(tmp_path):
    e = _bad(tmp_path, lambda d: d.update(schema_version=3))
    assert e.field == "schema_version" and "reads 1, 2" in e.reason


def test_missing_section(tmp_path):
    assert _bad(tmp_path, lambda d: d.pop("gpu")).field == "gpu"


def test_bad_source(tmp_path):
    e = _bad(tmp_path, lambda d: d["gpu"]["hbm_gbps"].update(source="guess"))
    assert e.field == "gpu.hbm_gbps.source" and "measured" in e.reason


def test_unknown_key_suggests(tmp_path):
    e = _bad(tmp_path, lambda d: d["collectives"][0].update(busbw_gpbs=1.0))
    assert e.field == "collectives[0].busbw_gpbs" and "busbw_gbps" in e.reason


def test_bad_scope(tmp_path):
    e = _bad(tmp_path, lambda d: d["collectives"][0].update(scope="intranode"))
    assert e.field == "collectives[0].scope" and "intra_node" in e.reason


def test_efficiency_above_one(tmp_path):
    e = _bad(tmp_path, lambda d: d["compute"]["prefill_efficiency"].update(value=1.5))
    assert e.field == "compute.prefill_efficiency.value"


def test_folder_without_profiles(tmp_path):
    with pytest.raises(InputError, match="no \\*.json profiles"):
        load_profiles([str(tmp_path)])


def test_not_json(tmp_path):
    p = tmp_path / "p.json"
    p.write_text("schema_version: 1")
    with pytest.raises(InputError, match="invalid JSON"):
        load_profile(p)
