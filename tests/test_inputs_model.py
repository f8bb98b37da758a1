"""Model presets and HF configs: parameter counts worked out by hand."""

import json

import pytest

from solver.errors import InputError
from solver.inputs.model import load_model, preset_names


def test_presets_shipped():
    assert {"llama3-8b", "llama3-70b", "llama3.1-405b", "qwen2.5-72b", "mixtral-8x7b"} <= set(preset_names())


def test_llama3_70b_parameter_count():
    """layer: q,o 2*8192*8192 = 134,217,728; k,v 2*8192*(8*128) = 16,777,216;
    gated MLP 3*8192*28672 = 704,643,072; norms 2*8192 = 16,384 -> 855,654,400.
    total = 80 layers + 2 untied 128256x8192 matrices + final norm
          = 68,452,352,000 + 2,101,346,304 + 8,192 = 70,553,706,496."""
    m = load_model("llama3-70b")
    assert m.layer_params() == 855_654_400
    assert m.total_params() == 70_553_706_496
    assert (m.num_kv_heads, m.head_dim) == (8, 128)


def test_llama31_405b_is_756_gib_in_bf16():
    """126 x 3,187,703,808 + 2 x 128256 x 16384 + 16384 = 405,853,388,800 params;
    x 2 B / 2^30 = 755.96 GiB."""
    m = load_model("llama3.1-405b")
    assert m.total_params() == 405_853_388_800
    assert m.total_params() * 2 / 2**30 == pytest.approx(755.96, abs=0.01)


def test_mixtral_moe_all_experts_resident_top2_active():
    """layer: attn 41,943,040 + 8 experts x 3*4096*14336 (1,409,286,144) + router 32,768
    + norms 8,192 = 1,451,270,144; x32 + 2 x 32000 x 4096 + 4096 = 46,702,792,704 (46.7B).
    Active per layer: attn + 2 experts (352,321,536) + router + norms = 394,305,536."""
    m = load_model("mixtral-8x7b")
    assert m.is_moe and m.num_experts == 8 and m.experts_per_token == 2
    assert m.total_params() == 46_702_792_704
    assert m.active_layer_params() == 394_305_536


def test_qwen_has_qkv_bias():
    m = load_model("qwen2.5-72b")
    assert m.qkv_bias and m.vocab_size == 152064


def test_hf_config_path(write):
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000,
           "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
    p = write("config.json", json.dumps(cfg))
    m = load_model(str(p))
    assert (m.num_layers, m.head_dim, m.tied_embeddings, m.gated_mlp) == (2, 16, True, True)
    # tied: one 1000x64 matrix counted once
    assert m.total_params() == 2 * m.layer_params() + 64_000 + 64


def test_unknown_preset_suggests():
    with pytest.raises(InputError, match="did you mean 'llama3-70b'"):
        load_model("llama3-70")


@pytest.mark.parametrize("cfg, field", [
    ({"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}, "hidden_size"),
    ({"num_hidden_layers": 0, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10}, "num_hidden_layers"),
    ({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 3,
      "vocab_size": 10}, "num_key_value_heads"),
])
def test_bad_hf_config(write, cfg, field):
    p = write("config.json", json.dumps(cfg))
    with pytest.raises(InputError) as e:
        load_model(str(p))
    assert e.value.field == field and str(p) in str(e.value)


def test_bad_json(write):
    p = write("config.json", "{not json")
    with pytest.raises(InputError, match="invalid JSON"):
        load_model(str(p))
