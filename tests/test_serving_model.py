"""The serving model (solver.cost.serving + pipeline) on the synthetic profile, by hand.

Synthetic profile: 80 GiB, 1 PFLOP/s, 1 TB/s, prefill and decode efficiency 0.5 (so
5e14 FLOP/s and 5e11 B/s), activation peak 4*T*h*p, runtime overhead 1 GiB, no
fragmentation, NIC efficiency 0.5, inter-node alpha 50 us; no serving section, so the
engine overheads are 0 and max_num_seqs is vLLM's 256.

TOY: 2 layers, h 1024, 8 heads = 8 KV heads of d 128, gated FFN 4096, vocab 64. Per layer
q,o 2*1024*1024 + k,v 2*1024*1024 + MLP 3*1024*4096 + norms 2*1024 = 16,779,264 params =
33,558,528 B in fp16. LM head 64 x 1024 x 2 B = 131,072 B: 2.62144e-7 s to read.
"""

import pytest

from solver.cost.pipeline import estimate_pipeline
from solver.cost.serving import concurrency, kv_budget_bytes, serving_config
from solver.cost.stage import Stage
from solver.inputs.model import load_model, parse_hf_config
from solver.inputs.workload import Workload

TOY = parse_hf_config({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 1024,
                       "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 4096,
                       "vocab_size": 64}, "toy")
L8 = load_model("llama3-8b")


def test_kv_budget_llama3_8b(synthetic_profile):
    """llama3-8b whole model on one GPU, fp16, gpu_memory_utilization 0.5 -> 40 GiB =
    42,949,672,960 B. Weights 32 x 436,224,000 + 2 x 128,256*4096*2 (embedding, LM head)
    + 8,192 (final norm) = 16,060,522,496 B. The dummy forward takes max(2000, 2048) = 2048
    tokens: 4 x 2048 x 4096 x 2 = 67,108,864 B, plus fp32 logits of one row 513,024 B.
    Overhead 1 GiB. KV budget = 42,949,672,960 - 16,060,522,496 - 67,621,888 -
    1,073,741,824 = 25,747,786,752 B."""
    w = Workload(batch=200, prompt_len=1000, output_len=1000, dtype="fp16")
    cfg = serving_config(synthetic_profile, gpu_memory_utilization=0.5)
    assert kv_budget_bytes(synthetic_profile, L8, 1, 32, True, True, w, cfg) == 25_747_786_752


def test_kv_capacity_bounds_concurrency_and_makes_waves(synthetic_profile):
    """KV per token: 2 x 128 x 8 KV heads x 2 B x 32 layers = 131,072 B; a 16-token block is
    2,097,152 B, so 25,747,786,752 B hold 12,277 blocks = 196,432 tokens. A sequence needs
    prompt + output = 2000 tokens (125 whole blocks): 196,432 // 2000 = 98 at once, below
    the batch (200) and max_num_seqs (256). The batch runs in waves of 98, 98 and 4."""
    w = Workload(batch=200, prompt_len=1000, output_len=1000, dtype="fp16")
    cfg = serving_config(synthetic_profile, gpu_memory_utilization=0.5)
    c = concurrency([Stage(synthetic_profile, 1, 32, True, True)], L8, w, cfg)
    assert (c.seqs, c.limited_by, c.kv_capacity_tokens, c.waves) == (98, "kv_cache", 196_432, (98, 98, 4))


def test_waves_add_up(synthetic_profile):
    """Elapsed of a batch of 200 = 2 x elapsed of a batch of 98 + elapsed of a batch of 4,
    each of which fits at once (waves run one after another: all sequences of a wave end
    together)."""
    cfg = serving_config(synthetic_profile, gpu_memory_utilization=0.5)
    stages = [Stage(synthetic_profile, 1, 32, True, True)]

    def elapsed(batch):
        w = Workload(batch=batch, prompt_len=1000, output_len=1000, dtype="fp16")
        return estimate_pipeline(L8, w, stages, [], serving=cfg).elapsed_s

    assert elapsed(200) == pytest.approx(2 * elapsed(98) + elapsed(4))


def test_max_num_seqs_caps_concurrency(synthetic_profile):
    w = Workload(batch=200, prompt_len=100, output_len=100, dtype="fp16")
    cfg = serving_config(synthetic_profile, max_num_seqs=64)
    c = concurrency([Stage(synthetic_profile, 1, 32, True, True)], L8, w, cfg)
    assert (c.seqs, c.limited_by, c.waves) == (64, "max_num_seqs", (64, 64, 64, 8))


def test_sequence_that_does_not_fit_gives_zero_throughput(synthetic_profile):
    """At utilization 0.2 (16 GiB) the 15 GiB of weights and 1 GiB overhead leave nothing."""
    w = Workload(batch=1, prompt_len=1000, output_len=1000, dtype="fp16")
    cfg = serving_config(synthetic_profile, gpu_memory_utilization=0.2)
    est = estimate_pipeline(L8, w, [Stage(synthetic_profile, 1, 32, True, True)], [], serving=cfg)
    assert (est.throughput_tok_s, est.bottleneck, est.feasible) == (0.0, "kv_cache", False)


def test_compute_bound_prefill_memory_bound_decode(synthetic_profile):
    """TOY, TP1, PP1, batch 2, prompt 1000, output 11. Both prompts go in one prefill step
    (budget max(1011, 2048) tokens).
    Prefill, per layer: 2 x 2000 x 16,777,216 (matmul params: norms excluded) + causal attention
    2 x 2 x 1000^2 x 128 x 8 = 71,204,864,000 FLOP -> 1.42409728e-4 s at 5e14 (reading 33.6 MB
    takes 6.7e-5 s: compute bound); 2 layers + LM head (2.62144e-7 s, memory) = 2.850816e-4 s.
    Decode, per layer: weights 33,558,528 B + KV 2 seqs x 1005.5 (mean context) x 2 x 1024
    x 2 B = 8,237,056 B -> 41,795,584 B / 5e11 = 8.3591168e-5 s (FLOPs ~7.5e7: memory
    bound); 2 layers + LM head = 1.6744448e-4 s per step. The prefill samples the first
    token: 10 decode steps = 1.6744448e-3 s. Elapsed 1.9595264e-3 s for 2 x 1011 tokens
    -> 1,031,881.99 tokens/s."""
    w = Workload(batch=2, prompt_len=1000, output_len=11, dtype="fp16")
    est = estimate_pipeline(TOY, w, [Stage(synthetic_profile, 1, 2, True, True)], [])
    assert est.prefill_s == pytest.approx(2.850816e-4)
    assert est.decode_round_s == pytest.approx(1.6744448e-4)
    assert est.decode_s == pytest.approx(1.6744448e-3)
    assert est.throughput_tok_s == pytest.approx(1_031_881.99, rel=1e-8)
    assert est.concurrency.limited_by == "batch"


def test_pipeline_with_slow_link(synthetic_profile):
    """TOY in two 1-layer stages on two nodes joined by a 0.01 GB/s NIC (efficiency 0.5 ->
    5e6 B/s, alpha 50 us); batch 2 -> 2 micro-batches of 1 in flight.
    Decode: one micro-batch sends hidden + residual 2 x 1 x 1024 x 2 = 4,096 B: 50 us +
    819.2 us = 8.692e-4 s. Stage 0: (33,558,528 + 1 x 1005.5 x 4096) B / 5e11 = 7.5354112e-5 s;
    stage 1 adds the LM head: 7.5616256e-5 s. Busiest server: the link; round =
    max(2 x 8.692e-4, chain 1.020170368e-3) = 1.7384e-3 s: the link bottlenecks.
    Prefill, one step of both prompts: stage 0 1.42426112e-4 + link (50 us + 8,192,000 B /
    5e6 = 1.63845 s) + stage 1 1.42688256e-4 = 1.638735114368 s."""
    w = Workload(batch=2, prompt_len=1000, output_len=11, dtype="fp16")
    stages = [Stage(synthetic_profile, 1, 1, True, False), Stage(synthetic_profile, 1, 1, False, True)]
    est = estimate_pipeline(TOY, w, stages, [0.01])
    assert (est.num_micro_batches, est.micro_batch) == (2, 1)
    assert est.link_decode_s[0] == pytest.approx(8.692e-4)
    assert est.decode_round_s == pytest.approx(1.7384e-3)
    assert est.bottleneck == "link 0"
    assert est.prefill_s == pytest.approx(1.638735114368)


def test_engine_overhead_is_a_server(synthetic_profile, tmp_path):
    """With decode_step_overhead_ms = 1 in the profile, the engine (1e-3 s per micro-batch
    step) is busier than the stage (1.6744448e-4 s): TOY PP1 round = max(1 x 1e-3, chain
    1.6744448e-4 + 1e-3) = 1.16744448e-3 s."""
    import json
    from solver.inputs.profile import load_profile
    raw = json.loads(open(synthetic_profile.path).read())
    raw["serving"] = {"decode_step_overhead_ms": {"value": 1.0, "source": "synthetic"}}
    (tmp_path / "p.json").write_text(json.dumps(raw))
    prof = load_profile(tmp_path / "p.json")
    w = Workload(batch=2, prompt_len=1000, output_len=11, dtype="fp16")
    est = estimate_pipeline(TOY, w, [Stage(prof, 1, 2, True, True)], [])
    assert est.decode_round_s == pytest.approx(1.16744448e-3)
    assert serving_config(prof).assumed == ("gpu_memory_utilization", "max_num_seqs", "prefill_overhead_ms")
