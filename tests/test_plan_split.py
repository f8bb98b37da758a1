"""The vectorised split search is ``estimate_pipeline``'s own elapsed time, and its best
split equals brute force over every split (KV-limited waves included)."""

import itertools
import warnings

import pytest

from plan_helpers import pool, syn_profile
from solver.cost.stage import memoized_stage_times
from solver.inputs.model import parse_hf_config
from solver.inputs.workload import Workload
from solver.plan.candidates import CostTable, pool_groups
from solver.plan.shapes import Block, Shape, _estimate, evaluate

TYPES = [syn_profile("BIG", 80, 1000), syn_profile("MID", 3.0, 800, 600), syn_profile("SMALL", 2.6, 500, 400)]
# 12 layers of the tiny model's anatomy: enough room for splits to matter, cheap to enumerate
TWELVE = parse_hf_config({"model_type": "llama", "num_hidden_layers": 12, "hidden_size": 4096,
                          "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                          "vocab_size": 128256}, "twelve", name="twelve")
CLUSTER = pool(("b", 1, "BIG", 2, 25.0, 2.0), ("m", 2, "MID", 2, 1.0, 1.0), ("s", 2, "SMALL", 1, 1.0, 0.5))
SHAPES = [Shape((Block(1, 1, 3, (1, 2)),)),
          Shape((Block(0, 1, 1), Block(1, 1, 4, (2, 2)))),
          Shape((Block(2, 1, 1), Block(1, 1, 2, (2,)), Block(0, 1, 2, (2,)))),
          Shape((Block(1, 2, 1), Block(0, 2, 1)))]
WORKLOADS = [Workload(batch=32, prompt_len=2048, output_len=512), Workload(batch=3, prompt_len=64, output_len=1),
             Workload(batch=100, prompt_len=512, output_len=2048, dtype="fp8", kv_dtype="fp8"),
             Workload(batch=8, prompt_len=512, output_len=128)]


def _brute(table, shape):
    L, d, best = table.num_layers, shape.depth, (0.0, None)
    for cuts in itertools.combinations(range(1, L), d - 1):
        split = tuple(b - a for a, b in zip((0,) + cuts, cuts + (L,)))
        if any(table.kind(*k) is None or n > table.kind(*k).cap_layers for k, n in zip(shape.stages(), split)):
            continue
        v = _estimate(table, shape, split).throughput_tok_s
        if v > best[0]:
            best = (v, split)
    return best


def test_best_split_equals_brute_force_and_estimate_pipeline():
    """Every layout x workload; some best splits run in several KV-limited waves."""
    waves = []
    with warnings.catch_warnings(), memoized_stage_times():
        warnings.simplefilter("ignore")
        for wl, shape in itertools.product(WORKLOADS, SHAPES):
            table = CostTable(TWELVE, wl, pool_groups(CLUSTER, TYPES), CLUSTER)
            sv = evaluate(table, shape)
            ref = _brute(table, shape)
            if sv is None:
                assert ref[0] == 0.0
                continue
            assert sv.exact_split
            est = _estimate(table, shape, sv.layers).throughput_tok_s
            assert sv.throughput_tok_s == pytest.approx(est, rel=1e-9)  # the same formula
            assert sv.throughput_tok_s == pytest.approx(ref[0], rel=1e-9)
            waves.append(len(_estimate(table, shape, sv.layers).concurrency.waves))
    assert max(waves) > 1


def test_random_splits_time_like_estimate_pipeline():
    """The elapsed time the split search reports for its split is estimate_pipeline's."""
    from solver.plan import split as split_mod
    from solver.plan.shapes import shape_links
    with warnings.catch_warnings(), memoized_stage_times():
        warnings.simplefilter("ignore")
        for wl in WORKLOADS:
            table = CostTable(TWELVE, wl, pool_groups(CLUSTER, TYPES), CLUSTER)
            for shape in SHAPES:
                found = split_mod.best_split(table, shape.stages(), shape_links(table, shape))
                if found is None:
                    continue
                layers, elapsed_s, _ = found
                est = _estimate(table, shape, layers)
                assert elapsed_s == pytest.approx(est.elapsed_s, rel=1e-9)
