"""vLLM V1's on-demand KV allocation (solver/cost/kv_admission.py) and the interval corners
that use it and the engine all-reduce fit's pinned message range (docs/metrics.md, "Intervals")."""

import json
from pathlib import Path

import pytest

from solver.cost import comm, intervals
from solver.cost.kv_admission import on_demand
from solver.cost.ops.compose import _allreduce
from solver.cost.ops.lookup import allreduce_s
from solver.cost.pipeline import estimate_pipeline, even_split, running_wave
from solver.cost.serving import concurrency, serving_config
from solver.cost.stage import Stage
from solver.errors import InputError
from solver.inputs.model import load_model
from solver.inputs.ops_profile import tables_for
from solver.inputs.profile import load_profile
from solver.inputs.workload import Workload

ROOT = Path(__file__).resolve().parents[1]


def test_on_demand_runs_two_where_reservation_runs_one():
    """Capacity 8 blocks of 16 = 128 tokens; prompt 32 (2 blocks), output 33 (32 decode steps,
    KV at the end 32 + 32 = 64 tokens = 4 blocks). Reserving the whole context: ceil(65/16) = 5
    blocks each, 8 // 5 = 1 at a time. On demand: both prompts take 2 + 2 = 4 blocks; after k
    steps each holds ceil((32 + k)/16) blocks, 2 x 4 = 8 <= 8 up to k = 32: no preemption."""
    s = on_demand(2, 32, 33, 128, 256, 16)
    assert s.admissions == ((2, 64),) and s.segments == ((2, 32),) and s.preemptions == 0
    assert s.mean_running == 2.0


def test_preemption_recomputes_prompt_and_outputs():
    """Capacity 6 blocks (96 tokens), same requests. Both admitted (4 blocks); 2 x ceil((32+k)/16)
    <= 6 holds to k = 16, so after 16 steps the second (most recently admitted) is preempted with
    33 - 16 = 17 outputs. The first runs alone its last 16 steps and finishes (4 blocks free ->
    6). The second is recomputed from 32 + 17 = 49 tokens (4 blocks), then 33 - 1 - 17 = 15 steps.
    Decode steps: 16 with two running, 16 + 15 = 31 with one."""
    s = on_demand(2, 32, 33, 96, 256, 16)
    assert s.admissions == ((2, 64), (1, 49)) and s.segments == ((2, 16), (1, 31)) and s.preemptions == 1
    assert s.prefill_tokens == 113 and s.decode_steps == 47


def test_max_num_seqs_and_infeasible():
    """max_num_seqs 2 of a batch of 3 (room for all): two run 32 steps, then the third. A cache
    of 3 blocks cannot hold one request's 64 tokens (4 blocks): vLLM refuses to start."""
    s = on_demand(3, 32, 33, 1024, 2, 16)
    assert s.admissions == ((2, 64), (1, 32)) and s.segments == ((2, 32), (1, 32))
    assert on_demand(2, 32, 33, 48, 256, 16) is None


@pytest.fixture(scope="module")
def l40s():
    return load_profile(ROOT / "profiles" / "l40s.json")


def _tp4(profile, workload):
    model = load_model("llama3-70b")
    stages = [Stage(profile, 4, n, first=i == 0, last=True) for i, n in enumerate(even_split(80, 1))]
    cfg = serving_config(profile, 0.85)
    return model, stages, cfg, estimate_pipeline(model, workload, stages, [], "vllm", serving=cfg)


def test_high_corner_times_the_on_demand_schedule(l40s):
    """L40S TP4, 30 x (4096 + 4096): the KV cache holds 47,136 tokens per GPU (0.85 x the CUDA
    total 44.31 GiB - 32.86 weights - 0.05 non-torch - 1.16 activation: vLLM 0.10's sort-path
    sampler, 256 x 128,256 x 38 B = 3.59 GiB at 80 KiB per token, in blocks of 16), so reserving
    8192-token contexts fits 47,136 // 8192 = 5 at once.
    The optimistic corner plays the V1 schedule: each admission's prefill at
    its wave's prefill per prompt token, each stretch at its running count's decode round."""
    w = Workload(batch=30, prompt_len=4096, output_len=4096, dtype="fp16")
    model, stages, cfg, exp = _tp4(l40s, w)
    assert exp.concurrency.seqs == 5 and exp.concurrency.limited_by == "kv_cache"
    hi_stages = intervals.at_corner(stages, "high")
    hi_cfg = serving_config(hi_stages[0].profile, 0.85)
    assert hi_cfg.kv_on_demand and not cfg.kv_on_demand
    hi = estimate_pipeline(model, w, hi_stages, [], "vllm", serving=hi_cfg)
    conc = concurrency(hi_stages, model, w, hi_cfg)
    sched = on_demand(30, 4096, 4096, conc.kv_capacity_tokens, hi_cfg.max_num_seqs, 16)
    assert sched.mean_running > 5 and sched.preemptions > 0

    def wave(n):
        return running_wave(model, w, hi_stages, [], n, serving=hi_cfg)
    pre = sum(wave(n).prefill_s * t / (n * 4096) for n, t in sched.admissions)
    dec = sum(s * wave(n).round_s for n, s in sched.segments)
    assert (hi.prefill_s, hi.decode_s) == pytest.approx((pre, dec))
    assert hi.throughput_tok_s > exp.throughput_tok_s


def test_fit_records_the_mean_message_it_pins(l40s):
    """Fit row 12 of the L40S data (TP4, 30 x (8192 + 2048)): 49,872 KV tokens // 10,240 = 4 at
    once, waves 7 x 4 + 2. Each wave of n: n prefill passes of 8192 tokens and 2047 decode passes
    of n tokens. Over the 8 waves: (30 x 8192 + 2047 x 30) / (30 + 8 x 2047) = 307,170 / 16,406
    tokens per all-reduce x 8192 hidden x 2 bytes = 306,758 B, the smallest mean of the TP4 fit
    rows (profiles/l40s.json serving.tp_allreduce[0].message_bytes)."""
    w = Workload(batch=30, prompt_len=8192, output_len=2048, dtype="fp16")
    *_, est = _tp4(l40s, w)
    assert est.allreduce_mean_bytes == pytest.approx(307170 / 16406 * 8192 * 2)
    assert l40s.engine_allreduce[0].message_bytes[0] == round(307170 / 16406 * 8192 * 2)


def test_corners_span_fit_and_table_outside_the_pinned_range(l40s):
    """8 ranks, a prefill step of 8192 tokens: 8192 x 8192 x 2 = 134,217,728 B, far above the
    2.4 MB the TP8 fit rows pin. Fit: 2(8-1) x 65.66 us + 1.75 x 134217728 B / 10.1262 GB/s
    = 919.24 + 23195.38 = 24114.62 us; the imported NCCL table (aiconfigurator l40s, 8 ranks)
    162,500 us at that size. Expected: the fit; pessimistic corner: the table; optimistic: the fit."""
    tables, size = tables_for(l40s.ops, "vllm"), 134217728
    assert not comm.fit_pins(l40s, 8, size)
    exp = _allreduce(l40s, tables, 8, size, 8192)[0]
    assert exp == pytest.approx(24114.62e-6, rel=1e-5)
    low = _allreduce(intervals.corner(l40s, "low"), tables, 8, size, 8192)[0]
    high = _allreduce(intervals.corner(l40s, "high"), tables, 8, size, 8192)[0]
    assert (low, high) == pytest.approx((0.1625, 24114.62e-6), rel=1e-5)
    # a TP4 decode step of 30 sequences, 30 x 8192 x 2 = 491,520 B, lies inside the pinned
    # 306,758-1,286,319 B: no corner moves it
    assert comm.fit_pins(l40s, 4, 491520)
    ends = {_allreduce(intervals.corner(l40s, s), tables, 4, 491520, 30)[0] for s in intervals.SIDES}
    assert ends == {_allreduce(l40s, tables, 4, 491520, 30)[0]}
    # a decode-sized TP8 call: the optimistic corner takes the faster table
    t = allreduce_s(l40s, tables, 8, 491520, 30)[0]
    assert _allreduce(intervals.corner(l40s, "high"), tables, 8, 491520, 30)[0] == t < exp


def test_message_bytes_must_be_a_range(tmp_path, l40s):
    raw = json.loads((ROOT / "profiles" / "l40s.json").read_text())
    raw["serving"]["tp_allreduce"][0]["message_bytes"] = [5, 1]
    (tmp_path / "p.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="message_bytes"):
        load_profile(tmp_path / "p.json")
