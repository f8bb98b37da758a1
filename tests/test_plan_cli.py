"""``solver plan`` end to end: tables, JSON, atomic --out, one-line errors with exit 2."""

import json
import shutil
from pathlib import Path

import pytest

from solver.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "synthetic_profile.json"
CLUSTER = """
name: syn-pool
node_groups:
  - {name: a, count: 2, gpu: SYN-80, gpus_per_node: 2, interconnect: nvlink, nic_gbps: 25, usd_per_gpu_hour: 2.0}
"""


@pytest.fixture
def args(write):
    c = write("pool.yaml", CLUSTER)
    return ["plan", "--profile", str(FIX), "--model", "llama3-8b", "--cluster", str(c),
            "--batch", "8", "--prompt-len", "512", "--output-len", "64"]


def test_json_has_status_gap_and_replicas(args, capsys):
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "optimal" and out["gap"] == 0
    assert out["throughput_tok_s"] == pytest.approx(sum(r["throughput_tok_s"] for r in out["replicas"]))
    assert out["usd_per_hour"] == pytest.approx(2.0 * out["gpus_used"])
    assert set(out["baselines"]) == {"homogeneous", "greedy"}
    assert all(r["vllm"]["ok"] for r in out["replicas"])
    stage = out["replicas"][0]["stages"][0]
    assert stage["memory_used_gib"] + stage["memory_free_gib"] == pytest.approx(80.0)


def test_table_and_atomic_out(args, capsys, tmp_path):
    target = tmp_path / "plan.json"
    assert main(args + ["--out", str(target)]) == 0
    text = capsys.readouterr().out
    assert "status optimal" in text and "baselines computed by the tool" in text and "vllm serve" in text
    assert json.loads(target.read_text())["status"] == "optimal"
    assert "validator: ok" in text and json.loads(target.read_text())["validator"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "pool.yaml"]  # no temp file left


def test_profile_folder(args, capsys, tmp_path):
    folder = tmp_path / "profiles"
    folder.mkdir()
    shutil.copy(FIX, folder / "syn.json")
    i = args.index("--profile")
    assert main(args[:i + 1] + [str(folder)] + args[i + 2:] + ["--json"]) == 0


def test_missing_profile_lists_the_types(write, args, capsys):
    c = write("two.yaml", CLUSTER + "  - {name: b, count: 1, gpu: L40S, gpus_per_node: 4, interconnect: pcie, "
                                    "nic_gbps: 12.5}\n  - {name: c, count: 1, gpu: V100, gpus_per_node: 4, "
                                    "interconnect: pcie, nic_gbps: 12.5}\n")
    args[args.index("--cluster") + 1] = str(c)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "no profile for GPU type(s) L40S, V100" in err and "\n" not in err


def test_infeasible_is_one_line_exit_2(write, args, capsys, tmp_path):
    target = tmp_path / "plan.json"
    args[args.index("llama3-8b")] = "llama3.1-405b"
    assert main(args + ["--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "solver: error: llama3.1-405b needs 756 GiB of weights; the pool has 320 GiB"
    assert not target.exists()


@pytest.mark.parametrize("extra, field", [
    (["--objective", "cost"], "--min-throughput"),
    (["--max-replicas", "0"], "--max-replicas"),
    (["--time-limit", "0"], "--time-limit"),
    (["--out", "/nonexistent/dir/plan.json"], "--out"),
])
def test_bad_flags(args, capsys, extra, field):
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert field in err and "\n" not in err


def test_shipped_example_plans(capsys):
    """README's first command: the shipped mixed A100 + H100 pool with the shipped profiles."""
    argv = ["plan", "--profile", str(ROOT / "profiles/a100.json"), "--profile", str(ROOT / "profiles/h100.json"),
            "--model", "llama3-70b", "--cluster", str(ROOT / "examples/clusters/mixed.yaml"),
            "--batch", "32", "--prompt-len", "2048", "--output-len", "512", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "optimal" and out["throughput_tok_s"] > 0
    hom = out["baselines"]["homogeneous"]["throughput_tok_s"]
    assert out["throughput_tok_s"] >= hom * (1 - 1e-9)


def test_two_profiles_for_one_gpu_in_a_folder_is_an_error_a_file_wins(args, capsys, tmp_path):
    """README flow: `calibrate init --out profiles/my_a100.json` next to the shipped one. A
    folder holding two profiles of the plan's GPU is one line naming both; the same folder
    plus the file itself plans with the file, and the plan says which file it used."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    shutil.copy(FIX, folder / "syn.json")
    shutil.copy(FIX, folder / "my_syn.json")
    i = args.index("--profile")
    with_folder = args[:i + 1] + [str(folder)] + args[i + 2:]
    assert main(with_folder) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "my_syn.json and " in err and "syn.json" in err and "--profile FILE" in err
    assert main(with_folder + ["--profile", str(folder / "my_syn.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["profiles_used"] == {"SYN-80": str(folder / "my_syn.json")}
    assert main(with_folder + ["--profile", str(folder / "my_syn.json")]) == 0
    assert f"profiles: SYN-80 <- {folder / 'my_syn.json'}" in capsys.readouterr().out


def test_quiet_and_no_bar_when_not_a_terminal(args, capsys):
    """The progress bar is for terminals: captured stderr (not a TTY) gets none, --quiet neither."""
    assert main(args + ["--json"]) == 0
    assert "layouts" not in capsys.readouterr().err
    assert main(args + ["--json", "--quiet"]) == 0
    assert "layouts" not in capsys.readouterr().err
