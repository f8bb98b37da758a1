"""`solver estimate --online` end to end, and the adapter's agreement with the offline model."""

import json

import pytest

from solver.cli import main
from solver.cost.online.steps import StepModel
from solver.cost.pipeline import estimate_pipeline
from solver.cost.stage import Stage
from solver.inputs.model import load_model
from solver.inputs.workload import Workload
from tests.conftest import FIXTURES

SYN = str(FIXTURES / "synthetic_profile.json")


def test_step_model_reads_the_offline_model(synthetic_profile):
    """A decode step of 8 sequences at context 1024 and a 512-token prefill are exactly what
    estimate_pipeline gives for the same batch (the adapter adds no physics of its own)."""
    m = load_model("llama3-8b")
    stages = [Stage(synthetic_profile, 1, 32, True, True)]
    steps = StepModel(m, stages, [])
    off = estimate_pipeline(m, Workload(batch=8, prompt_len=1024, output_len=0), stages, [], serving=steps.cfg)
    assert steps.decode_s(8, 1024) == pytest.approx(off.decode_round_s)
    pre = estimate_pipeline(m, Workload(batch=1, prompt_len=512, output_len=0), stages, [], serving=steps.cfg)
    assert steps.prefill_s(512) == pytest.approx(pre.prefill_s)
    # halfway between grid points the KV-read term is linear: the mean of the neighbours
    mid = steps.decode_s(8, 1024 + 128)
    assert mid == pytest.approx(0.5 * (steps.decode_s(8, 1024) + steps.decode_s(8, 1280)))


def test_server_budget_default(synthetic_profile):
    """SYN-80 has 80 GiB and is not an A100: vLLM's server default of 8192 tokens per step."""
    steps = StepModel(load_model("llama3-8b"), [Stage(synthetic_profile, 1, 32, True, True)], [])
    assert steps.budget_tokens == 8192


def test_online_json(capsys):
    assert main(["estimate", "--profile", SYN, "--model", "llama3-8b", "--online", "--concurrency", "4",
                 "--prompt-len", "512", "--output-len", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["online"]
    for key in ("ttft_ms", "itl_ms", "tpot_ms"):
        assert set(out[key]) == {"p50", "p90", "mean"}
        assert 0 < out[key]["p50"] <= out[key]["p90"]
    assert out["throughput_tok_s"] > 0 and out["max_rate_per_replica"] > 0
    assert out["finished"] and out["load"] == {"concurrency": 4}
    # closed loop with fixed lengths: throughput = concurrency x output / (TTFT + (o-1) TPOT), roughly
    per_req_s = (out["ttft_ms"]["mean"] + 31 * out["tpot_ms"]["mean"]) / 1e3
    assert out["throughput_tok_s"] == pytest.approx(4 * 32 / per_req_s, rel=0.05)


def test_online_histogram(capsys, write):
    hist = write("lengths.csv", "prompt_len,output_len,weight\n256,16,1\n1024,64,1\n")
    assert main(["estimate", "--profile", SYN, "--model", "llama3-8b", "--online", "--request-rate", "2",
                 "--lengths", str(hist), "--num-requests", "50"]) == 0
    assert "lengths from" in capsys.readouterr().out


@pytest.mark.parametrize("args, msg", [
    (["--online"], "--online: give --concurrency C or --request-rate R"),
    (["--online", "--concurrency", "0"], "--concurrency: must be an integer >= 1"),
    (["--online", "--request-rate", "0"], "--request-rate: must be > 0"),
    (["--online", "--request-rate", "nan"], "--request-rate: must be a finite number"),
    (["--online", "--concurrency", "2", "--request-rate", "1"], "not allowed with argument"),
    (["--online", "--concurrency", "2", "--num-requests", "0"], "--num-requests: must be >= 1"),
    (["--online", "--concurrency", "2", "--output-len", "0"], "--output-len: must be a whole number >= 1"),
])
def test_online_bad_input(capsys, args, msg):
    assert main(["estimate", "--profile", SYN, "--model", "llama3-8b", *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_online_bad_histogram(capsys, write):
    hist = write("h.csv", "prompt_len,output_len,weight\n256,x,1\n")
    assert main(["estimate", "--profile", SYN, "--model", "llama3-8b", "--online", "--concurrency", "1",
                 "--lengths", str(hist)]) == 2
    assert "h.csv: row 1: prompt_len and output_len must be integers" in capsys.readouterr().err


def test_step_model_pipeline_micro_batches(synthetic_profile):
    """PP2 on one node: a decode round of 8 sequences is the offline model's round
    (2 micro-batches of 4: max(2 x busiest server, chain)), and the batch grid is exact at 8."""
    m = load_model("llama3-8b")
    stages = [Stage(synthetic_profile, 1, 16, True, False), Stage(synthetic_profile, 1, 16, False, True)]
    steps = StepModel(m, stages, [None])
    off = estimate_pipeline(m, Workload(batch=8, prompt_len=1024, output_len=0), stages, [None], serving=steps.cfg)
    assert off.num_micro_batches == 2
    assert steps.decode_s(8, 1024) == pytest.approx(off.decode_round_s)
    # between batch grid points 8 and 10 the round is interpolated linearly
    assert steps.decode_s(9, 1024) == pytest.approx(0.5 * (steps.decode_s(8, 1024) + steps.decode_s(10, 1024)))
