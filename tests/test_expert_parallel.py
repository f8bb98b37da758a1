"""MoE expert parallelism (vLLM --enable-expert-parallel): all-to-all cost per MoE layer."""

import warnings

import pytest

from solver.cost import comm
from solver.cost.stage import Stage, tp_comm_s
from solver.inputs.model import parse_hf_config
from solver.inputs.workload import Workload

MOE = parse_hf_config({"model_type": "mixtral", "num_hidden_layers": 2, "hidden_size": 1024,
                       "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 512,
                       "vocab_size": 1000, "num_local_experts": 8, "num_experts_per_tok": 2}, "moe.json")


def test_dispatch_bytes():
    """1000 tokens x top-2 x h 1024 x 2 B over 4 ranks = 1,024,000 B per rank."""
    assert comm.ep_dispatch_bytes(1000, 2, 1024, 2, 4) == 1_024_000


def test_ep_replaces_the_moe_all_reduce_with_two_all_to_alls(synthetic_profile):
    """Synthetic profile, TP4, 1000 tokens, bf16. All-reduce of 1000*1024*2 = 2,048,000 B:
    10 us + 1.5 x 2,048,000 B / 100 GB/s = 40.72 us. No all_to_all fit: network defaults,
    10 us + 0.75 x 1,024,000 B / (100 GB/s x 1.0) = 17.68 us. Per MoE layer EP changes
    the cost by 2 x 17.68 - 40.72 = -5.36 us; two MoE layers: -10.72 us."""
    st = Stage(synthetic_profile, 4, 2, first=False, last=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ep = tp_comm_s(st, MOE, Workload(expert_parallel=True), 1000, 1)
    base = tp_comm_s(st, MOE, Workload(), 1000, 1)
    assert (ep - base) * 1e6 == pytest.approx(-10.72)
    assert any("no all_to_all fit" in str(w.message) for w in caught)


def test_ep_flag_in_the_vllm_command():
    from solver.report.vllm_export import _engine_flags
    assert "--enable-expert-parallel" in _engine_flags(Workload(expert_parallel=True), None)
