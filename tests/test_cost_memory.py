"""Memory per GPU: weights, KV cache (GQA-aware), activation peak; hand-worked numbers."""

import pytest

from solver.cost.activation import activation_peak_bytes
from solver.cost.memory import (embedding_bytes, kv_bytes_per_token, kv_heads_per_gpu, layer_weight_bytes,
                                stage_kv_bytes, stage_memory, stage_weight_bytes)
from solver.inputs.model import load_model
from solver.inputs.workload import Workload

L70 = load_model("llama3-70b")
L8 = load_model("llama3-8b")


def test_llama3_70b_kv_is_320_kib_per_token():
    """2 (K,V) x 80 layers x 8 KV heads x 128 x 2 B = 327,680 B = 320 KiB."""
    assert kv_bytes_per_token(L70, tp=1, n_layers=80, kv_bytes=2) == 327_680


@pytest.mark.parametrize("tp, heads, per_token", [
    (1, 8, 327_680), (2, 4, 163_840), (4, 2, 81_920), (8, 1, 40_960),
    (16, 1, 40_960),  # t > a_kv: each rank keeps a whole replicated head, not half of one
    (32, 1, 40_960),
])
def test_gqa_kv_split_and_replication(tp, heads, per_token):
    assert kv_heads_per_gpu(L70, tp) == heads
    assert kv_bytes_per_token(L70, tp, 80, 2) == per_token


def test_stage_kv_bytes():
    """TP8, 40 layers, batch 4, context 1000: 4*1000 tokens x 2*40*1*128*2 B = 81,920,000 B."""
    assert stage_kv_bytes(L70, 8, 40, batch=4, context=1000, kv_bytes=2) == 81_920_000


def test_layer_weights_tp1_tp8_tp16():
    """tp1: 855,654,400 params x 2 B = 1,711,308,800 B.
    tp8: q,o 134,217,728/8 = 16,777,216; k,v one head 2*8192*128 = 2,097,152;
    MLP 704,643,072/8 = 88,080,384; norms 16,384 -> 106,971,136 x 2 = 213,942,272 B.
    tp16: 8,388,608 + 2,097,152 (k,v replicated) + 44,040,192 + 16,384 = 54,542,336 x 2."""
    assert layer_weight_bytes(L70, 1, 2) == 1_711_308_800
    assert layer_weight_bytes(L70, 8, 2) == 213_942_272
    assert layer_weight_bytes(L70, 16, 2) == 109_084_672


def test_embedding_vocab_parallel():
    """128256 is a multiple of 64: 128256 x 8192 / 8 x 2 B = 262,668,288 B."""
    assert embedding_bytes(L70, 8, 2) == 262_668_288


def test_stage_weights_first_middle_last_and_fp8():
    layer8 = 213_942_272
    emb8 = 262_668_288
    assert stage_weight_bytes(L70, 8, 10, first=False, last=False, weight_bytes=2) == 10 * layer8
    assert stage_weight_bytes(L70, 8, 10, first=True, last=False, weight_bytes=2) == 10 * layer8 + emb8
    # last: LM head + final norm (8192 x 2 B)
    assert stage_weight_bytes(L70, 8, 10, first=False, last=True, weight_bytes=2) == 10 * layer8 + emb8 + 16_384
    # fp8 halves everything
    assert stage_weight_bytes(L70, 8, 10, False, False, weight_bytes=1) == 10 * layer8 / 2


def test_whole_model_tp8_is_one_eighth_plus_replicas():
    """TP8 whole model: 80 x 213,942,272 + 2 x 262,668,288 + 16,384 = 17,640,734,720 B = 16.43 GiB."""
    b = stage_weight_bytes(L70, 8, 80, True, True, 2)
    assert b == 17_640_734_720
    assert b / 2**30 == pytest.approx(16.429, abs=1e-3)


def test_activation_peak_from_fit(synthetic_profile):
    """Synthetic fit: peak = 4*T*h*p = 4 x (2 x 1024) x 4096 x 2 B = 67,108,864 B."""
    assert activation_peak_bytes(synthetic_profile, L8, 1, 2, 1024, 2) == 67_108_864


def test_activation_peak_last_stage_adds_fp32_logits(synthetic_profile):
    """+ batch x V/t x 4 B = 2 x 128256 / 2 x 4 = 513,024 B."""
    base = activation_peak_bytes(synthetic_profile, L8, 2, 2, 1024, 2)
    assert activation_peak_bytes(synthetic_profile, L8, 2, 2, 1024, 2, last=True) - base == 513_024


def test_activation_default_when_unfitted(synthetic_profile):
    """No fit: count live tensors: 4h + 3f/t + 2ad/t per token = 16384 + 43008 + 8192 = 67,584;
    x 1000 tokens x 2 B = 135,168,000 B, and a warning says it is the default."""
    from dataclasses import replace
    from solver.cost.warn import CalibrationWarning
    prof = replace(synthetic_profile, activation=None)
    with pytest.warns(CalibrationWarning, match="analytic default"):
        assert activation_peak_bytes(prof, L8, 1, 1, 1000, 2) == 135_168_000


def test_stage_memory_totals(synthetic_profile):
    """llama3-8b middle stage, 4 layers, TP1, batch 2, prompt 1000 + output 24:
    weights 4 x 218,112,000 x 2 = 1,744,896,000; KV 2 x 1024 x (2*4*8*128*2 = 16,384) = 33,554,432;
    peak 4 x 2000 x 4096 x 2 = 65,536,000; overhead 1 GiB."""
    w = Workload(batch=2, prompt_len=1000, output_len=24, dtype="bf16")
    m = stage_memory(synthetic_profile, L8, 1, 4, False, False, w)
    assert m.weights == 1_744_896_000
    assert m.kv_cache == 33_554_432
    assert m.activation_peak == 65_536_000
    assert m.runtime_overhead == 2**30
    assert m.total == 1_744_896_000 + 33_554_432 + 65_536_000 + 2**30
    assert m.capacity == 80 * 2**30


def test_fp8_kv_default_follows_activations():
    assert Workload(dtype="fp8").kv_bytes == 2
    assert Workload(dtype="fp8", kv_dtype="fp8").kv_bytes == 1
