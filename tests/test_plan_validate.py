"""The independent validator catches broken plans; vLLM export follows vLLM's rules."""

import dataclasses
import warnings

import pytest

from plan_helpers import TINY, WORKLOAD, pool, syn_profile
from solver.plan.planner import plan
from solver.plan.result import PlacedReplica, PlacedStage, Plan
from solver.plan.validate_plan import PlanInvalid, check_plan, validate
from solver.report.vllm_export import vllm_default_partition, vllm_launch

PIPE = syn_profile("PIPE", 3.4, 800, 600)
BIG = syn_profile("BIG", 80, 1000)
PROFILES = [PIPE, BIG]
CLUSTER = pool(("p", 2, "PIPE", 2, 25.0, 1.0), ("b", 1, "BIG", 1, 25.0, 2.0))


@pytest.fixture(scope="module")
def good():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan(TINY, WORKLOAD, CLUSTER, PROFILES).plan


def _with_stage(p: Plan, r: int, k: int, **change) -> Plan:
    reps = list(p.replicas)
    stages = list(reps[r].stages)
    stages[k] = dataclasses.replace(stages[k], **change)
    reps[r] = dataclasses.replace(reps[r], stages=tuple(stages))
    return Plan(tuple(reps))


def _problems(p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check_plan(p, TINY, WORKLOAD, CLUSTER, PROFILES)


def test_planned_plan_is_valid(good):
    assert _problems(good) == []
    assert good.gpus <= CLUSTER.num_gpus


def test_gpu_used_twice(good):
    """Every replica crammed on node p/0 (2 GPUs): more GPUs than the node has."""
    reps = tuple(dataclasses.replace(r, stages=tuple(dataclasses.replace(s, group="p", node_index=0, gpu="PIPE")
                                                     for s in r.stages)) for r in good.replicas)
    assert any("GPUs assigned, it has 2" in x for x in _problems(Plan(reps)))


def test_missing_and_overlapping_layers():
    two = (PlacedStage("p", 0, "PIPE", 1, 0, 2), PlacedStage("p", 0, "PIPE", 1, 2, 2))
    ok = Plan((PlacedReplica(two, 0.0, 2.0, ""),))
    assert not any("layer" in x for x in _problems(ok))
    overlap = _with_stage(ok, 0, 1, first_layer=1)
    assert any("expected 2" in x for x in _problems(overlap))
    short = _with_stage(ok, 0, 1, n_layers=1)
    assert any("the model has 4" in x for x in _problems(short))


def test_memory_overflow_and_bad_tp(good):
    one = Plan((PlacedReplica((PlacedStage("p", 0, "PIPE", 1, 0, 4),), 1.0, 1.0, "stage 0"),))
    assert any("needs" in x and "GiB per GPU" in x for x in _problems(one))
    three = Plan((PlacedReplica((PlacedStage("b", 0, "BIG", 3, 0, 4),), 1.0, 6.0, "stage 0"),))
    assert any("not a power of two" in x for x in _problems(three))


def test_wrong_throughput_is_caught(good):
    reps = list(good.replicas)
    reps[0] = dataclasses.replace(reps[0], throughput_tok_s=reps[0].throughput_tok_s * 1.01)
    with pytest.raises(PlanInvalid, match="recomputed"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            validate(Plan(tuple(reps)), TINY, WORKLOAD, CLUSTER, PROFILES)


def test_vllm_default_partition_matches_vllm():
    """vLLM's get_pp_indices: 80 layers over 3 stages -> 26 each, the remainder 2 goes to the
    two stages before the last: [27, 27, 26]; 126 over 4 -> [32, 32, 31, 31]."""
    assert vllm_default_partition(80, 3) == [27, 27, 26]
    assert vllm_default_partition(126, 4) == [31, 32, 32, 31]


def test_vllm_launch_rules():
    even = PlacedReplica((PlacedStage("a", 0, "A", 4, 0, 40), PlacedStage("a", 1, "A", 4, 40, 40)), 1, 1, "")
    cmd = vllm_launch(even, "meta-llama/Meta-Llama-3-70B", 80)
    assert cmd["ok"] and "VLLM_PP_LAYER_PARTITION" not in cmd["command"]
    assert "--tensor-parallel-size 4 --pipeline-parallel-size 2" in cmd["command"]
    uneven = PlacedReplica((PlacedStage("a", 0, "A", 4, 0, 42), PlacedStage("a", 1, "A", 4, 42, 38)), 1, 1, "")
    assert vllm_launch(uneven, "m", 80)["command"].startswith("VLLM_PP_LAYER_PARTITION=42,38 vllm serve m")
    mixed = PlacedReplica((PlacedStage("a", 0, "A", 4, 0, 40), PlacedStage("a", 1, "A", 2, 40, 40)), 1, 1, "")
    out = vllm_launch(mixed, "m", 80)
    assert not out["ok"] and "TP 2 and 4" in out["reason"]


def test_validator_refuses_unlaunchable_replicas():
    """vLLM: one TP size per replica, and after the head node the nodes go by increasing GPU
    count (Ray's worker sort), equal counts of one group."""
    def rep(*stages):
        return Plan((PlacedReplica(tuple(PlacedStage(*s) for s in stages), 1.0, 1.0, ""),))

    mixed = rep(("p", 0, "PIPE", 2, 0, 2), ("p", 1, "PIPE", 1, 2, 2))
    assert any("stages use TP 1 and 2" in p for p in _problems(mixed))
    # head p/0 (1 GPU), then b/0 (1 GPU) and p/1 (2 GPUs): increasing counts -> launchable order
    ok = rep(("p", 0, "PIPE", 1, 0, 1), ("b", 0, "BIG", 1, 1, 1), ("p", 1, "PIPE", 1, 2, 1), ("p", 1, "PIPE", 1, 3, 1))
    assert not any("rank" in p or "follows" in p for p in _problems(ok))
    # p/1 holds 2 GPUs, then b/0 holds 1: vLLM would rank b/0 first
    bad = rep(("p", 0, "PIPE", 1, 0, 1), ("p", 1, "PIPE", 1, 1, 1), ("p", 1, "PIPE", 1, 2, 1), ("b", 0, "BIG", 1, 3, 1))
    assert any("follows" in p for p in _problems(bad))
    split = rep(("p", 0, "PIPE", 1, 0, 1), ("p", 1, "PIPE", 1, 1, 1), ("p", 0, "PIPE", 1, 2, 2))
    assert any("non-consecutive" in p for p in _problems(split))


@pytest.mark.parametrize("name", ["mixed.yaml", "mixed-a100-l40s-v100.yaml", "v100-16x4.yaml"])
def test_shipped_examples_plan_only_launchable_replicas(name):
    """Every replica of the shipped examples' plans has a vLLM command (launchable) and the
    validator, which re-checks the rank order with its own code, accepts the plan."""
    from pathlib import Path
    from solver.inputs.cluster import load_cluster
    from solver.inputs.model import load_model
    from solver.inputs.profile import load_profiles
    from solver.inputs.workload import Workload
    root = Path(__file__).resolve().parents[1]
    model, cluster = load_model("llama3-70b"), load_cluster(root / "examples/clusters" / name)
    profiles = load_profiles([str(root / "profiles")])
    wl = Workload(batch=32, prompt_len=2048, output_len=512, dtype="fp16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = plan(model, wl, cluster, profiles)
        assert check_plan(r.plan, model, wl, cluster, profiles) == []
    for rep in r.plan.replicas:
        assert vllm_launch(rep, "m", model.num_layers)["ok"]


def test_validator_checks_the_floor_and_the_replica_cap():
    """Two replicas of 100 and 50 tokens/s: 150 tokens/s total. A floor of 151 or a cap of
    one replica is refused; a floor of 150 and a cap of 2 pass."""
    from solver.plan.validate_plan import objective_problems
    reps = tuple(PlacedReplica((), v, 1.0, "") for v in (100.0, 50.0))
    p = Plan(reps)
    assert objective_problems(p, 150.0, 2) == []
    assert objective_problems(p, 151.0, None) == ["plan gives 150.0 tokens/s, below --min-throughput 151.0"]
    assert objective_problems(p, 0.0, 1) == ["plan has 2 replicas, --max-replicas is 1"]


def test_verdict_and_per_dollar_baselines_in_the_payload(good):
    """validator: ok in the result; per-$ ratio = (plan tok/s / plan $/h) / (base tok/s / base $/h)."""
    from solver.report.plan_report import tokens_per_usd
    assert tokens_per_usd(1000.0, 2.0) == pytest.approx(1_800_000.0)  # 1000 x 3600 / 2
    assert tokens_per_usd(1000.0, 0.0) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = plan(TINY, WORKLOAD, CLUSTER, PROFILES)
    assert r.validator == "ok"


def test_issue_example_l40s_v100_mixed_tp_is_not_launchable():
    """3 x 2 L40S + 1 x 4 V100, llama3-70b fp16, batch 32, 2048/512. The 1,074 tokens/s layout
    of the issue (V100 TP4 -> 3 x L40S TP2, layers 26/18/18/18) mixes TP sizes: the validator
    refuses it. The planner's answer equals its answer over every launchable layout of the
    pool (4 blocks, any depth: no bound cuts anything on 10 GPUs)."""
    from pathlib import Path
    from solver.inputs.cluster import parse_cluster
    from solver.inputs.model import load_model
    from solver.inputs.profile import load_profiles
    from solver.inputs.workload import Workload
    root = Path(__file__).resolve().parents[1]
    cluster = parse_cluster({"name": "ex", "node_groups": [
        {"name": "l40s", "count": 3, "gpu": "L40S", "gpus_per_node": 2, "interconnect": "pcie", "nic_gbits": 100},
        {"name": "v100", "count": 1, "gpu": "V100", "gpus_per_node": 4, "interconnect": "nvlink", "nic_gbits": 100}]},
        "ex.yaml")
    model, profiles = load_model("llama3-70b"), load_profiles([str(root / "profiles")])
    wl = Workload(batch=32, prompt_len=2048, output_len=512, dtype="fp16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issue = Plan((PlacedReplica((PlacedStage("v100", 0, "V100", 4, 0, 26),) + tuple(
            PlacedStage("l40s", i, "L40S", 2, 26 + 18 * i, 18) for i in range(3)), 0.0, 0.0, ""),))
        assert any("stages use TP 2 and 4" in p for p in check_plan(issue, model, wl, cluster, profiles))
        default = plan(model, wl, cluster, profiles)
        full = plan(model, wl, cluster, profiles, max_blocks=4, extra_stages=None)
    assert "bounds: at most 4 blocks" not in full.search_space or "deeper" not in full.search_space
    assert default.plan.throughput_tok_s == pytest.approx(full.plan.throughput_tok_s, rel=1e-9)
    assert default.validator == "ok"


def test_shared_nic_load_is_reported():
    """Two replicas, each PIPE TP1 p/0 -> p/1 over a 0.01 GB/s NIC: the link is each
    replica's bottleneck, so its transfers keep the NIC busy the whole decode round
    (share m x link / round = 1 with round = m x link); two replicas on the same nodes load
    each NIC to 2 (200%) per direction, and the table says so."""
    from solver.plan.assign import evaluate_replica
    from solver.plan.candidates import CostTable, pool_groups
    from solver.plan.result import PlanResult
    from solver.report.plan_report import plan_human, plan_payload
    slow = pool(("p", 2, "PIPE", 2, 0.01, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = CostTable(TINY, WORKLOAD, pool_groups(slow, PROFILES), slow)
        reps = tuple(evaluate_replica(table, [PlacedStage("p", 0, "PIPE", 1, 0, 2), PlacedStage("p", 1, "PIPE", 1, 2, 2)])
                     for _ in range(2))
        assert all(r.bottleneck.startswith("link") for r in reps)
        res = PlanResult("optimal", "throughput", 1.0, 1.0, 0.0, 0.0, "cbc", Plan(reps), {}, 1, validator="ok")
        payload = plan_payload(res, TINY, WORKLOAD, slow, PROFILES, "vllm", "m")
    assert payload["nic_busy_share"]["p/0"]["send"] == pytest.approx(2.0)
    assert payload["nic_busy_share"]["p/1"]["recv"] == pytest.approx(2.0)
    assert payload["nic_busy_max"] == pytest.approx(2.0)
    assert "keep it busy 200%" in plan_human(payload, "t")
