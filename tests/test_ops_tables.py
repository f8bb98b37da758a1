"""Op tables (profile schema v2): loading, log-space lookup, composition of a step.

The synthetic tables use power laws so log-space interpolation is exact and hand-checkable:
GEMM t = 10 us x m^0.5 on m in [1, 100] (n, k axes flat); attention t = 1 us x batch x len
on [1, 100]^2; all-reduce 10 us flat (custom) or 100 us (NCCL).
"""

import json
import warnings

import pytest

from solver.cost.ops.compose import Step, layer_ops
from solver.cost.ops.grid import grid_at
from solver.cost.ops.lookup import allreduce_impl, attention_s, gemm_s
from solver.cost.ops.phases import merge, prefill_steps
from solver.cost.stage import Stage, stage_breakdown, stage_time
from solver.cost.warn import CalibrationWarning
from solver.errors import InputError
from solver.inputs.model import load_model
from solver.inputs.ops_profile import tables_for
from solver.inputs.profile import load_profile, parse_profile
from solver.inputs.workload import Workload

from conftest import FIXTURES

SRC = {"source": "synthetic", "ref": "round numbers for hand checks"}


def ops_section() -> dict:
    ms = [1, 100]
    gemm = {"dtype": "bf16", "m": ms, "n": [10, 1000], "k": [10, 1000],
            "time_us": [[[10, 10], [10, 10]], [[100, 100], [100, 100]]], **SRC}
    attn = lambda second: {"heads": 4, "kv_heads": 1, "head_dim": 128, "batch": [1, 100], second: [1, 100],  # noqa: E731
                           "time_us": [[1, 100], [100, 10000]], **SRC}
    ar = lambda impl, t: {"impl": impl, "ranks": 2, "size_bytes": [1, 1e9], "time_us": [t, t], **SRC}  # noqa: E731
    return {"vllm-0.1": {
        "runtime": "vllm 0.1", **SRC, "gemm": [gemm],
        "prefill_attention": [attn("seq")], "decode_attention": [attn("context")],
        "all_reduce": [ar("custom_graph", 10), ar("custom_eager", 40), ar("nccl", 100)],
        "allreduce_policy": {"custom_max_bytes": 8 * 2**20, "custom_ranks": [2], "cuda_graph_max_tokens": 512, **SRC},
        "elementwise": {"gbps": {"value": 1000, **SRC}, "latency_us": {"value": 2, **SRC}},
        "step_overhead_ms": {"decode": {"value": 1.0, **SRC}, "prefill": {"value": 2.0, **SRC}},
    }}


@pytest.fixture
def ops_profile(tmp_path):
    data = json.loads((FIXTURES / "synthetic_profile.json").read_text())
    data.update(schema_version=2, ops=ops_section())
    p = tmp_path / "ops.json"
    p.write_text(json.dumps(data))
    return load_profile(p)


def test_v1_profile_still_loads_and_has_no_tables(synthetic_profile):
    assert synthetic_profile.ops == {} and tables_for(synthetic_profile.ops, "vllm") is None


def test_ops_need_schema_2():
    data = json.loads((FIXTURES / "synthetic_profile.json").read_text())
    data["ops"] = ops_section()
    with pytest.raises(InputError, match="schema_version 2"):
        parse_profile(data, "p.json")


def test_bad_grid_shape_names_the_field():
    data = json.loads((FIXTURES / "synthetic_profile.json").read_text())
    ops = ops_section()
    ops["vllm-0.1"]["gemm"][0]["time_us"] = [[[10, 10]]]
    data.update(schema_version=2, ops=ops)
    with pytest.raises(InputError) as e:
        parse_profile(data, "p.json")
    assert e.value.field == "ops.vllm-0.1.gemm[0].time_us"


def test_tables_for_picks_the_runtime(ops_profile):
    assert tables_for(ops_profile.ops, "vllm").key == "vllm-0.1"
    assert tables_for(ops_profile.ops, "megatron").key == "vllm-0.1"  # lent: kernel times


def test_loglog_interpolation_is_exact_for_a_power_law(ops_profile):
    """t = 10 x m^0.5: at m = 10, 10 x sqrt(10) = 31.6228 us; inside the grid."""
    g = tables_for(ops_profile.ops, "vllm").gemm["bf16"]
    t, inside = grid_at(g, (10, 100, 100))
    assert t == pytest.approx(31.6227766) and inside


def test_gemm_beyond_the_table_is_blocks(ops_profile):
    """m = 400 > m_max 100: 4 blocks of m = 100 -> 4 x 100 us; n = 3000: 3 column blocks."""
    tab = tables_for(ops_profile.ops, "vllm")
    s, src = gemm_s(ops_profile, tab, 400, 3000, 100, "bf16", 2)
    assert s == pytest.approx(4 * 3 * 100e-6) and src.startswith("synthetic")


def test_weight_only_gemm_streams_its_own_bytes(ops_profile):
    """A 4-bit weight-only GEMM (bf16 matmul, 0.5 B per weight) skips the bf16 table (which
    streams 16-bit weights: 10 us here) for the roofline with its own bytes: m=1, n=k=1000:
    read 1*1000*2 + 1000*1000*0.5 + 1*1000*2 = 504,000 B at 1000 GB/s x 0.5 = 1.008 us;
    compute 2e6 FLOP at 1000 TFLOP/s x 0.5 = 0.004 us; memory-bound: 1.008 us."""
    tab = tables_for(ops_profile.ops, "vllm")
    s, src = gemm_s(ops_profile, tab, 1, 1000, 1000, "bf16", 2, 0.5)
    assert s == pytest.approx(1.008e-6) and "weight-only" in src


def test_gemm_below_the_table_warns(ops_profile):
    tab = tables_for(ops_profile.ops, "vllm")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        gemm_s(ops_profile, tab, 1, 5, 100, "bf16", 2)
    assert any(issubclass(x.category, CalibrationWarning) and "extrapolated" in str(x.message) for x in w)


def test_attention_scales_with_query_heads(ops_profile):
    """Table for 4 heads: batch 10, len 10 -> 1 x 10 x 10 = 100 us; 8 heads -> x 2 = 200 us."""
    tab = tables_for(ops_profile.ops, "vllm")
    s, src = attention_s(ops_profile, tab, "decode", 10, 10, 8, 1, 128, "bf16", 2, 2)
    assert s == pytest.approx(200e-6) and "scaled from 4/1 heads" in src


@pytest.mark.parametrize("ranks, nbytes, tokens, impl", [
    (2, 1e6, 8, "custom_graph"), (2, 1e6, 1000, "custom_eager"), (2, 16 * 2**20, 8, "nccl"), (4, 1e6, 8, "nccl")])
def test_allreduce_policy(ops_profile, ranks, nbytes, tokens, impl):
    assert allreduce_impl(tables_for(ops_profile.ops, "vllm"), ranks, nbytes, tokens) == impl


def test_prefill_steps_chunk_a_long_prompt():
    steps = prefill_steps(2, 3000, 2048)
    assert [(s.prefill_len, s.prefill_context, n) for s, n in steps] == [(1500, 1500, 2), (1500, 3000, 2)]


def test_merge_adds_calls_and_time():
    from solver.cost.ops.compose import OpTime
    a = [OpTime("x", "gemm", 1.0, 2, "s")]
    out = merge([(a, 3), (a, 1)])
    assert out[0].count == 8 and out[0].total_s == pytest.approx(8.0)


def test_decode_step_composition(ops_profile):
    """llama3-8b, TP2, batch 10, context 10: every GEMM has m = 10, 10 x sqrt(10) = 31.62 us per
    block of the flat n/k axes (n or k above 1000 are split into equal blocks)."""
    model = load_model("llama3-8b")
    tab = tables_for(ops_profile.ops, "vllm")
    ops = layer_ops(ops_profile, tab, model, 2, Workload(batch=10, prompt_len=10, output_len=2),
                    Step(decode_batch=10, context=10))
    names = [o.name for o in ops]
    assert names == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj", "decode_attention",
                     "add_rmsnorm", "rotary", "activation", "all_reduce"]
    ar = ops[-1]
    # 10 tokens x 4096 x 2 B = 81,920 B <= 8 MiB, 10 tokens <= 512: custom graph, 10 us, twice
    assert (ar.seconds, ar.count) == (pytest.approx(10e-6), 2) and ar.source.startswith("custom_graph")
    qkv = ops[0]  # n = (16 + 2 x 4) x 128 = 3072 -> 4 column blocks of 768; k = 4096 -> 5 blocks of 819.2
    assert qkv.seconds == pytest.approx(4 * 5 * 31.6227766e-6)


def test_stage_time_uses_tables_and_adds_step_overhead(ops_profile):
    model = load_model("llama3-8b")
    w = Workload(batch=10, prompt_len=10, output_len=2)
    stage = Stage(ops_profile, 2, 1, first=False, last=True)
    pre, dec = stage_breakdown(stage, model, w, 10)
    oh = [o for o in dec if o.name == "step_overhead"][0]
    assert oh.total_s == pytest.approx(1e-3)
    t = stage_time(stage, model, w, 10)
    assert t.decode_step_s == pytest.approx(sum(o.total_s for o in dec))
    assert t.prefill_s == pytest.approx(sum(o.total_s for o in pre))


@pytest.mark.parametrize("gbps, want_us, bound", [(1000, 6222.54, "compute-bound"), (100, 19269.58, "weights")])
def test_moe_experts_are_one_fused_op(tmp_path, gbps, want_us, bound):
    """mixtral-8x7b, TP1, decode batch 4, k = 2: ONE ``moe_experts`` op, no per-expert calls.
    Compute: the grouped GEMMs of 4 x 2 = 8 rows, 10 x 8^0.5 = 28.284 us per block; gate/up
    n = 2 x 14336 -> 29 column blocks, k = 4096 -> 5: 145 blocks; down n = 4096 -> 5, k = 14336
    -> 15: 75 blocks; (145 + 75) x 28.284 = 6222.54 us. Weights: touched 8 x (1 - (6/8)^4) =
    5.46875 experts x 3 x 4096 x 14336 x 2 B = 1,926,758,400 B; at 1000 GB/s 1926.76 + 2 us
    launch (compute wins), at 100 GB/s 19,267.58 + 2 = 19,269.58 us (weights win)."""
    data = json.loads((FIXTURES / "synthetic_profile.json").read_text())
    ops_ = ops_section()
    ops_["vllm-0.1"]["elementwise"]["gbps"]["value"] = gbps
    data.update(schema_version=2, ops=ops_)
    (tmp_path / "p.json").write_text(json.dumps(data))
    prof = load_profile(tmp_path / "p.json")
    model = load_model("mixtral-8x7b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the router's n = 8 is below the synthetic table
        ops = {o.name: o for o in layer_ops(prof, tables_for(prof.ops, "vllm"), model, 1,
                                            Workload(batch=4, prompt_len=8, output_len=2),
                                            Step(decode_batch=4, context=8))}
    assert "expert_gate_up" not in ops and ops["router"].count == 1
    moe = ops["moe_experts"]
    assert moe.count == 1 and moe.seconds == pytest.approx(want_us * 1e-6, rel=1e-5)
    assert bound in moe.source


def _moe_layer(tmp_path, moe: list, expert_parallel: bool = False) -> dict:
    data = json.loads((FIXTURES / "synthetic_profile.json").read_text())
    ops_ = ops_section()
    ops_["vllm-0.1"]["moe"] = moe
    data.update(schema_version=2, ops=ops_)
    (tmp_path / "p.json").write_text(json.dumps(data))
    prof = load_profile(tmp_path / "p.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the router's n = 8 is below the synthetic table
        return {o.name: o for o in layer_ops(prof, tables_for(prof.ops, "vllm"), load_model("mixtral-8x7b"), 2,
                                             Workload(batch=4, prompt_len=8, output_len=2,
                                                      expert_parallel=expert_parallel),
                                             Step(decode_batch=4, context=8))}


MIXTRAL_MOE = {"dtype": "bf16", "hidden": 4096, "inter": 14336, "topk": 2, "experts": 8,
               "tokens": [1, 100], "time_us": [100, 10000], **SRC}


@pytest.mark.parametrize("split, ep", [((2, 1), False), ((1, 2), True)])
def test_moe_experts_read_the_fused_moe_table(tmp_path, split, ep):
    """mixtral-8x7b on 2 ranks (TP2, or EP2 with expert parallelism), decode batch 4: the
    entry of exactly this expert shape and split, t = 100 us x tokens (exact in log space):
    400 us, one call; its gated activation is inside the call (no routed activation kernel:
    mixtral has no shared expert, so no activation op at all). The entry of the other split
    is 10x slower and must not be read."""
    other = (1, 2) if split == (2, 1) else (2, 1)
    ops = _moe_layer(tmp_path, [{**MIXTRAL_MOE, "tp": split[0], "ep": split[1]},
                                {**MIXTRAL_MOE, "tp": other[0], "ep": other[1], "time_us": [1000, 100000]}], ep)
    moe = ops["moe_experts"]
    assert (moe.kind, moe.count) == ("moe", 1) and moe.seconds == pytest.approx(400e-6)
    assert "activation" not in ops and "expert_gate_up" not in ops


def test_moe_table_of_another_shape_falls_back(tmp_path):
    """An entry for 16 experts does not serve mixtral's 8: the composed fused op (gemm kind)
    and the activation kernel are used."""
    ops = _moe_layer(tmp_path, [{**MIXTRAL_MOE, "experts": 16, "tp": 2, "ep": 1}])
    assert ops["moe_experts"].kind == "gemm" and "activation" in ops


def test_windowed_layer_caps_the_context(ops_profile):
    """A layer with a 4-token window attends to 4 tokens, not 64: decode attention on the
    synthetic table t = batch x len = 2 x 4 = 8 us."""
    from solver.inputs.model import LayerKind
    model = load_model("llama3-8b")
    tab = tables_for(ops_profile.ops, "vllm")
    ops = layer_ops(ops_profile, tab, model, 8, Workload(batch=2, prompt_len=60, output_len=8),
                    Step(decode_batch=2, context=64), LayerKind(window=4))
    att = [o for o in ops if o.name == "decode_attention"][0]
    assert att.seconds == pytest.approx(8e-6)
