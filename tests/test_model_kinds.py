"""Per-layer kinds (MoE, MLA, windows), presets of current models: hand-worked numbers."""

import json

import pytest

from solver.cost.compute import decode_layer_flops, matmul_params_per_gpu, prefill_layer_flops
from solver.cost.memory import kv_bytes_per_token, layer_weight_bytes, stage_kv_bytes, stage_weight_bytes
from solver.errors import InputError
from solver.inputs.model import LayerKind, load_model, parse_hf_config

GIB = 2**30


def test_qwen3_30b_a3b_experts_are_moe_intermediate_size_wide():
    """Layer: q,o 2*2048*4096 = 16,777,216; k,v 2*2048*(4*128) = 2,097,152; q/k norms 2*128 = 256;
    128 experts x 3*2048*768 = 603,979,776; router 2048*128 = 262,144; norms 2*2048 = 4,096
    -> 623,120,640. x48 = 29,909,790,720 + 2 x 151936 x 2048 (622,329,856) + 2048
    = 30,532,122,624 params; bf16, TP1: x2 B = 56.87 GiB (vLLM logs 56.9 GiB, issue #14)."""
    m = load_model("qwen3-30b-a3b")
    assert (m.num_experts, m.experts_per_token, m.ffn_size) == (128, 8, 768)
    assert m.layer_params() == 623_120_640
    assert m.total_params() == 30_532_122_624
    w = stage_weight_bytes(m, 1, 48, True, True, 2)
    assert w == 61_064_245_248 and w / GIB == pytest.approx(56.87, abs=0.01)


def test_deepseek_v3_dense_first_layers_mla_and_shared_expert():
    """MLA attention: q_a 7168*1536 = 11,010,048 + norm 1,536 + q_b 1536*128*192 = 37,748,736
    + kv_a 7168*576 = 4,128,768 + norm 512 + kv_b 512*128*256 = 16,777,216 + o 128*128*7168
    = 117,440,512 -> 187,107,328. Dense layer (0-2): + 3*7168*18432 = 396,361,728 + norms
    14,336 = 583,483,392. MoE layer: + 256 x 3*7168*2048 = 11,274,289,152 + router 1,835,008
    + shared 44,040,192 + norms = 11,507,286,016. 3 x dense + 58 x MoE + 2 x 129280 x 7168
    + 7168 = 671,026,404,352 (DeepSeek's 671B)."""
    m = load_model("deepseek-v3")
    assert m.is_mla and [k.moe for k in m.layers[:4]] == [False, False, False, True]
    assert m.attn_params() == 187_107_328
    assert m.layer_params(LayerKind(moe=False)) == 583_483_392
    assert m.layer_params(LayerKind(moe=True)) == 11_507_286_016
    assert m.total_params() == 671_026_404_352


def test_mla_kv_is_compressed_and_replicated_on_every_tp_rank():
    """(kv_lora 512 + rope 64) x 2 B x 61 layers = 70,272 B per token, at TP1 and TP8 alike
    (GQA would split 128 heads x 2 x 192 over the ranks)."""
    m = load_model("deepseek-r1")
    assert kv_bytes_per_token(m, 1, 61, 2) == 70_272
    assert kv_bytes_per_token(m, 8, 61, 2) == 70_272


def test_mla_tp_sharding_of_attention():
    """TP8 attention per rank: replicated q_a 11,010,048 + 1,536 + kv_a 4,128,768 + 512
    = 15,140,864; split q_b + kv_b + o = 171,966,464 / 8 = 21,495,808 -> 36,636,672 params."""
    m = load_model("deepseek-v3")
    dense = LayerKind(moe=False)
    # bf16 attention + norms of a dense layer: (36,636,672 + 396,361,728/8 + 14,336) x 2 B
    assert layer_weight_bytes(m, 8, 2, dense) == (36_636_672 + 49_545_216 + 14_336) * 2


def test_deepseek_fp8_checkpoint_keeps_embeddings_and_head_16_bit():
    """fp8 block 128x128 with an fp32 scale per block: 1 + 4/16384 B per weight. Embedding and
    LM head stay bf16: 129280 x 7168 x 2 B = 1,853,358,080 B each, 3,706,716,160 B together."""
    m = load_model("deepseek-r1")
    fmt = m.weight_format
    assert fmt.name == "fp8-block"
    assert fmt.bytes_for("experts") == pytest.approx(1 + 4 / 16384)
    assert fmt.bytes_for("embedding") == fmt.bytes_for("lm_head") == 2
    head_and_emb = stage_weight_bytes(m, 1, 0, True, True, fmt) - 7168 * 2
    assert head_and_emb == 3_706_716_160


def test_sliding_window_kv_capped_at_the_window():
    """gpt-oss-20b: 24 layers alternating sliding (128) / full, 8 KV heads x 64: a full layer
    stores 2*8*64*2 = 2,048 B per token. At context 32768: 12 x 2048 + 12 x 2048 x 128/32768
    = 24,576 + 96 = 24,672 B per token; without a context every layer counts: 49,152."""
    m = load_model("gpt-oss-20b")
    assert [k.window for k in m.layers[:3]] == [128, 0, 128]
    assert kv_bytes_per_token(m, 1, 24, 2) == 49_152
    assert kv_bytes_per_token(m, 1, 24, 2, context=32768) == 24_672
    # batch 2 at context 100 (< window): every layer holds all 100 tokens: 2 x 100 x 49,152
    assert stage_kv_bytes(m, 1, 24, 2, 100, 2) == 9_830_400


def test_gemma3_every_sixth_layer_global():
    """62 layers, global at 5, 11, ..., 59 (10 layers), 52 sliding at 1024. A layer stores
    2*16*128*2 = 8,192 B per token; at context 32768: 10 x 8192 + 52 x 8192 x 1024/32768
    = 81,920 + 13,312 = 95,232 B."""
    m = load_model("gemma-3-27b")
    assert [i for i, k in enumerate(m.layers) if k.window == 0] == list(range(5, 62, 6))
    assert kv_bytes_per_token(m, 1, 62, 2, context=32768) == 95_232


def test_mid_stage_takes_the_heaviest_window():
    """gemma-3: a middle stage of 6 layers holds at most one global layer whatever its start;
    a first stage of 5 holds none (layers 0-4)."""
    m = load_model("gemma-3-27b")
    assert sum(k.window == 0 for k in m.stage_layers(6, False, False)) == 1
    assert sum(k.window == 0 for k in m.stage_layers(5, True, False)) == 0


def test_windowed_attention_flops():
    """gpt-oss sliding layer, prefill of 1 x 1024 tokens: pairs = 128*1024 - 128^2/2 = 122,880;
    attention 2 x 122,880 x (2*64) x 64 heads = 2,013,265,920 FLOPs. Decode at context 4096
    attends 128 keys: 2 x 128 x 128 x 64 = 2,097,152 + 2 x matmul params."""
    m = load_model("gpt-oss-20b")
    slide = LayerKind(moe=True, window=128)
    mm = matmul_params_per_gpu(m, 1, slide)
    assert prefill_layer_flops(m, 1, 1, 1024, slide) == pytest.approx(2 * 1024 * mm + 2_013_265_920)
    assert decode_layer_flops(m, 1, 1, 4096, slide) == pytest.approx(2 * mm + 2_097_152)


def test_llama4_scout_chunked_layers_and_shared_expert():
    """interleave_moe_layer_step 1: every layer MoE, 16 experts x 3*5120*8192 plus a shared
    expert of 3*5120*8192; chunked attention (8192) on 3 layers of 4."""
    m = load_model("llama4-scout")
    assert all(k.moe for k in m.layers) and m.shared_expert_ffn_size == 8192
    assert [k.window for k in m.layers[:4]] == [8192, 8192, 8192, 0]


@pytest.mark.parametrize("field, value", [
    ("hybrid_override_pattern", "M-M*"), ("index_topk", 2048), ("global_head_dim", 512),
    ("cross_attention_layers", [3, 8]),
])
def test_unmodelled_architecture_fields_are_refused(field, value):
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "vocab_size": 100, field: value}
    with pytest.raises(InputError) as e:
        parse_hf_config(cfg, "c.json")
    assert e.value.field == field and "not modelled" in str(e.value)


def test_unknown_layer_type_refused():
    cfg = {"model_type": "x", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "vocab_size": 100, "layer_types": ["full_attention", "linear_attention"]}
    with pytest.raises(InputError, match="layer_types: layer type 'linear_attention' is not modelled"):
        parse_hf_config(cfg, "c.json")


def test_moe_width_without_experts_refused():
    cfg = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 100,
           "moe_intermediate_size": 32}
    with pytest.raises(InputError, match="moe_intermediate_size"):
        parse_hf_config(cfg, "c.json")


def test_qwen_moe_dense_layers_and_shared_expert():
    """decoder_sparse_step 2, mlp_only_layers [3]: MoE at 1 only (3 is listed dense); Qwen2-MoE
    shared expert 3*64*96 = 18,432 + its gate 64."""
    cfg = {"model_type": "qwen2_moe", "num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
           "vocab_size": 100, "intermediate_size": 128, "moe_intermediate_size": 32, "num_experts": 4,
           "num_experts_per_tok": 2, "decoder_sparse_step": 2, "mlp_only_layers": [3],
           "shared_expert_intermediate_size": 96}
    m = parse_hf_config(cfg, "c.json")
    assert [k.moe for k in m.layers] == [False, True, False, False]
    # MoE MLP: 4 x 3*64*32 = 24,576 + router 256 + shared 18,432 + gate 64 = 43,328
    assert m.mlp_params(LayerKind(moe=True)) == 43_328
    assert m.mlp_params(LayerKind(moe=False)) == 3 * 64 * 128


def test_hf_quant_config_beside_config(write):
    """ModelOpt NVFP4: 0.5 + 1/16 B per weight; lm_head excluded (16-bit anyway)."""
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "vocab_size": 100, "intermediate_size": 128}
    p = write("config.json", json.dumps(cfg))
    write("hf_quant_config.json", json.dumps({"quantization": {"quant_algo": "NVFP4", "group_size": 16,
                                                                "exclude_modules": ["lm_head"]}}))
    m = load_model(str(p))
    assert m.weight_format.name == "nvfp4" and m.weight_format.bytes_for("mlp") == 0.5625
    assert m.weight_format.bytes_for("lm_head") == 2


def test_llama4_scout_parameter_count():
    """q,o 2*5120*5120 = 52,428,800 + k,v 2*5120*1024 = 10,485,760; 16 experts x 3*5120*8192
    = 2,013,265,920; router 5120*16 = 81,920; shared 3*5120*8192 = 125,829,120; norms 10,240
    -> 2,202,101,760 per layer. x48 + 2 x 202048 x 5120 + 5120 = 107,769,861,120."""
    m = load_model("llama4-scout")
    assert m.layer_params() == 2_202_101_760
    assert m.total_params() == 107_769_861_120


def test_moe_layer_freq_as_a_list():
    cfg = {"model_type": "x", "num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4,
           "vocab_size": 100, "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
           "moe_layer_freq": [0, 1, 1]}
    assert [k.moe for k in parse_hf_config(cfg, "c.json").layers] == [False, True, True]
    with pytest.raises(InputError, match="moe_layer_freq: as a list must hold one 0/1 per layer"):
        parse_hf_config(dict(cfg, moe_layer_freq=[0, 1]), "c.json")
