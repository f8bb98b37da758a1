"""The planner's memory rule is the serving model's (waves when the batch does not fit),
the status says what "optimal" is proven over, and the outputs carry what vLLM needs."""

import json
import warnings
from pathlib import Path

import pytest

from plan_helpers import TINY, WORKLOAD, pool, syn_profile
from solver.cli import main
from solver.cost.serving import ServingConfig
from solver.inputs.cluster import load_cluster
from solver.inputs.model import load_model
from solver.inputs.profile import load_profiles
from solver.inputs.workload import Workload
from solver.plan import split
from solver.plan.planner import plan
from solver.plan.result import PlacedReplica, PlacedStage, Plan
from solver.plan.validate_plan import check_plan
from solver.report.plan_report import status_text
from solver.report.vllm_export import device_assignment, vllm_launch

ROOT = Path(__file__).resolve().parents[1]
ONE_A100 = """
name: one-a100
node_groups:
  - {name: a100, count: 1, gpu: A100-80GB, gpus_per_node: 1, interconnect: nvlink, nic_gbits: 200}
"""
BIG_BATCH = ["--batch", "512", "--prompt-len", "2048", "--output-len", "512"]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_batch_beyond_the_kv_cache_runs_in_waves(write, capsys):
    """Llama-3-8B on one A100-80GB, batch 512 x 2,560 tokens: 160 GiB of KV for the batch.
    vLLM 0.10 on an A100 (profiles/a100.json memory.vllm): budget 0.9 x the CUDA total 79.26
    GiB (gpu.memory_cuda_total_gib; nvidia-smi's 80 is not what vLLM sizes by) =
    76,594,299,273.2 B; weights 16,060,522,496; non-torch 0.0486 GiB = 52,184,113.6; profile
    run of 8,192 tokens (V1 offline default below 70 GiB or on A100): the 0.10 sampler on
    PyTorch's sort, 256 x 128,256 x 38 B = 1,247,674,368, above the MLP phase
    (3 x 4,096 + 3 x 14,336) x 8,192 x 2 = 905,969,664. KV 59,233,918,556.6 B = 28,244 blocks
    of 2,097,152 = 451,904 tokens = 55.16 GiB: 451,904 // 2,560 = 176
    sequences at once, in waves 176 + 176 + 160 (512 = 2 x 176 + 160)."""
    c = write("one.yaml", ONE_A100)
    argv = ["plan", "--profile", str(ROOT / "profiles/a100.json"), "--model", "llama3-8b", "--cluster", str(c)]
    assert main(argv + BIG_BATCH + ["--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["replicas"][0]
    assert (rep["concurrency"], rep["concurrency_limited_by"], rep["waves"]) == (176, "kv_cache", [176, 176, 160])
    assert rep["kv_capacity_tokens"] == 451_904
    stage = rep["stages"][0]
    assert stage["kv_cache_gib"] == pytest.approx(451_904 * 131_072 / 2**30)  # 55.1640625
    # used = the budget less the unfilled part of the last block (< 2 MiB)
    assert stage["memory_used_gib"] <= 0.9 * 79.26 and stage["memory_used_gib"] > 0.9 * 79.26 - 0.01
    assert stage["memory_used_gib"] + stage["memory_free_gib"] == pytest.approx(80.0)  # free: vs nvidia-smi's 80
    assert ("--max-model-len 2560 --gpu-memory-utilization 0.9 --max-num-seqs 256 --max-num-batched-tokens 8192 "
            "--enable-chunked-prefill --port 8000") in rep["vllm"]["command"]
    assert main(argv + BIG_BATCH) == 0
    assert "176 (kv_cache)  2 x 176 + 160" in capsys.readouterr().out


def test_validator_checks_kv_for_the_reported_concurrency(write):
    model, cluster = load_model("llama3-8b"), load_cluster(str(write("one.yaml", ONE_A100)))
    profiles = load_profiles([str(ROOT / "profiles/a100.json")])
    wl = Workload(batch=512, prompt_len=2048, output_len=512)
    r = plan(model, wl, cluster, profiles)
    assert check_plan(r.plan, model, wl, cluster, profiles) == []
    rep = r.plan.replicas[0]
    assert (rep.concurrency, rep.waves) == (176, (176, 176, 160))  # the waves test above
    bad = Plan((PlacedReplica(rep.stages, rep.throughput_tok_s, rep.usd_per_hour, rep.bottleneck,
                              rep.shape, 400, (400, 112)),))
    problems = check_plan(bad, model, wl, cluster, profiles)
    assert any("with KV for 400 sequences, usable 71.33 (0.9 x 79.26)" in p for p in problems)  # 71.334
    assert any("reports concurrency 400 in waves [400, 112], the serving model runs 176 in [176, 176, 160]" in p
               for p in problems)


def test_one_sequence_that_does_not_fit_says_so():
    """3.6 GiB of weights over 3 GPUs of 3.4 GiB fit; one sequence of 200,000 tokens needs
    3.05 GiB of KV (16 KiB per token), about 1 GiB per GPU, beside 1.2 GiB of weights and 1 GiB of
    runtime overhead in 0.9 x 3.4 GiB: no room. (vLLM 0.7, the fixture's engine, chunks a prompt
    longer than 32K, so the profile run takes 2,048 tokens, not the whole prompt.)"""
    c = pool(("p", 3, "PIPE", 1, 25.0, 1.0))
    long = Workload(batch=1, prompt_len=196_000, output_len=4_000)
    with pytest.raises(Exception, match=r"tiny needs 4 GiB of weights \+ 3 GiB of KV cache for one sequence "
                                        r"of 200000 tokens.*2048-token prefill step.*leaves room for it"):
        plan(TINY, long, c, [syn_profile("PIPE", 3.4, 800, 600)])


def test_status_names_heuristic_splits(monkeypatch):
    assert status_text("optimal", 0) == "optimal"
    assert status_text("optimal", 3) == "optimal over searched layouts (splits heuristic for 3 layouts)"
    assert status_text("feasible", 0) == "feasible (not proven optimal: see gap)"
    monkeypatch.setattr(split, "MAX_GRID_POINTS", 0)  # every multi-segment split coarse to fine
    r = plan(TINY, WORKLOAD, pool(("b", 2, "BIG", 1, 25.0, 1.0)), [syn_profile("BIG")], max_blocks=1)
    assert 1 <= r.heuristic_splits <= r.columns
    assert "bounds: at most 1 blocks" in r.search_space


def test_interconnect_mismatch_warns():
    c = pool(("b", 1, "BIG", 2, 25.0, 1.0), interconnect="pcie")
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        plan(TINY, WORKLOAD, c, [syn_profile("BIG")])
    assert any("node group b has interconnect pcie, its profile BIG.json was measured on nvlink" in str(w.message)
               for w in got)


def test_vllm_devices_ports_and_engine_flags():
    one = PlacedReplica((PlacedStage("a", 0, "A", 1, 0, 4),), 1.0, 1.0, "")
    two = PlacedReplica((PlacedStage("a", 1, "A", 1, 0, 3), PlacedStage("a", 2, "A", 1, 3, 1)), 1.0, 1.0, "")
    assigned = device_assignment([one, one, two])
    assert assigned == [({"a/0": [0]}, 8000), ({"a/0": [1]}, 8001), ({"a/1": [0], "a/2": [0]}, 8000)]
    cfg = ServingConfig(0.85, 64, None, 0.0, 0.0)
    wl = Workload(batch=8, prompt_len=512, output_len=128, dtype="fp16")
    second = vllm_launch(one, "m", 4, wl, cfg, *assigned[1])
    assert second["command"] == ("CUDA_VISIBLE_DEVICES=1 vllm serve m --tensor-parallel-size 1 "
                                 "--pipeline-parallel-size 1 --dtype float16 --max-model-len 640 "
                                 "--gpu-memory-utilization 0.85 --max-num-seqs 64 --max-num-batched-tokens 8192 "
                                 "--enable-chunked-prefill --port 8001")
    piped = vllm_launch(two, "m", 4, wl, cfg, *assigned[2])
    assert piped["command"].startswith("VLLM_PP_LAYER_PARTITION=3,1 vllm serve m")
    assert "CUDA_VISIBLE_DEVICES=0 on a/1, CUDA_VISIBLE_DEVICES=0 on a/2" in piped["reason"]


def test_huge_pool_is_refused_in_one_line(write, capsys):
    c = write("huge.yaml", ONE_A100.replace("count: 1", "count: 1000000"))
    argv = ["plan", "--profile", str(ROOT / "profiles/a100.json"), "--model", "llama3-8b", "--cluster", str(c)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("node_groups[].count: the pool has 1,000,000 nodes; the planner takes at most 1,024 "
                        "(plan a representative slice of identical nodes and repeat it)") and "\n" not in err
