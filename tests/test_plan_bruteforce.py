"""Property: the planner's plan is never beaten by brute force (``solver.plan.exhaustive``,
which shares nothing with the MILP's layouts) on random tiny pools x random workloads:
KV-bound batches, long outputs, tiny batches, fp8, several GPU types, one to three node
groups. Fixed seed. The 4-layer model keeps brute force cheap; HiGHS runs in-process. The
answers must be equal: the planner never loses, and brute force finds the planner's plan
(same launch rule, re-implemented)."""

import dataclasses
import random
import warnings


from plan_helpers import TINY, pool, syn_profile
from solver.errors import InfeasibleError
from solver.inputs.workload import Workload
from solver.plan.exhaustive import Exhaustive
from solver.plan.planner import plan

TYPES = [syn_profile("BIG", 80, 1000), syn_profile("MID", 3.0, 800, 600),
         syn_profile("SMALL", 2.6, 500, 400), syn_profile("TINYG", 2.2, 300, 300)]
CASES = 500
REL = 1e-9


def _case(rng: random.Random):
    groups, total = [], 0
    for j in range(rng.randint(1, 3)):
        p, k = rng.choice(TYPES), rng.choice([1, 1, 2, 4])
        c = min(rng.randint(1, 2), (6 - total) // k)
        if c < 1:
            break
        total += c * k
        groups.append((f"g{j}", c, p.gpu_name, k, rng.choice([0.01, 1.0, 25.0]), rng.choice([0.5, 1.0, 2.0])))
    wl = Workload(batch=rng.choice([1, 2, 3, 8, 32, 100]), prompt_len=rng.choice([64, 512, 2048]),
                  output_len=rng.choice([1, 16, 512, 2048]), dtype=rng.choice(["bf16", "bf16", "fp8"]),
                  kv_dtype=rng.choice(["", "", "fp8"]))
    return pool(*groups), wl


def test_planner_never_loses_to_brute_force():
    rng = random.Random(20261202)
    worse, checked = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(CASES):
            cluster, wl = _case(rng)
            ref = Exhaustive(TINY, wl, cluster, TYPES).best()[0]
            try:
                mine = plan(TINY, wl, cluster, TYPES, solver="highs", batch_per_replica=True).plan.throughput_tok_s
            except InfeasibleError:
                mine = 0.0
            checked += 1
            if abs(mine - ref) > REL * max(ref, 1.0):  # equal: neither side misses a plan
                worse.append((i, [g.name for g in cluster.node_groups], wl, mine, ref))
    assert checked == CASES
    assert worse == []


SHARED_CASES = 300


def test_shared_batch_planner_never_loses_to_brute_force():
    """The default mode: the pool's replicas share --batch. Brute force enumerates every plan
    and every split of the batch over its replicas (each replica with its best layer split
    for its share) by a DP of its own."""
    rng = random.Random(7)
    worse = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(SHARED_CASES):
            cluster, wl = _case(rng)
            wl = dataclasses.replace(wl, batch=rng.choice([1, 2, 3, 5, 8, 12]))
            ref = Exhaustive(TINY, wl, cluster, TYPES).best_shared()
            try:
                mine = plan(TINY, wl, cluster, TYPES, solver="highs").plan.throughput_tok_s
            except InfeasibleError:
                mine = 0.0
            if abs(mine - ref) > REL * max(ref, 1.0):  # equal: neither side misses a plan
                worse.append((i, [g.name for g in cluster.node_groups], wl, mine, ref))
    assert worse == []
