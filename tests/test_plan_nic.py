"""Shared node NICs: the MILP's NIC rows, the planner on a pool where two replicas would
overload one NIC, brute force over every plan of that pool, and the validator's own check.

Bytes per token crossing a stage boundary for the tiny model (vLLM: hidden + residual):
2 tensors x 4,096 x 2 bytes (bf16) = 16,384 B."""

import itertools
import warnings

import pytest

from plan_helpers import TINY, WORKLOAD, pool, syn_profile
from solver.errors import InfeasibleError
from solver.plan.exhaustive import Exhaustive
from solver.plan.milp import NIC_STEPS, Column, PlanMILP, node_configs
from solver.plan.planner import plan
from solver.plan.result import PlacedStage, Plan
from solver.plan.validate_plan import check_plan

BYTES_PER_TOKEN = 2 * 4096 * 2
# FIRSTLAST holds one layer as a first or last stage (embedding / LM head), WIDE three: a
# replica is FIRSTLAST -> WIDE or WIDE -> FIRSTLAST (or WIDE -> WIDE), never two FIRSTLAST.
FIRSTLAST = syn_profile("FIRSTLAST", 2.73, 800, 600)
WIDE = syn_profile("WIDE", 3.64, 800, 600)
PROFILES = [FIRSTLAST, WIDE]
NIC_GBPS = 0.001  # 1 MB/s: the links are the bottleneck
# node f/0: 2 FIRSTLAST GPUs; nodes l/0, l/1: one WIDE GPU each
POOL = pool(("f", 1, "FIRSTLAST", 2, NIC_GBPS, 1.0), ("l", 2, "WIDE", 1, NIC_GBPS, 1.0))


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_nic_items_in_node_configs():
    """A 2-GPU node, chunk items (1 GPU, 12 send steps, 0) and (1 GPU, 0, 12) of 20 steps:
    two senders need 24 > 20 send steps, so the maximal configurations are the two mixed
    ones: one sender + one receiver, and -- alone, nothing else fitting -- none other."""
    assert NIC_STEPS == 20
    assert sorted(node_configs([(1, 12, 0), (1, 0, 12)], 2)) == [((1, 12, 0), (1, 0, 12))]
    assert sorted(node_configs([(1, 8, 0)], 2)) == [((1, 8, 0), (1, 8, 0))]


def test_milp_nic_row_by_hand():
    """Group 0: one node of 2 GPUs; group 1: two nodes of 1 GPU. Column A: chunk (0, 1 GPU)
    sending to chunk (1, 1 GPU), 10 tok/s, 0.6 of the NIC (12 steps); column B the reverse
    orientation, 9 tok/s. Without steps the best is 2 A = 20 (group 0's node sends 2 x 0.6);
    with them 2 A needs 24 > 20 send steps, so A + B = 19 (the node sends 0.6 and receives
    0.6). Brute force over chunk placements with the exact shares agrees (19)."""
    a, b = ((0, 1), (1, 1)), ((1, 1), (0, 1))
    plain = [Column(10.0, 0.0, a), Column(9.0, 0.0, b)]
    assert PlanMILP(plain, [1, 2], [2, 1]).solve().objective == pytest.approx(20.0)
    cols = [Column(10.0, 0.0, a, ((12, 0), (0, 12))), Column(9.0, 0.0, b, ((12, 0), (0, 12)))]
    sol = PlanMILP(cols, [1, 2], [2, 1]).solve()
    assert sol.status == "optimal" and sol.objective == pytest.approx(19.0) and sol.counts == {0: 1, 1: 1}
    # brute force: node 0 (group 0) or 1, 2 (group 1); A sends from node 0, B receives on it
    best = 0.0
    for na, nb in itertools.product(range(3), repeat=2):  # copies of A and B
        if na + nb == 0 or na + nb > 2:
            continue
        send0, recv0 = 0.6 * na, 0.6 * nb  # every copy has its group-0 chunk on node 0
        if send0 <= 1.0 and recv0 <= 1.0:
            best = max(best, 10.0 * na + 9.0 * nb)
    assert best == pytest.approx(19.0)


def _nic_loads(p: Plan) -> dict:
    """(node, direction) -> bytes/s: tokens/s x 16,384 B per link leaving / entering a node."""
    load: dict = {}
    for rep in p.replicas:
        for s, t in zip(rep.stages, rep.stages[1:]):
            if s.node_id != t.node_id:
                load[(s.node_id, "send")] = load.get((s.node_id, "send"), 0.0) + rep.throughput_tok_s * BYTES_PER_TOKEN
                load[(t.node_id, "recv")] = load.get((t.node_id, "recv"), 0.0) + rep.throughput_tok_s * BYTES_PER_TOKEN
    return load


def _brute_force_best() -> float:
    """Every plan of POOL (per-replica batch): replicas are TP1 stage sequences over distinct
    nodes (a node's stages consecutive), valued by Exhaustive's own best split; a plan is a
    set of replicas within each node's GPUs and each NIC's 1 MB/s per direction."""
    ex = Exhaustive(TINY, WORKLOAD, POOL, PROFILES, "vllm")
    gpus = [2, 1, 1]  # f/0, l/0, l/1
    reps = []
    for k in range(1, 4):
        for nodes in itertools.permutations(range(3), k):
            for counts in itertools.product(*[range(1, gpus[n] + 1) for n in nodes]):
                if sum(counts) > TINY.num_layers:
                    continue
                sig = tuple((ex.nodes[n][0], 1, j > 0) for n, c in zip(nodes, counts) for j in range(c))
                tok_s = ex.value(sig)[0]
                if tok_s > 0:
                    use = [0, 0, 0]
                    for n, c in zip(nodes, counts):
                        use[n] += c
                    d = tok_s * BYTES_PER_TOKEN
                    send = [d if n in nodes[:-1] else 0.0 for n in range(3)]
                    recv = [d if n in nodes[1:] else 0.0 for n in range(3)]
                    reps.append((tok_s, use, send, recv))
    best = 0.0
    for r in range(1, 5):
        for combo in itertools.combinations_with_replacement(range(len(reps)), r):
            tot = [[sum(reps[i][f][n] for i in combo) for n in range(3)] for f in (1, 2, 3)]
            if all(u <= g for u, g in zip(tot[0], gpus)) and max(tot[1] + tot[2]) <= NIC_GBPS * 1e9:
                best = max(best, sum(reps[i][0] for i in combo))
    return best


def test_planner_keeps_two_senders_off_one_nic(monkeypatch):
    """Each FIRSTLAST -> WIDE replica is link-bound at about 30.55 tok/s, i.e. 30.55 x 16,384
    = 0.5005 MB/s on its link: just over half the 1 MB/s NIC. Without the NIC rows the
    planner puts two of them on f/0 (f/0 sends 1.001 MB/s) and its validator refuses the plan;
    with them it turns one replica around (WIDE -> FIRSTLAST: f/0 sends 0.5 and receives 0.5
    MB/s) for the same total, which brute force over every plan of the pool confirms."""
    import solver.plan.makespan as makespan
    import solver.plan.planner as planner
    for mod in (planner, makespan):
        monkeypatch.setattr(mod, "with_nic_steps", lambda table, columns, rates: columns)
    with pytest.raises(InfeasibleError, match="node f/0: its replicas send 0.001001"):
        plan(TINY, WORKLOAD, POOL, PROFILES, batch_per_replica=True)
    monkeypatch.undo()
    r = plan(TINY, WORKLOAD, POOL, PROFILES, batch_per_replica=True)
    assert r.validator == "ok" and check_plan(r.plan, TINY, WORKLOAD, POOL, PROFILES) == []
    assert len(r.plan.replicas) == 2 and {rep.stages[0].group for rep in r.plan.replicas} == {"f", "l"}
    loads = _nic_loads(r.plan)
    assert loads[("f/0", "send")] == pytest.approx(0.5005e6, rel=1e-3)
    assert loads[("f/0", "recv")] == pytest.approx(0.5005e6, rel=1e-3)
    assert max(loads.values()) <= NIC_GBPS * 1e9
    assert r.plan.throughput_tok_s == pytest.approx(_brute_force_best(), rel=1e-9)
    shared = plan(TINY, WORKLOAD, POOL, PROFILES)  # a shared batch: the same two replicas, 4 sequences each
    assert shared.validator == "ok" and max(_nic_loads(shared.plan).values()) <= NIC_GBPS * 1e9
    assert shared.plan.throughput_tok_s == pytest.approx(r.plan.throughput_tok_s, rel=1e-6)


def test_validator_refuses_an_overloaded_nic():
    """Two FIRSTLAST -> WIDE replicas both sending from f/0 (f/0 -> l/0 and f/0 -> l/1), each
    re-evaluated by the cost model: 2 x tok/s x 16,384 B > 1 MB/s on f/0's send side, each
    WIDE node receiving only one replica's half; the validator names f/0 and the load."""
    from solver.plan.assign import evaluate_replica
    from solver.plan.candidates import CostTable, pool_groups
    table = CostTable(TINY, WORKLOAD, pool_groups(POOL, PROFILES), POOL)
    reps = tuple(evaluate_replica(table, [PlacedStage("f", 0, "FIRSTLAST", 1, 0, 1),
                                          PlacedStage("l", i, "WIDE", 1, 1, 3)]) for i in (0, 1))
    load = 2 * reps[0].throughput_tok_s * BYTES_PER_TOKEN
    assert load > NIC_GBPS * 1e9 > load / 2
    problems = check_plan(Plan(reps), TINY, WORKLOAD, POOL, PROFILES)
    assert problems == [f"node f/0: its replicas send {load / 1e9:.6g} GB/s through the NIC, "
                        f"it has {NIC_GBPS:g} GB/s per direction"]
    assert check_plan(Plan(reps[:1]), TINY, WORKLOAD, POOL, PROFILES) == []


def _slo_loads(res, tokens_per_request: int) -> dict:
    load: dict = {}
    for rep in res.replicas:
        stages, d = rep.placed.stages, rep.max_rate_per_s * tokens_per_request * BYTES_PER_TOKEN
        for s, t in zip(stages, stages[1:]):
            if s.node_id != t.node_id:
                load[(s.node_id, "send")] = load.get((s.node_id, "send"), 0.0) + d
                load[(t.node_id, "recv")] = load.get((t.node_id, "recv"), 0.0) + d
    return load


def test_slo_plan_keeps_each_nic_within_capacity(monkeypatch):
    """SLO mode on the same pool, prompt 128 / output 128, targets loose enough that only
    the links limit: a FIRSTLAST -> WIDE replica serves r req/s x 256 tokens x 16,384 B =
    0.5015 MB/s at its most. Without NIC rows the headroom MILP puts two of them on f/0
    (1.003 MB/s sent); with them it turns one around (WIDE -> FIRSTLAST, a column of its own)
    and every NIC stays <= 1 MB/s per direction at the replicas' full rates (the router
    never sends a replica more)."""
    import solver.plan.slo as slo
    from solver.cost.online.slo import SLO
    from solver.inputs.workload import Workload
    wl = Workload(batch=8, prompt_len=128, output_len=128)
    kw = dict(rate_per_s=0.01, slo=SLO(ttft_ms=1e7, tpot_ms=1e6), objective="headroom", simulate_check=False)
    with monkeypatch.context() as m:
        m.setattr(slo, "with_nic_steps", lambda table, columns, rates: columns)
        off = _slo_loads(slo.plan_slo(TINY, wl, POOL, PROFILES, **kw), 256)
    assert off[("f/0", "send")] == pytest.approx(1.003e6, rel=1e-3)
    on = _slo_loads(slo.plan_slo(TINY, wl, POOL, PROFILES, **kw), 256)
    assert max(on.values()) <= NIC_GBPS * 1e9  # one replica turned around: f/0 sends and receives 0.5015
    assert on[("f/0", "send")] == pytest.approx(0.5015e6, rel=1e-3) == on[("f/0", "recv")]
