"""vLLM rules read from the 0.11-0.29 wheels (issue #13): which model runner sizes the CUDA-graph
estimate, and whether the communicators count as non-torch memory (engine_settings RULES
"v2_runner_no_graph_estimate" and "comm_before_snapshot")."""

from pathlib import Path

import pytest

from calibrate.memory import vllm_fit
from solver.cost import engine_settings as es
from solver.cost.engine_memory import non_torch_bytes
from solver.inputs.profile import load_profile
from solver.units import GIB

ROOT = Path(__file__).resolve().parents[1]
MLP = {"c_h": 3.0, "c_f_t": 3.0}


@pytest.mark.parametrize("version,model_type,quantized,graphs", [
    ((0, 21), "qwen3", False, True),      # V1 unless VLLM_USE_V2_MODEL_RUNNER=1
    ((0, 22), "qwen3", False, False),     # V2 default for Qwen3ForCausalLM, estimate 0
    ((0, 22), "qwen3", True, True),       # 0.22 keeps quantized checkpoints on V1
    ((0, 23), "qwen3", False, False),     # not read: 0.22's rule
    ((0, 24), "qwen3", False, False), ((0, 24), "llama", False, False), ((0, 24), "mistral", False, False),
    ((0, 24), "qwen2", False, True),      # Qwen2ForCausalLM is not in 0.24's list
    ((0, 25), "llama", False, True),      # 0.25 keeps only MoE architectures on V2
    ((0, 27), "qwen2", False, True), ((0, 27), "qwen2_moe", False, False),
    ((0, 29), "qwen3", False, True),      # V2 for every model, with a real estimate
])
def test_graph_estimate_follows_the_model_runner(version, model_type, quantized, graphs):
    assert es.cudagraphs_in_budget(version, False, model_type, quantized)[0] is graphs
    assert es.cudagraphs_in_budget(version, True, model_type, quantized)[0] is False


def test_communicators_count_only_before_0_11():
    """profiles/a100.json: base 0.0486 GiB, tp_extra 0.1171 (the 0.10.1.1 TP2 rows minus base).
    0.10 counts it at TP2 (0.0486 + 0.1171 = 0.1657 GiB); from 0.11 the snapshot follows NCCL
    init, so TP2 is the base alone. No version: the profile's own figure, counted."""
    p = load_profile(ROOT / "profiles/a100.json")
    nt = p.engine_memory["vllm"].non_torch_gib
    base, extra = nt["base"].value, nt["tp_extra"].value
    assert extra == 0.1171
    assert non_torch_bytes(p, 2, 1, version=(0, 10)) == pytest.approx((base + extra) * GIB)
    assert non_torch_bytes(p, 2, 1) == pytest.approx((base + extra) * GIB)
    assert non_torch_bytes(p, 2, 1, version=(0, 11)) == pytest.approx(base * GIB)
    assert non_torch_bytes(p, 2, 1, version=(0, 27)) == non_torch_bytes(p, 1, 1, version=(0, 27))
    assert es.comm_in_non_torch((0, 10))[0] and not es.comm_in_non_torch((0, 11))[0]


@pytest.mark.parametrize("version, overhead_gib", [("0.10", 0.1657), ("0.24", 0.0486)])
def test_estimate_memory_breakdown_follows_the_version_too(version, overhead_gib, capsys):
    """`solver estimate`'s per-GPU memory (runtime_overhead) and its KV budget (non_torch) take
    the same non-torch figure: A100 TP2 base 0.0486 + tp_extra 0.1171 = 0.1657 GiB at 0.10, the
    base alone from 0.11 (the communicators predate vLLM's snapshot)."""
    import json

    from solver.cli import main
    assert main(["estimate", "--profile", str(ROOT / "profiles/a100.json"), "--model", "llama3-8b", "--tp", "2",
                 "--vllm-version", version, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["memory_gib"]["runtime_overhead"] == pytest.approx(overhead_gib)
    assert d["serving"]["memory_gib"]["non_torch"] == pytest.approx(overhead_gib)


def _row(model, version, gpu="RTX 4090", tp=1.0, tokens=43888.0, cudagraph=None):
    return {"source_url": "u", "vllm_version": version, "gpu": gpu, "gpu_total_gib": None, "model": model,
            "quantization": "", "kv_cache_dtype": "", "tp": tp, "pp": 1.0, "gpu_memory_utilization": 0.92,
            "max_model_len": 32768.0, "max_num_batched_tokens": None, "max_num_seqs": None, "enforce_eager": "",
            "kv_cache_gib": None, "kv_tokens": tokens, "gpu_blocks": None, "activation_peak_gib": None,
            "non_torch_gib": None, "weights_gib": None, "cudagraph_gib": cudagraph, "line": 29}


def test_rtx_4090_qwen3_row_takes_no_graph_memory():
    """extra set line 29 (0.24.0, Qwen3-8B TP1, gmu 0.92, RTX 4090 torch total 23.65 GiB, serve:
    2,048 tokens, 256 rows). Qwen3 runs on Model Runner V2 in 0.24, whose estimate is 0, so
    no graph GiB comes off -- also not a logged capture. With base 0.05 GiB:
      weights 8,190,735,360 params x 2 B = 16,381,470,720 B
      peak    max(MLP 2048 x (3 x 4096 + 3 x 12288) x 2 = 201,326,592, V2's dummy sampler 256 x 151,936 x
              6 (bf16 + fp32 copy, no top-k/top-p) = 233,373,696) -- V1's in-place rule gave 14 B, 544,538,624
      kv      0.92 x 23.65 GiB = 23,362,474,606.6 B - 16,381,470,720 - 0.05 GiB (53,687,091.2) - 233,373,696
              = 6,693,943,099.4 B (6.2342 GiB); 0.24 does not count V2's per-request tables (before 0.27)."""
    case, why = vllm_fit.resolve(_row("Qwen/Qwen3-8B", "0.24.0"))
    assert why == "" and case.model.model_type == "qwen3"
    assert case.graphs_gib(0.575) == 0.0
    assert vllm_fit.resolve(_row("Qwen/Qwen3-8B", "0.24.0", cudagraph=0.81))[0].graphs_gib(0.575) == 0.0
    assert vllm_fit.resolve(_row("Qwen/Qwen3-8B", "0.27.1"))[0].graphs_gib(0.575) == 0.575
    assert vllm_fit.resolve(_row("Qwen/Qwen2.5-7B-Instruct", "0.24.0"))[0].graphs_gib(0.575) == 0.575
    ff = vllm_fit.FamilyFit("since_init", {"mlp": MLP, "sampler": {"c_v": 0.0}},
                            {"*": {"base": 0.05, "tp_extra": 0.12}}, [], [], graphs_gib=0.575)
    out = vllm_fit.predict_case(case, ff)
    assert out["weights_gib"] * GIB == pytest.approx(16_381_470_720)
    assert (out["activation_peak_gib"] * GIB, out["phase"]) == (pytest.approx(233_373_696), "sampler")
    assert case.runner_buffers_bytes() == 0.0
    assert out["kv_cache_gib"] * GIB == pytest.approx(0.92 * 23.65 * GIB - 16_381_470_720 - 0.05 * GIB
                                                      - 233_373_696)
    assert out["kv_cache_gib"] == pytest.approx(6.2342, abs=1e-4)


def test_fit_tp_extra_only_from_rows_that_count_it():
    """nt_gib at TP2 on an NVLink GPU with base 0.05 and tp_extra 0.12: 0.17 GiB for 0.10,
    0.05 from 0.11 (the communicators predate vLLM's snapshot)."""
    ff = vllm_fit.FamilyFit("since_init", {"mlp": MLP}, {"A100 80GB": {"base": 0.05, "tp_extra": 0.12},
                                                         "*": {"base": 0.05, "tp_extra": 0.12}}, [], [])
    assert ff.nt_gib("A100 80GB", 2, version=(0, 10)) == pytest.approx(0.17)
    assert ff.nt_gib("A100 80GB", 2, version=(0, 24)) == pytest.approx(0.05)
    assert ff.nt_gib("A100 80GB", 1, version=(0, 10)) == pytest.approx(0.05)


def test_new_gpu_totals_resolve_their_rows():
    """RTX 5090 (31.36 GiB, PyTorch OOM) and RTX PRO 6000 96GB (94.97 GiB, cudaMemGetInfo):
    rows that named only the GPU now resolve, with the table's total."""
    c5090, why = vllm_fit.resolve(_row("Qwen/Qwen3-8B", "0.24.0", gpu="RTX 5090", tokens=89040.0))
    assert why == "" and c5090.total_gib == 31.36
    c6000, why = vllm_fit.resolve(_row("Qwen/Qwen3-32B", "0.24.0", gpu="RTX PRO 6000 96GB", tp=2.0,
                                       tokens=456944.0))
    assert why == "" and c6000.total_gib == 94.97
