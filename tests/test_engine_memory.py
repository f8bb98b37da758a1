"""vLLM's memory accounting (solver/cost/engine_memory.py) and its defaults, by hand.

Synthetic profile (80 GiB) with a memory.vllm section: non-torch 0.5 GiB + 1.5 with TP >= 2
+ 0.25 with PP >= 2; phases mlp (3 h + 3 f/t units of T*p) and sampler (10 x R x V x 4 B);
CUDA graphs 0.5 GiB (after the KV cache); no fragmentation. llama3-8b in fp16, gpu memory
utilization 0.5 (budget 42,949,672,960 B), 8,192 batched tokens, 256 sequences, prompt 1000
+ output 1000 (max_model_len 2000 = 125 blocks of 16).
"""

import json
from pathlib import Path

import pytest

from solver.cli import main
from solver.cost import engine_settings as es
from solver.cost.serving import kv_capacity_tokens, serving_config, stage_budgets
from solver.cost.stage import Stage
from solver.inputs.model import load_model
from solver.inputs.profile import load_profile
from solver.inputs.workload import Workload

L8 = load_model("llama3-8b")
W = Workload(batch=1, prompt_len=1000, output_len=1000, dtype="fp16")
SETTINGS = es.EngineSettings(gpu_memory_utilization=0.5, max_num_batched_tokens=8192, max_num_seqs=256)


def _rec(v):
    return {"value": v, "source": "synthetic"}


@pytest.fixture
def vprof(synthetic_profile, tmp_path):
    raw = json.loads(Path(synthetic_profile.path).read_text())
    raw["memory"]["vllm"] = {
        "version": "0.10", "non_torch_gib": {"base": _rec(0.5), "tp_extra": _rec(1.5), "pp_extra": _rec(0.25)},
        "activation_peak": {"model": "phases_max_v1", "source": "synthetic",
                            "phases": {"mlp": {"c_h": 3, "c_f_t": 3}, "sampler": {"c_v": 10}}},
        "cudagraph_gib": _rec(0.5), "fragmentation_frac": _rec(0.0)}
    (tmp_path / "v.json").write_text(json.dumps(raw))
    return load_profile(tmp_path / "v.json")


def test_single_gpu_budget(vprof):
    """Weights 16,060,522,496 B; non-torch 536,870,912; MLP phase (3 x 4096 + 3 x 14336) x
    8192 x 2 = 905,969,664 < sampler 10 x 256 x 128,256 x 4 = 1,313,341,440 (the peak). KV =
    42,949,672,960 - 16,060,522,496 - 536,870,912 - 1,313,341,440 = 25,038,938,112 B =
    11,939 blocks of 2,097,152 B (131,072 B per token) = 191,024 tokens."""
    cfg = serving_config(vprof, settings=SETTINGS)
    (b,) = stage_budgets([Stage(vprof, 1, 32, True, True)], L8, W, cfg)
    assert (b.weights, b.non_torch, b.activation_peak, b.activation_phase) == \
        (16_060_522_496, 536_870_912, 1_313_341_440, "sampler")
    assert b.kv_cache == 25_038_938_112 and b.blocks == 11_939
    assert b.cudagraphs == 536_870_912  # reported, not in the budget (V1 captures after sizing KV)


def test_tp2_adds_custom_allreduce_memory(vprof):
    """TP2: weights 8,030,527,488; non-torch 0.5 + 1.5 = 2 GiB = 2,147,483,648; sampler still
    1,313,341,440 (logits are gathered: full vocabulary on every rank) > MLP 553,648,128.
    KV 31,458,320,384 B / 1,048,576 B per block (65,536 B per token) = 30,000.99 -> 30,000
    blocks = 480,000 tokens."""
    cfg = serving_config(vprof, settings=SETTINGS)
    assert kv_capacity_tokens([Stage(vprof, 2, 32, True, True)], L8, W, cfg) == 480_000


def test_every_stage_gets_the_smallest_stage_blocks(vprof):
    """PP2 x TP1, 16 layers each; non-torch 0.5 + 0.25 = 805,306,368. Stage 0 (no sampler):
    42,949,672,960 - 8,030,257,152 - 805,306,368 - 905,969,664 = 33,208,139,776 -> 31,669
    blocks. Stage 1 (sampler): 42,949,672,960 - 8,030,265,344 - 805,306,368 - 1,313,341,440
    = 32,800,759,808 -> 31,281 blocks. The engine holds 31,281 x 16 = 500,496 tokens."""
    cfg = serving_config(vprof, settings=SETTINGS)
    stages = [Stage(vprof, 1, 16, True, False), Stage(vprof, 1, 16, False, True)]
    assert [b.blocks for b in stage_budgets(stages, L8, W, cfg)] == [31_669, 31_281]
    assert kv_capacity_tokens(stages, L8, W, cfg) == 500_496


@pytest.mark.parametrize("version,eager,blocks,graphs", [
    ("0.19", False, 12_133, 536_870_912),  # 0.19: graphs captured after sizing (estimate not applied by default)
    ("0.20", False, 11_877, 536_870_912),  # 0.20.0: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1
    ("0.24", False, 12_133, 536_870_912),  # 0.24 runs Llama on Model Runner V2, whose estimate is 0
    ("0.25", False, 11_877, 536_870_912),  # 0.25: Llama back on V1 (engine_settings v2_runner_no_graph_estimate)
    ("0.25", True, 12_133, 0),             # --enforce-eager: no graphs, none subtracted
])
def test_cudagraphs_enter_the_budget_from_0_20(vprof, version, eager, blocks, graphs):
    """The single-GPU case of test_single_gpu_budget, on V1 from 0.17: its sampler runs in place
    (engine_settings.sampler_bytes_per_logit: 14 B per logit, 256 x 128,256 x 14 = 459,669,504 B)
    below the MLP phase 905,969,664, which sets the peak: KV 42,949,672,960 - 16,060,522,496 -
    536,870,912 - 905,969,664 = 25,446,309,888 B before 0.20 (12,133.6 -> 12,133 blocks). From
    0.20 the 0.5 GiB of graphs comes off first: 24,909,438,976 B = 11,877.8 -> 11,877 blocks."""
    st = es.EngineSettings(gpu_memory_utilization=0.5, max_num_batched_tokens=8192, max_num_seqs=256,
                           version=version, enforce_eager=eager)
    (b,) = stage_budgets([Stage(vprof, 1, 32, True, True)], L8, W, serving_config(vprof, settings=st))
    assert (b.blocks, b.cudagraphs) == (blocks, graphs)


def test_0_34_blocks_of_64_tokens(vprof):
    """0.34: graphs in the budget and CacheConfig.DEFAULT_BLOCK_SIZE 64: 64 x 131,072 B =
    8,388,608 B per block. Model Runner V2 (every model from 0.29): its second dummy sampler pass
    costs V1's 14 B per logit (peak as in the 0.20 case), and the budget counts its per-request
    tables: 256 x (4 x 128,256 + 2 x 4 x 4,008) = 139,542,528 B. 24,909,438,976 (the 0.20 case
    above) - 139,542,528 = 24,769,896,448 / 8,388,608 = 2,952.8 -> 2,952 blocks = 188,928 tokens."""
    st = es.EngineSettings(gpu_memory_utilization=0.5, max_num_batched_tokens=8192, max_num_seqs=256, version="0.34")
    cfg = serving_config(vprof, settings=st)
    assert cfg.block_size == 64
    assert kv_capacity_tokens([Stage(vprof, 1, 32, True, True)], L8, W, cfg) == 188_928


def test_estimate_json_reports_vllm_accounting(vprof, capsys):
    """The single-GPU case through the CLI at --vllm-version 0.10: V1's sampler on PyTorch's sort
    (38 B per logit) replaces the profile's c_v 10: 9.5 x 256 x 128,256 x 4 = 1,247,674,368 B;
    KV 42,949,672,960 - 16,060,522,496 - 536,870,912 - 1,247,674,368 = 25,104,605,184 B =
    11,970 blocks = 23.37890625 GiB, 191,520 tokens, maximum concurrency 11,970 / 125 = 95.76;
    the exported settings are the ones assumed."""
    assert main(["estimate", "--profile", vprof.path, "--model", "llama3-8b", "--dtype", "fp16",
                 "--prompt-len", "1000", "--output-len", "1000", "--gpu-memory-utilization", "0.5",
                 "--max-num-batched-tokens", "8192", "--max-num-seqs", "256", "--vllm-version", "0.10",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sv = out["serving"]
    assert (sv["kv_cache_gib"], sv["kv_cache_tokens"]) == (pytest.approx(23.37890625), 191_520)
    assert sv["max_concurrency"] == pytest.approx(95.76)
    assert sv["memory_gib"]["non_torch"] == pytest.approx(0.5)
    assert sv["memory_gib"]["activation_peak"] == pytest.approx(1_247_674_368 / 2**30)
    assert sv["memory_gib"]["cuda_graphs"] == pytest.approx(0.5)
    assert sv["settings"]["max_model_len"] == 2000 and sv["settings"]["enable_chunked_prefill"] is True


@pytest.mark.parametrize("version,gpu,gib,entry,mml,expect", [
    ((0, 10), "H100-SXM-80GB", 79.6, "llm", 4096, (16384, 1024)),   # >= 70 GiB, not A100
    ((0, 10), "H100-SXM-80GB", 79.6, "serve", 4096, (8192, 1024)),
    ((0, 10), "A100-80GB", 79.3, "llm", 4096, (8192, 256)),         # A100 excluded (PR #17885)
    ((0, 10), "L40S", 45.0, "serve", 4096, (2048, 256)),
    ((0, 8), "A100-80GB", 79.3, "llm", 4096, (16384, 1024)),        # 0.8.5: >= 70 GiB, A100 included
    ((0, 7), "H100-SXM-80GB", 79.6, "llm", 4096, (4096, 256)),      # V0: no chunking <= 32K
    ((0, 7), "H100-SXM-80GB", 79.6, "llm", 1000, (2048, 256)),      # max(max_model_len, 2048)
    ((0, 7), "A10G", 22.5, "llm", 65536, (2048, 256)),              # V0 0.7 chunked above 32K
    ((0, 6), "A10G", 22.5, "llm", 65536, (512, 256)),               # V0 0.6 chunked: 512
])
def test_vllm_defaults_by_version(version, gpu, gib, entry, mml, expect):
    chunked = es.chunked_default(version, mml)[0]
    tokens = es.batched_tokens_default(version, chunked, mml, gpu, gib, entry)[0]
    assert (tokens, es.max_num_seqs_default(version, gpu, gib)[0]) == expect


def test_version_outside_the_modelled_range_is_refused(capsys):
    assert main(["estimate", "--profile", "profiles/h100.json", "--model", "llama3-8b", "--vllm-version", "0.4.1"]) == 2
    assert "--vllm-version: vLLM 0.4 is outside the modelled versions 0.6-0.34" in capsys.readouterr().err


def test_plan_exports_the_engine_settings_it_assumed(write, capsys):
    """The flags reach the planner's cost model (fewer sequences at once) and the vllm serve
    command carries exactly the resolved settings."""
    c = write("one.yaml", "name: one\nnode_groups:\n  - {name: a, count: 1, gpu: A100-80GB, gpus_per_node: 1, "
                          "interconnect: nvlink, nic_gbits: 200}\n")
    argv = ["plan", "--profile", "profiles/a100.json", "--model", "llama3-8b", "--cluster", str(c), "--batch", "512",
            "--prompt-len", "2048", "--output-len", "512", "--max-num-seqs", "64", "--max-num-batched-tokens", "4096",
            "--max-model-len", "4096", "--json"]
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out)["replicas"][0]
    assert rep["concurrency"] == 64 and rep["concurrency_limited_by"] == "max_num_seqs"
    assert ("--max-model-len 4096 --gpu-memory-utilization 0.9 --max-num-seqs 64 --max-num-batched-tokens 4096 "
            "--enable-chunked-prefill") in rep["vllm"]["command"]
