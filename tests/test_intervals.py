"""Intervals from provenance (solver/cost/intervals.py): corners of the default ranges."""

import json
from pathlib import Path

import pytest

from solver.cli import main
from solver.cost import intervals
from solver.cost.stage import Stage, stage_time
from solver.inputs.model import parse_hf_config
from solver.inputs.profile import load_profile
from solver.inputs.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOY = parse_hf_config({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 1024,
                       "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 4096,
                       "vocab_size": 64}, "toy")


@pytest.fixture
def default_decode(synthetic_profile, tmp_path):
    """The synthetic profile with decode efficiency 0.5 as a `default` (plausible x0.5..x1) and
    the bf16 peak a `default` with plausible [500, 1000] TFLOP/s."""
    raw = json.loads(Path(synthetic_profile.path).read_text())
    raw["compute"]["decode_efficiency"].update(source="default", plausible_scale=[0.5, 1.0])
    raw["gpu"]["peak_tflops"]["bf16"].update(source="default", plausible=[500, 1000])
    (tmp_path / "d.json").write_text(json.dumps(raw))
    return load_profile(tmp_path / "d.json")


def test_corners_take_each_default_to_its_ends(default_decode):
    low, high = intervals.corner(default_decode, "low"), intervals.corner(default_decode, "high")
    assert (low.peak_tflops["bf16"].value, high.peak_tflops["bf16"].value) == (500, 1000)
    assert (low.decode_efficiency.at(1), high.decode_efficiency.at(1)) == (0.25, 0.5)
    assert low.prefill_efficiency.at(1) == high.prefill_efficiency.at(1) == 0.5  # synthetic: not widened
    # the serving overheads the profile does not give are 0 by assumption, 10 ms at worst
    assert (low.serving["decode_step_overhead_ms"].value, high.serving["decode_step_overhead_ms"].value) == (10, 0)


def test_decode_step_interval_by_hand(default_decode):
    """TOY, TP1, batch 2, prompt 1000, output 11, fp16 (test_serving_model): one decode step
    reads 41,795,584 B per layer. Expected at efficiency 0.5 (5e11 B/s): 2 x 8.3591168e-5 +
    LM head 2.62144e-7 = 1.6744448e-4 s. Pessimistic corner, efficiency 0.25 (2.5e11 B/s):
    2 x 1.67182336e-4 + 5.24288e-7 = 3.3488896e-4 s. No serving fit: no extra spread."""
    w = Workload(batch=2, prompt_len=1000, output_len=11, dtype="fp16")
    iv = intervals.interval(lambda st: stage_time(st[0], TOY, w, 2).decode_step_s,
                            [Stage(default_decode, 1, 2, True, True)])
    assert (iv["low"], iv["expected"], iv["high"]) == pytest.approx((1.6744448e-4, 1.6744448e-4, 3.3488896e-4))
    assert iv["uncalibrated"] is True and iv["fit_spread"] == 0.0


def test_calibrated_profile_has_no_width(synthetic_profile):
    w = Workload(batch=2, prompt_len=1000, output_len=11, dtype="fp16")
    iv = intervals.interval(lambda st: stage_time(st[0], TOY, w, 2).decode_step_s,
                            [Stage(synthetic_profile, 1, 2, True, True)])
    assert iv["low"] == iv["expected"] == iv["high"] and iv["uncalibrated"] is False


def test_a10g_plan_says_uncalibrated_and_shows_its_interval(capsys):
    argv = ["plan", "--profile", str(ROOT / "profiles/a10g.json"), "--model", "llama3-8b", "--cluster",
            str(ROOT / "examples/clusters/a10g-g5.yaml"), "--batch", "32", "--prompt-len", "1024",
            "--output-len", "256"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "UNCALIBRATED: rests on default numbers (compute.decode_efficiency" in out
    assert "throughput low / expected / high:" in out
    assert main(argv + ["--json", "--robust"]) == 0
    p = json.loads(capsys.readouterr().out)
    t = p["interval"]["throughput_tok_s"]
    assert p["uncalibrated"] and p["robust"] and t["low"] < t["expected"] < t["high"]


def test_validate_rows_carry_the_interval(write, capsys):
    """A row with a blank num_requests takes the plausible batch range 30-50 as well."""
    path = write("m.csv", "model,gpu,nodes,gpus_used_per_node,interconnect,nic_gbps,tp,pp,input_len,output_len,"
                          "num_requests,measured_tok_s,source\nllama3-8b,SYN,1,2,nvlink,,2,1,1000,100,,5000,lab\n")
    assert main(["validate", str(path), "--profile", str(FIXTURES / "synthetic_profile.json"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["predicted_low_tok_s"] <= row["predicted_tok_s"] <= row["predicted_high_tok_s"]
    assert row["uncalibrated"] is True  # the serving overheads are assumed 0
    assert isinstance(row["inside_interval"], bool)


def test_borrowed_allreduce_fit_is_an_assumption(synthetic_profile, tmp_path):
    """A 4-rank engine all-reduce fit (hop 2 us, 10 GB/s) is measured; for 2 and 8 ranks the
    solver borrows it, so the pessimistic corner takes hop 4 us / 5 GB/s there, the
    optimistic 1 us / 20 GB/s; the 4-rank entry itself never moves."""
    raw = json.loads(Path(synthetic_profile.path).read_text())
    raw["serving"]["tp_allreduce"] = [{"ranks": 4, "hop_us": 2.0, "busbw_gbps": 10.0, "source": "synthetic"}]
    (tmp_path / "a.json").write_text(json.dumps(raw))
    prof = load_profile(tmp_path / "a.json")
    low = {f.ranks: (f.hop_us, f.busbw_gbps) for f in intervals.corner(prof, "low").engine_allreduce}
    high = {f.ranks: (f.hop_us, f.busbw_gbps) for f in intervals.corner(prof, "high").engine_allreduce}
    assert low == {4: (2.0, 10.0), 2: (4.0, 5.0), 8: (4.0, 5.0)}
    assert high == {4: (2.0, 10.0), 2: (1.0, 20.0), 8: (1.0, 20.0)}
    assert "serving.tp_allreduce[8 ranks] (borrowed)" in intervals.defaults_used(prof)
