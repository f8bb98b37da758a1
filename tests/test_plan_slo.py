"""SLO planning: the MILP over replica layouts agrees with brute force on small pools; router
weights split the rate so each replica stays within its SLO rate; bad targets exit 2."""

import pytest

from solver.cli import main
from solver.cost.online.slo import SLO
from solver.cost.online.traffic import Traffic
from solver.cost.stage import memoized_stage_times
from solver.errors import InfeasibleError
from solver.plan.candidates import CostTable, pool_groups
from solver.plan.planner import shape_values
from solver.plan.slo import _columns, column_rates, plan_slo
from solver.plan.space import Bounds
from tests.plan_helpers import TINY, WORKLOAD, pool, syn_profile

FAST, SLOW = syn_profile("FAST-80"), syn_profile("SLOW-80", hbm_gbps=400.0, tflops=300.0)
SLO_T = SLO(ttft_ms=400, tpot_ms=20, percentile=90)


def _pool(fast_nodes, slow_nodes, gpn=2):
    return pool(("fast", fast_nodes, "FAST-80", gpn, 25, 3.0), ("slow", slow_nodes, "SLOW-80", gpn, 25, 1.0))


def _packs(chunks: list[int], nodes: int, gpn: int) -> bool:
    """First-fit decreasing; exact here because chunk sizes and gpn are powers of two."""
    free = [gpn] * nodes
    for z in sorted(chunks, reverse=True):
        i = next((i for i, f in enumerate(free) if f >= z), None)
        if i is None:
            return False
        free[i] -= z
    return True


def brute_force_cost(cluster, rate):
    """Every vector of replica counts of every distinct layout the groups' GPUs allow (depth
    first, no per-signature pruning); a vector counts
    when its chunks pack onto the nodes and its SLO rates sum to >= rate. Cheapest $/h."""
    with memoized_stage_times():
        table = CostTable(TINY, WORKLOAD, pool_groups(cluster, [FAST, SLOW]), cluster, "vllm")
        values = shape_values(table, Bounds.default(TINY.num_layers, cluster.num_gpus, None, -1),
                              per_signature=False)  # every distinct layout: nothing pruned
        cols = _columns(table, values, column_rates(table, values, Traffic(512, 128, rate_per_s=rate), SLO_T), 640)
    cols = [c for c in cols if c.value_tok_s > 0]
    best = []

    def leaf(counts):
        if sum(c * col.value_tok_s for c, col in zip(counts, cols)) < rate:
            return
        for gi, g in enumerate(table.groups):
            chunks = [z for c, col in zip(counts, cols) for _ in range(c) for (gg, z) in col.chunks if gg == gi]
            if not _packs(chunks, g.nodes, g.gpus_per_node):
                return
        best.append(sum(c * col.usd_per_hour for c, col in zip(counts, cols)))

    def rec(i, counts, free):
        if i == len(cols):
            return leaf(counts)
        use = [0] * len(free)
        for g, z in cols[i].chunks:
            use[g] += z
        n = 0
        while all(f - n * u >= 0 for f, u in zip(free, use)):
            rec(i + 1, counts + [n], [f - n * u for f, u in zip(free, use)])
            n += 1

    rec(0, [], [g.nodes * g.gpus_per_node for g in table.groups])
    return min(best) if best else None


@pytest.mark.parametrize("fast_nodes, slow_nodes, rate", [(1, 1, 100.0), (1, 2, 300.0), (2, 1, 450.0), (1, 1, 1000.0)])
def test_slo_plan_matches_brute_force(fast_nodes, slow_nodes, rate):
    cluster = _pool(fast_nodes, slow_nodes)
    want = brute_force_cost(cluster, rate)
    if want is None:
        with pytest.raises(InfeasibleError, match="out of reach"):
            plan_slo(TINY, WORKLOAD, cluster, [FAST, SLOW], rate_per_s=rate, slo=SLO_T, simulate_check=False)
        return
    res = plan_slo(TINY, WORKLOAD, cluster, [FAST, SLOW], rate_per_s=rate, slo=SLO_T, simulate_check=False)
    assert res.usd_per_hour == pytest.approx(want)
    assert res.status == "optimal"


def test_router_weights_split_the_rate():
    """Weights are r_i / sum r: they sum to 1, shares sum to R, no replica above its SLO rate."""
    res = plan_slo(TINY, WORKLOAD, _pool(1, 2), [FAST, SLOW], rate_per_s=300.0, slo=SLO_T, simulate_check=False)
    assert len(res.replicas) > 1
    assert sum(r.router_weight for r in res.replicas) == pytest.approx(1.0)
    assert sum(r.rate_per_s for r in res.replicas) == pytest.approx(300.0)
    assert all(r.rate_per_s <= r.max_rate_per_s * (1 + 1e-9) for r in res.replicas)
    assert res.capacity_per_s >= 300.0


def test_headroom_uses_the_pool():
    """Headroom maximises the summed SLO rate: at least the cost plan's capacity."""
    kw = dict(rate_per_s=100.0, slo=SLO_T, simulate_check=False)
    cheap = plan_slo(TINY, WORKLOAD, _pool(1, 1), [FAST, SLOW], objective="cost", **kw)
    room = plan_slo(TINY, WORKLOAD, _pool(1, 1), [FAST, SLOW], objective="headroom", **kw)
    assert room.capacity_per_s >= cheap.capacity_per_s and room.spare_rate_per_s > 0
    assert room.usd_per_hour >= cheap.usd_per_hour


def test_unreachable_tpot_names_the_best_replica():
    with pytest.raises(InfeasibleError, match=r"p90 TPOT 0.5 ms unreachable: best replica on this pool gives \d+ ms"):
        plan_slo(TINY, WORKLOAD, _pool(1, 1), [FAST, SLOW], rate_per_s=1.0, slo=SLO(None, 0.5), simulate_check=False)


@pytest.mark.parametrize("args, msg", [
    (["--request-rate", "1", "--tpot-ms", "0.5"], "TPOT 0.5 ms unreachable"),
    (["--request-rate", "0", "--tpot-ms", "5"], "--request-rate: must be > 0"),
    (["--request-rate", "1"], "--ttft-ms/--tpot-ms: give at least one latency target"),
    (["--request-rate", "1", "--tpot-ms", "5", "--percentile", "0"], "--percentile: must be in (0, 100)"),
    (["--objective", "headroom", "--tpot-ms", "5"], "--objective: headroom needs --request-rate"),
])
def test_slo_cli_errors(tmp_path, capsys, args, msg):
    from tests.conftest import FIXTURES
    prof = FIXTURES / "synthetic_profile.json"
    cl = tmp_path / "c.yaml"
    cl.write_text("name: t\nnode_groups:\n  - {name: a, count: 1, gpu: SYN-80, gpus_per_node: 2, interconnect: nvlink,"
                  " nic_gbps: 25, usd_per_gpu_hour: 1}\n")
    assert main(["plan", "--profile", str(prof), "--model", "llama3-8b", "--cluster", str(cl),
                 "--no-simulate", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


def test_slo_cli_json(tmp_path, capsys):
    import json
    from tests.conftest import FIXTURES
    cl = tmp_path / "c.yaml"
    cl.write_text("name: t\nnode_groups:\n  - {name: a, count: 1, gpu: SYN-80, gpus_per_node: 2, interconnect: nvlink,"
                  " nic_gbps: 25, usd_per_gpu_hour: 1}\n")
    assert main(["plan", "--profile", str(FIXTURES / "synthetic_profile.json"), "--model", "llama3-8b",
                 "--cluster", str(cl), "--request-rate", "1", "--tpot-ms", "40", "--prompt-len", "512",
                 "--output-len", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "slo" and out["replicas"]
    rep = out["replicas"][0]
    assert rep["vllm"]["ok"] and "--max-num-batched-tokens" in rep["vllm"]["command"]
    assert sum(out["router"]["weights"]) == pytest.approx(1.0)
    assert rep["tpot_ms"]["p90"] <= 40


def test_best_per_signature_keeps_the_highest_slo_rate():
    """Two layouts on the same 8 GPUs of group 0 (rates 0.9 and 1.5) and one on 4 GPUs:
    the 8-GPU signature keeps the 1.5 layout, the 4-GPU one stays."""
    from types import SimpleNamespace as NS
    from solver.plan.slo import best_per_signature

    def v(chunks):
        return NS(shape=NS(chunks=lambda c=chunks: list(c), signature=lambda c=chunks: tuple(sorted(c))))
    values = [v([(0, 8)]), v([(0, 8)]), v([(0, 4)])]
    rates = [NS(rate_per_s=0.9), NS(rate_per_s=1.5), NS(rate_per_s=0.8)]
    kept, kept_rates = best_per_signature(values, rates)
    assert [r.rate_per_s for r in kept_rates] == [1.5, 0.8] and kept == [values[1], values[2]]


def test_slo_launch_line_admits_the_longest_histogram_request(tmp_path, capsys):
    """--lengths rows (512+64) and (4096+512): the launch line's --max-model-len is the longest
    request, 4096 + 512 = 4608, not the fixed --prompt-len 2048 + --output-len 256 = 2304; a
    --max-model-len below it (4000 < 4608) is refused."""
    import json
    from tests.conftest import FIXTURES
    cl = tmp_path / "c.yaml"
    cl.write_text("name: t\nnode_groups:\n  - {name: a, count: 1, gpu: SYN-80, gpus_per_node: 2, interconnect: nvlink,"
                  " nic_gbps: 25, usd_per_gpu_hour: 1}\n")
    hist = tmp_path / "h.csv"
    hist.write_text("prompt_len,output_len,weight\n512,64,3\n4096,512,1\n")
    args = ["plan", "--profile", str(FIXTURES / "synthetic_profile.json"), "--model", "llama3-8b",
            "--cluster", str(cl), "--request-rate", "0.5", "--tpot-ms", "60", "--prompt-len", "2048",
            "--output-len", "256", "--lengths", str(hist), "--no-simulate", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    cmds = [r["vllm"]["command"] for r in out["replicas"]]
    assert cmds and all("--max-model-len 4608 " in c for c in cmds)
    assert main([*args, "--max-model-len", "4000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "longest request is 4608 tokens" in err[0]
