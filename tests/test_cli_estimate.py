"""`solver estimate` end to end through the CLI entry point, and the no-torch guarantee."""

import json
import subprocess
import sys

import pytest

from solver.cli import main
from tests.conftest import FIXTURES, ROOT

SYN = str(FIXTURES / "synthetic_profile.json")


def run_json(capsys, *args):
    assert main(["estimate", "--profile", SYN, "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_estimate_json_keys_and_numbers(capsys):
    """llama3-70b TP8 one middle layer, batch 8 x 2048: KV 8 x (2048+128) x 2*1*128*2 B =
    8,912,896 B = 0.0083 GiB; activation 4*T*h*p = 4*16384*8192*2 B = 1 GiB (synthetic fit)."""
    out = run_json(capsys, "--model", "llama3-70b", "--tp", "8", "--layers", "1", "--batch", "8",
                   "--prompt-len", "2048")
    assert set(out["memory_gib"]) == {"weights", "kv_cache", "activation_peak", "runtime_overhead", "total",
                                      "non_torch", "cuda_graphs"}
    assert set(out["time_ms"]) >= {"prefill", "decode_step", "tp_comm_prefill", "tp_comm_decode"}
    assert out["memory_gib"]["kv_cache"] == pytest.approx(8_912_896 / 2**30)
    assert out["memory_gib"]["activation_peak"] == pytest.approx(1.0)
    assert out["memory_gib"]["weights"] == pytest.approx(213_942_272 / 2**30)
    assert out["position"] == "middle"


def test_estimate_pipeline(capsys):
    out = run_json(capsys, "--model", "llama3-8b", "--tp", "2", "--pp", "2", "--batch", "4")
    assert [s["layers"] for s in out["stages"]] == [16, 16]
    assert out["pipeline"]["throughput_tok_s"] > 0


def test_estimate_human_table(capsys):
    assert main(["estimate", "--profile", SYN, "--model", "llama3-8b"]) == 0
    out = capsys.readouterr().out
    assert "weights" in out and "prefill_ms" in out


@pytest.mark.parametrize("args, msg", [
    (["--model", "llama3-70b", "--tp", "3"], "--tp: must be a power of two"),
    (["--model", "mixtral-8x7b", "--tp", "64"], "does not divide the 32 attention heads"),
    (["--model", "llama3-8b", "--layers", "40"], "--layers: must be in 1..32"),
    (["--model", "nope"], "--model: nope: unknown preset"),
    (["--model", "llama3-8b", "--batch", "0"], "--batch: must be an integer >= 1"),
    (["--model", "llama3-70b", "--tp", "8", "--pp", "4"], "--nic-gbps"),
])
def test_estimate_bad_input_exit_2(capsys, args, msg):
    assert main(["estimate", "--profile", SYN, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_bad_profile_path_exit_2(capsys):
    assert main(["estimate", "--profile", "/nope.json", "--model", "llama3-8b"]) == 2
    assert "/nope.json: cannot read file" in capsys.readouterr().err


def test_strict_refuses_uncalibrated(capsys):
    args = ["estimate", "--profile", str(ROOT / "profiles" / "a100.json"), "--model", "llama3-8b",
            "--tp", "2", "--strict"]
    rc = main(args)
    prof = json.loads((ROOT / "profiles" / "a100.json").read_text())
    if prof["memory"].get("activation_peak") is None:
        assert rc == 2 and "--strict" in capsys.readouterr().err


def test_solver_runs_without_torch():
    """Block torch at import time: the planner must never need it."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from solver.cli import main\n"
            f"rc = main(['estimate', '--profile', {SYN!r}, '--model', 'llama3-8b', '--json'])\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
