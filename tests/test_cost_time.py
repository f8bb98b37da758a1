"""Compute and communication time on the synthetic profile (1 PFLOP/s, 1 TB/s, eff 0.5;
all_reduce alpha 10 us, busbw 100 GB/s; NIC efficiency 0.5, inter-node alpha 50 us)."""

import pytest

from solver.cost import comm, compute
from solver.cost.stage import Stage, stage_time
from solver.inputs.model import load_model
from solver.inputs.workload import Workload

L8 = load_model("llama3-8b")


def test_prefill_layer_is_compute_bound():
    """b=1, s=1024, tp=1: matmul params/token 218,103,808 (layer params 218,112,000 less the
    two 4096-wide norms: elementwise, no matmul) -> 2*1024*218,103,808 = 446,676,598,784;
    causal attention 2*1*1024^2*128*32 = 8,589,934,592; total 455,266,533,376 FLOP
    at 1e15*0.5 -> 9.10533066752e-4 s (memory: 436,224,000 B / 5e11 = 8.72e-4 s, smaller)."""
    assert compute.prefill_layer_flops(L8, 1, 1, 1024) == 455_266_533_376


def test_prefill_layer_time(synthetic_profile):
    w = Workload(batch=1, prompt_len=1024, output_len=0)
    assert compute.prefill_layer_s(synthetic_profile, L8, 1, w, 1) == pytest.approx(9.10533066752e-4)


def test_decode_layer_is_memory_bound(synthetic_profile):
    """b=1, context 1024: weights 436,224,000 B + KV 1024 x 2*8*128*2 = 4,194,304 B
    = 440,418,304 B at 1e12*0.5 -> 8.80836608e-4 s (FLOPs 2*218,112,000 + 4*1024*4096 ~ 4.5e8: tiny)."""
    w = Workload(batch=1, prompt_len=1024, output_len=0)
    assert compute.decode_layer_s(synthetic_profile, L8, 1, w, 1, 1024) == pytest.approx(8.80836608e-4)


@pytest.mark.parametrize("tp, expect_us", [(2, 20.0), (8, 27.5)])
def test_tp_allreduce(synthetic_profile, tp, expect_us):
    """1e6 B: alpha 10 us + 2(n-1)/n x 1e6 B / 100 GB/s: n=2 -> 10 + 10; n=8 -> 10 + 17.5."""
    assert comm.tp_allreduce_s(synthetic_profile, tp, 1e6) == pytest.approx(expect_us * 1e-6)


def test_allreduce_missing_rank_count_uses_network_defaults(synthetic_profile):
    """No 16-rank fit: never borrowed from n=8; the network block (alpha 10 us, 100 GB/s x
    efficiency 1.0) with the 16-rank factor 1.875 -> 10 + 18.75 us."""
    from solver.cost.warn import CalibrationWarning
    with pytest.warns(CalibrationWarning, match="no all_reduce fit for 16 ranks .*not derived"):
        assert comm.tp_allreduce_s(synthetic_profile, 16, 1e6) == pytest.approx(28.75e-6)


def test_p2p_inter_node(synthetic_profile):
    """1e8 B over a 25 GB/s NIC at efficiency 0.5: 50 us + 1e8 / 12.5e9 s = 8.05 ms."""
    assert comm.p2p_s(synthetic_profile, 1e8, 25.0) == pytest.approx(8.05e-3)


def test_p2p_intra_node_uses_send_recv_fit(synthetic_profile):
    """send_recv fit alpha 10 us, busbw 100 GB/s, factor 1: 1e8 B -> 10 + 1000 us."""
    assert comm.p2p_s(synthetic_profile, 1e8, None) == pytest.approx(1.01e-3)


def test_stage_tp_comm_counts(synthetic_profile):
    """Middle stage, 2 layers, TP2, batch 1, prompt 1000: 2 layers x 2 all-reduces of
    1000*4096*2 = 8,192,000 B (10 + 81.92 us each) = 367.68 us, plus the all-gather of the
    arriving activations (hidden + residual: 16,384,000 B; factor 1/2 -> 10 + 81.92 us)."""
    w = Workload(batch=1, prompt_len=1000, output_len=0)
    t = stage_time(Stage(synthetic_profile, 2, 2, first=False, last=False), L8, w, 1)
    assert t.prefill_comm_s == pytest.approx((4 * 91.92 + 91.92) * 1e-6)


def test_p2p_intra_node_chunks_across_tp_ranks(synthetic_profile):
    """4 sending ranks each carry 1e8/4 B on their own link: 10 + 250 us."""
    assert comm.p2p_s(synthetic_profile, 1e8, None, senders=4) == pytest.approx(2.6e-4)


def test_p2p_inter_node_chunks_share_the_nic(synthetic_profile):
    """Between nodes the 4 chunks share one NIC: same 8.05 ms as a single sender."""
    assert comm.p2p_s(synthetic_profile, 1e8, 25.0, senders=4) == pytest.approx(8.05e-3)


def test_memoized_stage_times_are_identical(synthetic_profile):
    """The planner's memo returns exactly what a fresh computation gives, and is gone
    outside its block."""
    from solver.cost import stage as stage_mod
    w = Workload(batch=2, prompt_len=512, output_len=16)
    st = Stage(synthetic_profile, 2, 4, first=True, last=False)
    fresh = stage_time(st, L8, w, 2)
    with stage_mod.memoized_stage_times():
        assert stage_time(st, L8, w, 2) == fresh
        assert stage_time(st, L8, w, 2) == fresh  # served from the memo
        assert len(stage_mod._MEMO) == 1
    assert stage_mod._MEMO is None
