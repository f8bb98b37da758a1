"""The total vLLM sizes its budget by: CUDA's (gpu.memory_cuda_total_gib), not nvidia-smi's.

vLLM takes ``gpu_memory_utilization x`` the total ``torch.cuda.mem_get_info()`` reports
(printed as ``total_gpu_memory``); on an L40S that is 44.31 GiB (vllm#15196), not nvidia-smi's
46,068 MiB = 44.99 GiB. One budget formula (solver/cost/engine_memory.py kv_cache_bytes) serves
the solver and calibrate's vLLM fit.
"""

import json
from pathlib import Path

import pytest

from calibrate import published
from calibrate.memory import vllm_fit, vllm_points
from solver.cli import main
from solver.cost import engine_settings as es
from solver.cost import intervals
from solver.cost.engine_memory import kv_cache_bytes
from solver.cost.serving import serving_config, stage_budgets
from solver.cost.stage import Stage
from solver.errors import InputError
from solver.inputs.model import load_model
from solver.inputs.profile import load_profiles, parse_profile
from solver.inputs.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
L8 = load_model("llama3-8b")


def test_kv_cache_bytes_is_vllms_rule():
    """0.5 x 100 - 10 - 5 - 3 - 2 (graphs counted first) = 30; without graphs 32."""
    assert kv_cache_bytes(100.0, 0.5, 10.0, 5.0, 3.0, 2.0) == 30.0
    assert kv_cache_bytes(100.0, 0.5, 10.0, 5.0, 3.0) == 32.0


def test_l40s_estimate_sizes_kv_by_the_cuda_total(capsys):
    """Llama-3.1-8B shapes (llama3-8b), TP1, gmu 0.9, vLLM 0.10, 2,048 batched tokens on the
    L40S profile: budget 0.9 x 44.31 GiB = 39.879 GiB = 42,819,750,199.3 B; weights
    16,060,522,496; non-torch 0.0486 GiB = 52,184,113.6 (memory.vllm base, TP1); peak: the
    0.10 sampler on PyTorch's sort (engine_settings.sampler_bytes_per_logit) 256 x 128,256 x
    38 B = 1,247,674,368 > MLP (3 x 4,096 + 3 x 14,336) x 2,048 x 2 = 226,492,416. KV =
    25,459,369,221.7 B = 12,139 blocks of 2,097,152 = 194,224 tokens = 23.707 GiB. With
    nvidia-smi's 44.99 GiB it would be 0.9 x 0.68 = 0.61 GiB more: the error this field removes."""
    assert main(["estimate", "--profile", str(ROOT / "profiles/l40s.json"), "--model", "llama3-8b",
                 "--prompt-len", "1000", "--output-len", "1000", "--gpu-memory-utilization", "0.9",
                 "--max-num-batched-tokens", "2048", "--max-num-seqs", "256", "--vllm-version", "0.10",
                 "--json"]) == 0
    sv = json.loads(capsys.readouterr().out)["serving"]
    m = sv["memory_gib"]
    assert (m["total"], m["budget"]) == (pytest.approx(44.31), pytest.approx(39.879))
    assert m["non_torch"] == pytest.approx(0.0486) and m["activation_peak"] == pytest.approx(1_247_674_368 / GIB)
    assert (sv["kv_blocks"], sv["kv_cache_tokens"]) == (12_139, 194_224)
    assert sv["kv_cache_gib"] == pytest.approx(194_224 * 131_072 / GIB)  # 23.708984375


def test_missing_total_falls_back_to_smi_as_a_default(synthetic_profile):
    """The synthetic profile (80 GiB, no memory_cuda_total_gib): nvidia-smi's 80 GiB stands in
    as a default; its low corner is 0.985 x 80 = 78.8 GiB (intervals.SPREAD), its high corner
    80. The stage's KV moves by exactly gmu x 1.2 GiB = 0.5 x 1.2 x 2^30 = 644,245,094.4 B."""
    p = synthetic_profile
    assert p.memory_cuda_total_gib is None and p.cuda_total_gib().source == "default"
    low, high = intervals.corner(p, "low"), intervals.corner(p, "high")
    assert (low.cuda_total_gib().value, high.cuda_total_gib().value) == (pytest.approx(78.8), 80.0)
    assert "gpu.memory_cuda_total_gib" in intervals.defaults_used(p)
    w = Workload(batch=1, prompt_len=1000, output_len=1000, dtype="fp16")
    cfg = serving_config(p, settings=es.EngineSettings(gpu_memory_utilization=0.5, max_num_batched_tokens=8192,
                                                       max_num_seqs=256))
    (b_lo,), (b_hi,) = (stage_budgets([Stage(q, 1, 32, True, True)], L8, w, cfg) for q in (low, high))
    assert b_hi.total == 80 * GIB
    assert b_hi.kv_cache - b_lo.kv_cache == pytest.approx(0.5 * 1.2 * GIB)


def test_shipped_profiles_carry_the_published_total():
    """Every shipped profile has the record calibrate/published.py writes (so `calibrate init`
    in the rebuild writes it back); sourced ones sit below nvidia-smi's total: A100 80 - 79.26
    = 0.74, H100 79.65 - 79.22 = 0.43, L40S 44.99 - 44.31 = 0.68, A10G 22.49 (the A10's) -
    22.06 = 0.43 GiB."""
    for f in sorted((ROOT / "profiles").glob("*.json")):
        raw = json.loads(f.read_text())["gpu"]
        assert raw["memory_cuda_total_gib"] == published.cuda_total_record(raw["name"]), f.name
    profs = {p.gpu_name: p for p in load_profiles([str(ROOT / "profiles")])}
    gaps = {n: round(p.memory_gib.value - p.cuda_total_gib().value, 2) for n, p in profs.items()
            if p.cuda_total_gib().source == "published"}
    assert gaps == {"A100-SXM4-80GB": 0.74, "H100-SXM-80GB": 0.43, "L40S": 0.68, "A10G": 0.43}
    # a default is the stated total minus the mean gap of the A100, H100 and L40S, whose
    # nvidia-smi totals are their own: (0.74 + 0.4275 + 0.6783) / 3 = 0.6153; range [-0.74, 0]
    v100 = profs["V100-SXM2-16GB"].cuda_total_gib()
    assert (v100.source, v100.value) == ("default", pytest.approx(16 - 0.6153, abs=1e-4))  # 15.3848
    assert v100.plausible == (pytest.approx(15.26), 16.0)


def test_fit_totals_agree_with_the_profiles():
    """calibrate's vLLM fit predicts its rows with the same totals the solver uses."""
    profs = load_profiles([str(ROOT / "profiles")])
    matched = 0
    for gpu, (gib, _ref) in vllm_points.GPU_TOTAL_GIB.items():
        for p in profs:
            if p.matches(gpu):
                assert gib == p.cuda_total_gib().value, gpu
                matched += 1
    assert matched == 2  # A100 80GB and L40S


def test_fit_prediction_is_the_solver_rule():
    """PR #10511 (H100, vLLM ~0.6.5, Llama-3-8B TP1, gmu 0.9, total 79.22 as printed): the fit's
    KV is kv_cache_bytes of its own terms, 0.9 x 79.22 - weights - non-torch - peak."""
    fits, _ = vllm_fit.fit_points([str(ROOT.parent / "shared/data/vllm_memory/logs.csv")],
                                  "max_model_len=29000;gpu=RTX 4090;gpu_memory_utilization=0.5;gpu=A100 40GB")
    ff = fits["device_wide"]
    c = next(c for c in ff.fit_cases + ff.held_cases if c.row["line"] == 2)
    p = vllm_fit.predict_case(c, ff)
    expect = kv_cache_bytes(79.22 * GIB, 0.9, p["weights_gib"] * GIB, p["non_torch_gib"] * GIB,
                            p["activation_peak_gib"] * GIB) / GIB
    assert p["kv_cache_gib"] == pytest.approx(expect, rel=1e-12)
    assert p["kv_cache_gib"] == pytest.approx(53.29, abs=0.01)  # the log's available_kv_cache_memory


def test_bad_total_is_refused(synthetic_profile):
    raw = json.loads(Path(synthetic_profile.path).read_text())
    raw["gpu"]["memory_cuda_total_gib"] = {"value": -1, "source": "published"}
    with pytest.raises(InputError, match="gpu.memory_cuda_total_gib"):
        parse_profile(raw, "p.json")
