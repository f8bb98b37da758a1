from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def synthetic_profile():
    from solver.inputs.profile import load_profile
    return load_profile(FIXTURES / "synthetic_profile.json")


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> path of a file in a temp folder."""
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p
    return _write
