"""Planner on tiny pools: answers checked by hand or by exhaustive search, validator on
every plan. Model: 4 layers with Llama-3-8B's anatomy (tests/plan_helpers.py); GPUs: the
synthetic fixture with memory changed so that memory binds (SMALL: 2.2 GiB, cannot hold
the 4 layers plus embeddings on one GPU)."""

import math
import warnings

import pytest

from plan_helpers import TINY, WORKLOAD, pool, syn_profile
from solver.cost.pipeline import estimate_pipeline
from solver.cost.stage import Stage
from solver.errors import InfeasibleError
from solver.plan.exhaustive import Exhaustive
from solver.plan.milp import Column, PlanMILP, node_configs
from solver.plan.planner import plan
from solver.plan.validate_plan import check_plan

BIG = syn_profile("BIG", 80, 1000)
MID = syn_profile("MID", 3.0, 800, 600)
SMALL = syn_profile("SMALL", 2.2, 500, 400)
TINYG = syn_profile("TINYG", 1.8, 300, 300)
PIPE = syn_profile("PIPE", 3.4, 800, 600)  # two of them hold the model, one does not
PROFILES = [BIG, MID, SMALL, TINYG, PIPE]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _plan(cluster, **kw):
    """Every replica serves its own batch here (--batch-per-replica): what Exhaustive sums."""
    kw.setdefault("batch_per_replica", True)
    r = plan(TINY, WORKLOAD, cluster, PROFILES, **kw)
    for p in [r.plan, *r.baselines.values()]:
        if p is not None:
            assert check_plan(p, TINY, WORKLOAD, cluster, PROFILES) == []
    return r


def test_node_configs_are_maximal_multisets():
    """Chunks {4, 2} on an 8-GPU node: 4+4, 4+2+2, 2+2+2+2 (nothing else fits, nothing smaller is maximal)."""
    assert sorted(node_configs([4, 2], 8)) == [(2, 2, 2, 2), (4, 2, 2), (4, 4)]


@pytest.mark.parametrize("solver", ["cbc", "highs"])
def test_milp_packing_by_hand(solver):
    """One group, 2 nodes of 8 GPUs. Shape A: one chunk of 8 GPUs, 10 tok/s; shape B: one
    chunk of 4 GPUs, 6 tok/s. Best: 4 x B = 24 (A+2B = 22, 2A = 20)."""
    cols = [Column(10.0, 0.0, ((0, 8),)), Column(6.0, 0.0, ((0, 4),))]
    sol = PlanMILP(cols, [2], [8]).solve(solver)
    assert sol.status == "optimal" and sol.objective == pytest.approx(24.0)
    assert sol.counts == {1: 4} and sol.bound == pytest.approx(24.0) and sol.gap == 0


def test_identical_gpus_each_serve_a_replica():
    """Two 1-GPU BIG nodes: the model fits one GPU, so the optimum is two TP1 replicas, each
    at estimate_pipeline's single-GPU throughput."""
    c = pool(("b", 2, "BIG", 1, 25.0, 2.0))
    r = _plan(c)
    one = estimate_pipeline(TINY, WORKLOAD, [Stage(BIG, 1, 4, True, True)], []).throughput_tok_s
    assert r.status == "optimal" and r.gap == 0
    assert [len(x.stages) for x in r.plan.replicas] == [1, 1]
    assert r.plan.throughput_tok_s == pytest.approx(2 * one, rel=1e-12)
    assert r.plan.usd_per_hour == pytest.approx(4.0)


def test_memory_bound_forces_a_pipeline():
    """PIPE (3.4 GiB) cannot hold the model (3.6 GiB of weights), so two 1-GPU PIPE nodes
    form one 2-stage pipeline whose layers split to fit; the bottleneck is a stage."""
    c = pool(("p", 2, "PIPE", 1, 25.0, 1.0))
    r = _plan(c)
    (rep,) = r.plan.replicas
    assert len(rep.stages) == 2 and sum(s.n_layers for s in rep.stages) == 4
    assert rep.bottleneck.startswith("stage")
    assert r.plan.throughput_tok_s == pytest.approx(Exhaustive(TINY, WORKLOAD, c, PROFILES).best()[0], rel=1e-9)


def test_slow_link_moves_the_bottleneck_to_the_link():
    """The same pipeline over a 0.01 GB/s NIC: the activations (2 x 4 x 4096 x 2 bytes per
    decode micro-batch) take longer than a stage, so the link is the bottleneck and the plan
    is slower than over 25 GB/s."""
    fast = _plan(pool(("p", 2, "PIPE", 1, 25.0, 1.0)))
    slow = _plan(pool(("p", 2, "PIPE", 1, 0.01, 1.0)))
    assert slow.plan.replicas[0].bottleneck.startswith(("link", "chain"))
    assert slow.plan.throughput_tok_s < fast.plan.throughput_tok_s


def test_slow_link_prefers_one_node():
    """A 2-GPU PIPE node and two 1-GPU PIPE nodes behind a 0.01 GB/s NIC: the pipeline whose
    stages share the 2-GPU node (a TP2 stage or two co-located stages) beats the split over
    the slow NIC, and the planner picks it: exhaustive search agrees."""
    c = pool(("pair", 1, "PIPE", 2, 0.01, 1.0), ("single", 2, "PIPE", 1, 0.01, 1.0))
    r = _plan(c)
    best = Exhaustive(TINY, WORKLOAD, c, PROFILES).best()
    assert r.plan.throughput_tok_s == pytest.approx(best[0], rel=1e-9)
    assert any(s.group == "pair" for rep in r.plan.replicas for s in rep.stages)


POOLS = [
    [("b", 1, "BIG", 2, 25.0, 2.0), ("s", 2, "SMALL", 2, 10.0, 0.5)],
    [("m", 2, "MID", 2, 0.01, 1.0), ("t", 1, "TINYG", 4, 1.0, 1.0)],
    [("b", 3, "BIG", 1, 25.0, 2.0), ("m", 1, "MID", 2, 25.0, 1.0)],
    [("t", 3, "TINYG", 1, 1.0, 1.0), ("p", 2, "PIPE", 1, 0.01, 1.0)],
    [("t", 3, "TINYG", 2, 1.0, 0.5), ("p", 2, "PIPE", 1, 25.0, 1.0)],
    [("s", 1, "SMALL", 4, 25.0, 1.0), ("t", 1, "TINYG", 4, 1.0, 1.0)],
]


@pytest.mark.parametrize("groups", POOLS)
def test_throughput_equals_exhaustive_search(groups):
    c = pool(*groups)
    r = _plan(c)
    best = Exhaustive(TINY, WORKLOAD, c, PROFILES).best()
    assert r.status == "optimal"
    assert r.plan.throughput_tok_s == pytest.approx(best[0], rel=1e-9)
    for b in r.baselines.values():
        assert b is None or b.throughput_tok_s <= r.plan.throughput_tok_s * (1 + 1e-9)


@pytest.mark.parametrize("groups", POOLS[:3])
def test_cost_objective_equals_exhaustive_search(groups):
    """Min $/h subject to half the pool's best throughput: the same cost as brute force."""
    c = pool(*groups)
    floor = 0.5 * Exhaustive(TINY, WORKLOAD, c, PROFILES).best()[0]
    r = _plan(c, objective="cost", min_tok_s=floor)
    ref = Exhaustive(TINY, WORKLOAD, c, PROFILES).best("cost", floor)
    assert r.plan.throughput_tok_s >= floor * (1 - 1e-9)
    assert r.plan.usd_per_hour == pytest.approx(ref[1], rel=1e-9)
    assert r.objective_value == pytest.approx(ref[1], rel=1e-9)


def test_max_replicas_caps_the_plan():
    c = pool(("b", 4, "BIG", 1, 25.0, 2.0))
    r = _plan(c, max_replicas=3)
    assert len(r.plan.replicas) == 3
    assert r.plan.throughput_tok_s == pytest.approx(
        Exhaustive(TINY, WORKLOAD, c, PROFILES, max_replicas=3).best()[0], rel=1e-9)


def test_weights_beyond_the_pool_say_so():
    """One 1.8 GiB GPU; weights 4 x 0.436 GB layers + 2 x 1.05 GB embeddings = 3.86 GB
    = 3.6 GiB, printed rounded: "4 GiB ... 2 GiB"."""
    c = pool(("t", 1, "TINYG", 1, 1.0, 1.0))
    with pytest.raises(InfeasibleError, match=r"tiny needs 4 GiB of weights; the pool has 2 GiB"):
        plan(TINY, WORKLOAD, c, PROFILES)


def test_unreachable_floor_says_the_best():
    c = pool(("b", 1, "BIG", 1, 25.0, 2.0))
    with pytest.raises(InfeasibleError, match=r"out of reach: the pool gives at most"):
        plan(TINY, WORKLOAD, c, PROFILES, objective="cost", min_tok_s=1e9)


def test_reported_gap_is_consistent():
    r = _plan(pool(*POOLS[0]))
    assert r.best_bound >= r.objective_value * (1 - 1e-9)
    assert math.isclose(r.gap, (r.best_bound - r.objective_value) / r.objective_value, abs_tol=1e-9)


def test_shared_batch_splits_evenly_over_identical_replicas():
    """Two 1-GPU BIG nodes share a batch of 8: each replica takes 4, the makespan is one
    replica's time for 4 sequences, and the throughput is 8 x (512 + 128) tokens over it --
    not twice a replica's throughput on 8 (what --batch-per-replica reports)."""
    import dataclasses
    c = pool(("b", 2, "BIG", 1, 25.0, 2.0))
    r = _plan(c, batch_per_replica=False)
    four = estimate_pipeline(TINY, dataclasses.replace(WORKLOAD, batch=4), [Stage(BIG, 1, 4, True, True)], [])
    assert sorted(x.batch for x in r.plan.replicas) == [4, 4]
    assert r.plan.throughput_tok_s == pytest.approx(8 * 640 / four.elapsed_s, rel=1e-9)
    assert r.objective_value == pytest.approx(r.plan.throughput_tok_s, rel=1e-9)
    assert r.status == "optimal"
