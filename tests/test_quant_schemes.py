"""Weight schemes (--dtype): bytes per weight with scales, unquantized groups, GPU capability."""

import pytest

from solver.cli import main
from solver.cost.memory import embedding_bytes, stage_weight_bytes
from solver.errors import InputError
from solver.inputs.capability import matmul_dtype, support
from solver.inputs.model import load_model
from solver.inputs.profile import load_profile
from solver.inputs.quant import SCHEMES, weight_format
from solver.inputs.workload import Workload


@pytest.mark.parametrize("name, bytes_per_weight", [
    ("bf16", 2.0), ("fp8", 1.0),
    ("awq", 0.5 + (2 + 0.5) / 128),     # 4 bit + fp16 scale and 4-bit zero per 128
    ("gptq", 0.5 + (2 + 0.5) / 128),
    ("w4a16", 0.5 + 2 / 128),           # symmetric: no zero point
    ("mxfp4", 0.5 + 1 / 32),            # e8m0 scale per 32
    ("nvfp4", 0.5 + 1 / 16),            # e4m3 scale per 16
    ("int8", 1.0),
])
def test_bytes_per_weight(name, bytes_per_weight):
    assert SCHEMES[name].bytes_per_weight == pytest.approx(bytes_per_weight)


def test_fp8_keeps_embedding_and_lm_head_in_bf16():
    """llama3-8b, vLLM --quantization fp8: linear layers 1 B, embedding 128256 x 4096 x 2 B =
    1,050,673,152 B (the old uniform 1 B under-counted it by half)."""
    m = load_model("llama3-8b")
    fmt = weight_format("fp8")
    assert embedding_bytes(m, 1, fmt) == 1_050_673_152
    assert fmt.act_dtype == "bf16"


def test_awq_quantizes_linear_layers_only():
    """AWQ llama3-8b TP1: 32 layers x (q,o 33,554,432 + k,v 8,388,608 + MLP 176,160,768 =
    218,103,808) linear params x 0.51953125 B + norms
    32 x 8192 x 2 B + embedding and head 2 x 1,050,673,152 + final norm 8192."""
    m = load_model("llama3-8b")
    w = stage_weight_bytes(m, 1, 32, True, True, weight_format("awq"))
    assert w == pytest.approx(32 * 218_103_808 * 0.51953125 + 32 * 16_384 + 2 * 1_050_673_152 + 8_192)


def test_capability_rules():
    v100, a100, h100 = (load_profile(f"profiles/{g}.json") for g in ("v100", "a100", "h100"))
    assert support(h100, "fp8") == "native" and support(a100, "fp8") == "weight_only"
    with pytest.raises(InputError, match="gpu.compute_capability: .*SM 7.0.* cannot run fp8"):
        support(v100, "fp8")
    assert support(a100, "mxfp4") == "weight_only"
    # the matmul rate: fp8 on H100, bf16 (weight-only Marlin) on A100
    assert matmul_dtype(h100, Workload(dtype="fp8")) == "fp8"
    assert matmul_dtype(a100, Workload(dtype="fp8")) == "bf16"


def test_fp8_on_v100_is_one_line_exit_2(capsys):
    rc = main(["estimate", "--profile", "profiles/v100.json", "--model", "llama3-8b", "--dtype", "fp8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot run fp8" in err[0]


def test_dtype_auto_takes_the_checkpoint_scheme():
    from argparse import Namespace
    from solver.cli_common import workload_from
    args = Namespace(batch=1, prompt_len=8, output_len=8, dtype="auto", kv_dtype="")
    w = workload_from(args, load_model("gpt-oss-20b"))
    assert w.dtype == "mxfp4" and w.weight_bytes.quantized == {"experts"}
    assert workload_from(args, load_model("llama3-8b")).dtype == "bf16"


def test_mxfp4_experts_padded_as_vllm_loads_them():
    """gpt-oss experts (h = f = 2880) are padded for vLLM's Marlin MoE kernel: h -> 3072
    (multiple of 256), f/t -> multiple of 128. gpt-oss-120b TP4: f/t = 720 -> 768;
    128 experts x 3 x 3072 x 768 = 905,969,664 params per rank per layer (x 0.53125 B).
    gpt-oss-20b TP1: 2880 -> 2944; 32 x 3 x 3072 x 2944 = 868,220,928."""
    from solver.cost.memory import expert_params_per_rank
    m120, m20 = load_model("gpt-oss-120b"), load_model("gpt-oss-20b")
    assert expert_params_per_rank(m120, 4, m120.weight_format) == 905_969_664
    assert expert_params_per_rank(m20, 1, m20.weight_format) == 868_220_928
    # bf16 experts are not padded: 128 x 3 x 2880 x 2880 / 4
    assert expert_params_per_rank(m120, 4, weight_format("bf16")) == 128 * 3 * 2880 * 2880 / 4


def test_exclusions_matched_against_module_names():
    """2-layer llama (h 64, 4 heads, f 128). Kimi-style compressed-tensors ignore:
    're:.*self_attn.*' keeps attention 16-bit; 're:.*mlp\\.(gate|up|down)_proj.*' the dense MLP
    -> nothing left to quantize in a dense model. ModelOpt per-layer exclusion of layer 0's
    attention: 1 of 2 layers -> attn excluded_frac 0.5, bytes 0.5 x 0.5625 + 0.5 x 2 = 1.28125."""
    from solver.inputs.quant_config import parse_quant
    from solver.inputs.model import parse_hf_config
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "vocab_size": 100, "intermediate_size": 128}
    spec = parse_hf_config(cfg, "c.json")
    kimi = {"quant_method": "compressed-tensors", "ignore": ["lm_head", "re:.*self_attn.*",
                                                             "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
            "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "group_size": 32}}}}
    fmt = parse_quant({"quantization_config": kimi}, {}, "c.json", spec, None)
    assert fmt.name == "w4a16" and not ({"attn", "mlp"} & fmt.quantized)
    assert fmt.bytes_for("experts") == pytest.approx(0.5 + 2 / 32)
    nv = ({"quantization": {"quant_algo": "NVFP4", "group_size": 16,
                            "exclude_modules": ["lm_head", "model.layers.0.self_attn*"]}}, "hf_quant_config.json")
    fmt = parse_quant({}, {}, "c.json", spec, nv)
    assert fmt.excluded_frac == (("attn", 0.5),)
    assert fmt.bytes_for("attn") == pytest.approx(1.28125)
    assert fmt.bytes_for("mlp") == 0.5625


def test_router_named_gate_is_not_gate_proj():
    """MiniMax's modules_to_not_convert ['gate'] names the router (mlp.gate), not gate_proj."""
    from solver.inputs.quant_config import _pattern_regex
    rx = _pattern_regex(["gate"])
    assert rx.match("model.layers.1.mlp.gate") and not rx.match("model.layers.1.mlp.gate_proj")


def test_dtype_other_than_a_quantized_checkpoint_is_refused():
    from argparse import Namespace
    from solver.cli_common import workload_from
    args = Namespace(batch=1, prompt_len=8, output_len=8, dtype="bf16", kv_dtype="")
    with pytest.raises(InputError, match="--dtype: bf16: deepseek-r1's checkpoint is fp8-block"):
        workload_from(args, load_model("deepseek-r1"))
    assert workload_from(Namespace(**dict(vars(args), dtype="fp8")), load_model("deepseek-r1")).dtype == "fp8"
