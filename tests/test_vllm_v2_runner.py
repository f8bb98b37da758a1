"""Model Runner V2's profile-run memory (issue #13): its dummy sampler's peak per logit and the
persistent per-request sampler tables the budget counts from 0.27 (engine_settings RULES
"v2_sampler_bytes", "v2_logits_gather", "v2_sampler_buffers"; engine_memory.runner_buffer_bytes;
the fit's Case uses the same functions), by hand."""

from dataclasses import replace

import pytest

from calibrate.memory import vllm_fit
from solver.cost import engine_settings as es
from solver.cost.engine_memory import runner_buffer_bytes
from solver.inputs.model import load_model

L8 = load_model("llama3-8b")  # vocab 128,256 = 4,008 x 32
MLP = {"c_h": 3.0, "c_f_t": 3.0}


@pytest.mark.parametrize("version, model_type, quantized, v2", [
    ((0, 21), "qwen3", False, False),   # opt-in only before 0.22
    ((0, 22), "qwen3", False, True), ((0, 22), "qwen3", True, False),
    ((0, 23), "qwen3", False, True),    # not read: 0.22's list
    ((0, 24), "llama", True, True),     # quantized checkpoints too from 0.24
    ((0, 25), "llama", False, False), ((0, 27), "qwen2_moe", False, True), ((0, 28), "qwen3", False, False),
    ((0, 29), "qwen2", False, True), ((0, 34), "gemma3_text", True, True),  # every model from 0.29
    (None, "qwen3", False, False),
])
def test_which_models_run_on_v2(version, model_type, quantized, v2):
    assert es.v2_runner(version, model_type, quantized) is v2


@pytest.mark.parametrize("version, tp, per_logit", [
    ((0, 22), 1, 6), ((0, 24), 1, 6),   # bf16 logits 2 + fp32 copy 4
    ((0, 24), 2, 6),                    # the all-gather, 4 + 2/2 = 5, stays below
    ((0, 26), 1, 2), ((0, 29), 1, 2),   # no copy for the dummy's greedy, unfiltered requests
    ((0, 29), 2, 5.0), ((0, 32), 4, 4.5),  # 4 + 2/2; 4 + 2/4: the gather sets the phase
    ((0, 33), 1, 14), ((0, 34), 8, 14),    # the warm-up pass: V1's in-place 14 B
])
def test_v2_sampler_bytes_per_logit(version, tp, per_logit):
    assert es.sampler_bytes_per_logit(version, 256, None, v2=True, tp=tp)[0] == per_logit
    # FlashInfer does not move it: the dummy pass filters nothing, the warm-up pass is taken as FlashInfer's
    assert es.sampler_bytes_per_logit(version, 256, True, v2=True, tp=tp)[0] == per_logit


def test_v2_sampler_tables_counted_from_0_27():
    """Qwen3 vocab 151,936: 4 x 151,936 = 607,744 B (output_bin_counts) + 2 x 4 x ceil(151,936 / 32
    = 4,748) = 37,984 B (prompt_bin_mask, grammar_bitmask) = 645,728 B a request; 256 requests
    165,306,368 B, 1,024 requests 661,225,472 B (0.616 GiB). 0.24: not seen by the worker."""
    assert es.v2_sampler_buffer_bytes((0, 24), 256, 151_936)[0] == 0
    assert es.v2_sampler_buffer_bytes((0, 27), 256, 151_936)[0] == 165_306_368
    assert es.v2_sampler_buffer_bytes((0, 34), 1024, 151_936)[0] == 661_225_472


def test_runner_buffers_only_on_v2_last_stage():
    """llama3-8b (vocab 128,256): 256 x (4 x 128,256 + 8 x 4,008) = 256 x 545,088 = 139,542,528 B
    at 0.29 on the last stage; none on another stage, none for a V1 model at 0.27 (llama),
    none before 0.27 (0.24, where llama runs on V2)."""
    assert runner_buffer_bytes((0, 29), L8, True, 256) == 139_542_528
    assert runner_buffer_bytes((0, 29), L8, False, 256) == 0.0
    assert runner_buffer_bytes((0, 27), L8, True, 256) == 0.0
    assert runner_buffer_bytes((0, 27), replace(L8, model_type="qwen2_moe"), True, 256) == 139_542_528
    assert runner_buffer_bytes((0, 24), L8, True, 256) == 0.0


def _row(version):
    return {"source_url": "u", "vllm_version": version, "gpu": "RTX PRO 6000 96GB", "gpu_total_gib": None,
            "model": "Qwen/Qwen3-32B", "quantization": "", "kv_cache_dtype": "", "tp": 2.0, "pp": 1.0,
            "gpu_memory_utilization": 0.92, "max_model_len": 32768.0, "max_num_batched_tokens": None,
            "max_num_seqs": None, "enforce_eager": "", "kv_cache_gib": None, "kv_tokens": 456944.0,
            "gpu_blocks": None, "activation_peak_gib": None, "non_torch_gib": None, "weights_gib": None,
            "cudagraph_gib": None, "line": 31}


def test_judge_row_31_phase_by_hand():
    """Extra set line 31 (0.24, Qwen3-32B TP2 on a 96 GB card, serve: 8,192 tokens, 1,024 rows):
    MLP 8,192 x (3 x 5,120 + 3 x 25,600 / 2) x 2 = 880,803,840 B; V2's sampler 1,024 x 151,936 x 6
    = 933,494,784 B sets the peak (V1's 14 B was 2,178,154,496). The same engine at 0.29: the
    gather's 5 B, 777,912,320 B, falls below the MLP phase; its tables 661,225,472 B are counted."""
    ff = vllm_fit.FamilyFit("since_init", {"mlp": MLP, "sampler": {"c_v": 0.0}},
                            {"*": {"base": 0.05, "tp_extra": 0.12}}, [], [], graphs_gib=0.575)
    c24, why = vllm_fit.resolve(_row("0.24.0"))
    assert why == "" and (c24.tokens, c24.sampler_rows, c24.max_num_seqs, c24.v2) == (8192, 1024, 1024, True)
    out = vllm_fit.predict_case(c24, ff)
    assert (out["activation_peak_gib"] * 2**30, out["phase"]) == (pytest.approx(933_494_784), "sampler")
    assert c24.runner_buffers_bytes() == 0.0
    c29 = vllm_fit.resolve(_row("0.29.0"))[0]
    out = vllm_fit.predict_case(c29, ff)
    assert (out["activation_peak_gib"] * 2**30, out["phase"]) == (pytest.approx(880_803_840), "mlp")
    assert c29.runner_buffers_bytes() == 661_225_472


@pytest.mark.parametrize("version, buffers_bytes", [("0.24", 0), ("0.29", 139_542_528)])
def test_estimate_reports_the_tables(version, buffers_bytes, capsys):
    """`solver estimate` on profiles/a100.json, llama3-8b (an A100 is not a 'large' GPU:
    max_num_seqs 256): 0.29 counts 256 x 545,088 = 139,542,528 B (0.130 GiB); 0.24 none."""
    import json
    from pathlib import Path

    from solver.cli import main
    prof = Path(__file__).resolve().parents[1] / "profiles/a100.json"
    assert main(["estimate", "--profile", str(prof), "--model", "llama3-8b", "--vllm-version", version,
                 "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["serving"]["memory_gib"]
    assert m["runner_buffers"] * 2**30 == pytest.approx(buffers_bytes)
