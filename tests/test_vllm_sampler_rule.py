"""V1's profile-run sampler peak from vLLM's code path, and CUDA-graph memory as a default
(solver/cost/engine_settings.py sampler_bytes_per_logit, engine_memory.sampler_phases,
calibrate/memory/vllm_fit.py), by hand."""

import pytest

from calibrate.memory import vllm_fit, vllm_points
from solver.cost import engine_settings as es
from solver.cost.activation import phase_terms, phases_peak
from solver.cost.engine_memory import sampler_phases
from solver.inputs.model import load_model

L8 = load_model("llama3-8b")  # vocab 128,256 (a multiple of 64: no padding)
MLP = {"c_h": 3.0, "c_f_t": 3.0}


@pytest.mark.parametrize("version, rows, flashinfer, per_logit", [
    ((0, 10), 256, None, 38),   # 0.8-0.11: FlashInfer only where installed; pip's default lacks it: sort
    ((0, 10), 256, True, 14),   # the dennislee22 0.10.1.1 logs: 'Using FlashInfer for top-p & top-k sampling'
    ((0, 14), 256, True, 38),   # 0.12-0.16: FlashInfer opt-in only, sort
    ((0, 19), 256, None, 14),   # 0.17+: Triton's in-place top-k/top-p for >= 8 rows
    ((0, 19), 4, None, 38),     # fewer than 8 rows: sort
    ((0, 27), 4, None, 14),     # 0.21+: FlashInfer by default
])
def test_sampler_bytes_per_logit(version, rows, flashinfer, per_logit):
    """38 = bf16 2 + fp32 4 + sorted values 4 + int64 indices 8 + torch's sort scratch 8 + 4 + 8;
    14 = bf16 2 + fp32 4 + two more fp32 arrays 4 + 4."""
    assert es.sampler_bytes_per_logit(version, rows, flashinfer)[0] == per_logit


def test_h100_sort_path_peak_by_hand():
    """llm-d's H100 Llama-3.1-8B run (~0.11, 8,192 tokens, 1,024 rows): sampler 1,024 x 128,256 x
    38 B = 4,990,697,472 B = 4.648 GiB (the log transcribes 4.76) > MLP (3 x 4,096 + 3 x 14,336)
    x 8,192 x 2 = 905,969,664 B."""
    phases = sampler_phases({"mlp": MLP, "sampler": {"c_v": 0.0}}, (0, 11), 1024)
    assert phases["sampler"] == {"c_v": 9.5}
    terms = phase_terms(L8, 1, 1, 8192, 2, sampler_rows=1024)
    assert phases_peak(phases, terms) == (4_990_697_472, "sampler")


def test_v0_keeps_the_fitted_sampler():
    fitted = {"mlp": MLP, "sampler": {"c_v": 10.3}}
    assert sampler_phases(fitted, (0, 6), 256) is fitted and sampler_phases(fitted, None, 256) is fitted


def _row(url, version, cudagraph=None, eager=""):
    return {"source_url": url, "vllm_version": version, "gpu": "A100 80GB", "gpu_total_gib": None,
            "model": "Qwen/Qwen2-7B-Instruct", "quantization": "", "kv_cache_dtype": "auto", "tp": 1.0, "pp": 1.0,
            "gpu_memory_utilization": 0.25, "max_model_len": 16384.0, "max_num_batched_tokens": 2048.0,
            "max_num_seqs": None, "enforce_eager": eager, "kv_cache_gib": 5.01, "kv_tokens": None,
            "gpu_blocks": None, "activation_peak_gib": None, "non_torch_gib": None, "weights_gib": 14.25,
            "cudagraph_gib": cudagraph, "line": 2}


def test_case_sampler_from_the_log_line():
    """Qwen2-7B (vocab 152,064), 256 rows on an A100 (not a 'large' GPU: max_num_seqs 256): the
    FlashInfer log gives c_v = 14 / 4 = 3.5, i.e. 3.5 x 256 x 152,064 x 4 B = 544,997,376 B; a
    row from elsewhere on 0.10 takes the sort path, 9.5."""
    fi, _ = vllm_fit.resolve(_row(next(u for u, on in vllm_points.FLASHINFER_FROM_LOG.items() if on), "0.10.1.1"))
    other, _ = vllm_fit.resolve(_row("https://example.org/log", "0.10.1.1"))
    assert fi.sampler_rows == 256
    assert fi.phases({"mlp": MLP})["sampler"] == {"c_v": 3.5}
    assert other.phases({"mlp": MLP})["sampler"] == {"c_v": 9.5}
    assert phases_peak(fi.phases({"mlp": MLP}), fi.terms())[0] == 544_997_376


def test_graphs_in_budget_take_the_profile_value_unless_logged():
    """0.27: graphs come off the budget; a row without a logged figure takes the fit's value,
    a logged one its own; 0.10 (captured after the KV cache) and --enforce-eager subtract none."""
    assert vllm_fit.resolve(_row("u", "0.27.1"))[0].graphs_gib(0.575) == 0.575
    assert vllm_fit.resolve(_row("u", "0.27.1", cudagraph=1.2))[0].graphs_gib(0.575) == 1.2
    assert vllm_fit.resolve(_row("u", "0.10.1.1", cudagraph=0.5))[0].graphs_gib(0.575) == 0.0
    assert vllm_fit.resolve(_row("u", "0.27.1", eager="true"))[0].graphs_gib(0.575) == 0.0


def test_interval_corners_carry_the_graph_default():
    """profiles/a10g.json: cudagraph_gib 0.575 (median of the 0.10.1.1 captures 0.50, 0.50, 0.65,
    0.65) is a default; the pessimistic corner takes the top of its plausible range (2.46 GiB,
    vllm#7553), the optimistic one the bottom (0.17, club-3090#127)."""
    from pathlib import Path

    from solver.cost import intervals
    from solver.inputs.profile import load_profile
    p = load_profile(Path(__file__).resolve().parents[1] / "profiles/a10g.json")
    g = p.engine_memory["vllm"].cudagraph_gib
    assert (g.value, g.source, g.plausible) == (0.575, "default", (0.17, 2.46))
    assert intervals.corner(p, "low").engine_memory["vllm"].cudagraph_gib.value == 2.46
    assert intervals.corner(p, "high").engine_memory["vllm"].cudagraph_gib.value == 0.17
    assert any(d.startswith("memory.vllm.cudagraph_gib") for d in intervals.defaults_used(p))


def test_optimistic_corner_samples_on_flashinfer_before_0_12():
    """vLLM 0.10, llama3-8b, 2,048 tokens, 256 rows on the L40S profile: expected and low take
    PyTorch's sort, 256 x 128,256 x 38 B = 1,247,674,368 B; the high corner FlashInfer,
    256 x 128,256 x 14 B = 459,669,504 B (still above the MLP phase, 226,492,416 B). From
    0.17 (in place either way) both are 459,669,504 B."""
    from pathlib import Path

    from solver.cost import intervals
    from solver.cost.engine_memory import profile_run_peak
    from solver.inputs.profile import load_profile
    p = load_profile(Path(__file__).resolve().parents[1] / "profiles/l40s.json")

    def peak(prof, version):
        return profile_run_peak(prof, L8, 1, True, 2048, 256, 2, version=version)[0]
    assert peak(p, (0, 10)) == peak(intervals.corner(p, "low"), (0, 10)) == 1_247_674_368
    assert peak(intervals.corner(p, "high"), (0, 10)) == 459_669_504
    assert peak(p, (0, 19)) == peak(intervals.corner(p, "high"), (0, 19)) == 459_669_504
