"""vLLM's defaults for 0.11-0.34 (solver/cost/engine_settings.py), by hand from the rules it quotes.

Batch defaults (get_batch_defaults): >= 160 GiB from 0.28: 16384 tokens for both entry points,
1024 sequences; >= 70 GiB and not A100: 16384 LLM / 8192 serve, 1024; else 8192 / 2048, 256.
"""

import json

import pytest

from solver.cli import main
from solver.cost import engine_settings as es


def _defaults(version, gpu, gib, entry, mml=4096, chunked=None, user_tokens=None):
    chunked = es.chunked_default(version, mml)[0] if chunked is None else chunked
    tokens = es.batched_tokens_default(version, chunked, mml, gpu, gib, entry)[0]
    return tokens, es.max_num_seqs_default(version, gpu, gib, user_tokens)[0]


@pytest.mark.parametrize("version,gpu,gib,entry,expect", [
    ((0, 24), "H100-SXM-80GB", 79.6, "llm", (16384, 1024)),
    ((0, 24), "H100-SXM-80GB", 79.6, "serve", (8192, 1024)),
    ((0, 24), "A100-80GB", 79.3, "llm", (8192, 256)),      # 'a100' in the name: small tier
    ((0, 24), "A100-80GB", 79.3, "serve", (2048, 256)),
    ((0, 24), "L40S", 44.4, "serve", (2048, 256)),         # < 70 GiB
    ((0, 24), "L40S", 44.4, "llm", (8192, 256)),
    ((0, 30), "H200", 139.8, "serve", (8192, 1024)),       # < 160 GiB: still the H100 tier
    ((0, 27), "B200", 178.4, "serve", (8192, 1024)),       # 0.27.1: no 160 GiB tier yet
    ((0, 28), "B200", 178.4, "serve", (16384, 1024)),      # 0.28.0 arg_utils.py:2582
    ((0, 34), "B200", 178.4, "llm", (16384, 1024)),
])
def test_batch_defaults_by_gpu_and_entry_point(version, gpu, gib, entry, expect):
    assert _defaults(version, gpu, gib, entry) == expect


def test_unchunked_prefill_from_0_12_takes_the_larger_of_max_model_len_and_the_default():
    """0.12+ honours --no-enable-chunked-prefill: max(max_model_len, default). H100 serve:
    max(32768, 8192) = 32768; max(4096, 8192) = 8192. 0.11 forces chunking on."""
    assert _defaults((0, 24), "H100", 79.6, "serve", mml=32768, chunked=False)[0] == 32768
    assert _defaults((0, 24), "H100", 79.6, "serve", mml=4096, chunked=False)[0] == 8192
    assert es.chunked_forced((0, 11)) and not es.chunked_forced((0, 12))


def test_default_seqs_never_exceed_the_token_budget_from_0_11():
    """--max-num-batched-tokens 512 on an H100: 0.24 min(1024, 512) = 512; 0.10 keeps 1024."""
    assert _defaults((0, 24), "H100", 79.6, "llm", user_tokens=512)[1] == 512
    assert _defaults((0, 10), "H100", 79.6, "llm", user_tokens=512)[1] == 1024


@pytest.mark.parametrize("version,gmu,block,graphs", [
    ((0, 11), 0.9, 16, False), ((0, 19), 0.9, 16, False), ((0, 20), 0.92, 16, True),
    ((0, 33), 0.92, 16, True), ((0, 34), 0.92, 64, True),
])
def test_memory_defaults_by_version(version, gmu, block, graphs):
    assert es.gpu_memory_utilization_default(version)[0] == gmu
    assert es.block_size_default(version)[0] == block
    assert es.cudagraphs_in_budget(version, enforce_eager=False)[0] is graphs
    assert es.cudagraphs_in_budget(version, enforce_eager=True)[0] is False
    assert es.memory_family(version) == "since_init"


@pytest.mark.parametrize("text", ["0.35", "0.5"])
def test_versions_not_read_are_refused(text, capsys):
    assert main(["estimate", "--profile", "profiles/h100.json", "--model", "llama3-8b", "--vllm-version", text]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--vllm-version: vLLM {text} is outside the modelled versions 0.6-0.34" in err


def test_empty_version_is_refused_not_defaulted(capsys):
    """`--vllm-version=` (an empty value) is bad input, not "use the default"."""
    assert main(["estimate", "--profile", "profiles/h100.json", "--model", "llama3-8b", "--vllm-version="]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--vllm-version: not a vLLM version (like 0.10.1): ''" in err


def test_0_34_export_pins_eager_and_the_estimate_sizing(write, capsys):
    """0.34 sizes the KV cache after warm-up unless told not to: the command the plan exports
    carries --no-enable-extensible-kv-cache, --enforce-eager as given, and gpu memory
    utilization 0.92 (the 0.20+ default)."""
    c = write("one.yaml", "name: one\nnode_groups:\n  - {name: a, count: 1, gpu: A100-80GB, gpus_per_node: 1, "
                          "interconnect: nvlink, nic_gbits: 200}\n")
    argv = ["plan", "--profile", "profiles/a100.json", "--model", "llama3-8b", "--cluster", str(c), "--batch", "64",
            "--prompt-len", "1024", "--output-len", "256", "--vllm-version", "0.34", "--enforce-eager", "--json"]
    assert main(argv) == 0
    vllm = json.loads(capsys.readouterr().out)["replicas"][0]["vllm"]
    cmd = vllm["command"]
    assert vllm["vllm_version"] == "0.34"  # the release the flags and the prediction follow
    assert "--gpu-memory-utilization 0.92 " in cmd
    assert "--enable-chunked-prefill --enforce-eager --no-enable-extensible-kv-cache" in cmd


def test_online_simulator_takes_the_versions_block_size(synthetic_profile):
    """The online simulator counts KV in the version's blocks, as the planner does. 100 logged KV
    tokens are 100 // 16 = 6 blocks (96 tokens) before 0.34 and 100 // 64 = 1 block from 0.34; a
    request of 60 + 10 = 70 tokens needs ceil(70 / 16) = 5 blocks of 16 (fits) but
    ceil(70 / 64) = 2 blocks of 64 (does not: vLLM would refuse to start)."""
    from dataclasses import replace

    from solver.cost.online.simulate import simulate
    from solver.cost.online.steps import StepModel
    from solver.cost.online.traffic import Traffic
    from solver.cost.serving import serving_config
    from solver.cost.stage import Stage
    from solver.errors import InfeasibleError
    from solver.inputs.model import load_model

    model, stages = load_model("llama3-8b"), [Stage(synthetic_profile, 1, 32, True, True)]
    cfg = serving_config(synthetic_profile)
    traffic = Traffic(prompt_len=60, output_len=10, concurrency=1)
    v033 = StepModel(model, stages, [], serving=replace(cfg, block_size=16), kv_tokens=100)
    v034 = StepModel(model, stages, [], serving=replace(cfg, block_size=64), kv_tokens=100)
    assert (v033.kv_blocks(), v034.kv_blocks()) == (6, 1)
    assert simulate(v033, traffic, 1).preemptions == 0
    with pytest.raises(InfeasibleError, match=r"needs 2 KV blocks; the replica has 1 \(64 tokens\)"):
        simulate(v034, traffic, 1)


def test_batched_tokens_below_max_num_seqs_is_refused(capsys):
    """vLLM refuses to start when max_num_batched_tokens < max_num_seqs (0.10.1.1
    vllm/config/scheduler.py:262): 10 tokens against 0.10's default 256 sequences is one line,
    exit 2; 100 tokens with --max-num-seqs 64 runs."""
    base = ["estimate", "--profile", "profiles/a100.json", "--model", "llama3-8b", "--vllm-version", "0.10"]
    assert main(base + ["--max-num-batched-tokens", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "10 is below max_num_seqs 256" in err
    assert main(base + ["--max-num-batched-tokens", "100", "--max-num-seqs", "64"]) == 0


@pytest.mark.parametrize("version, in_budget", [("0.10", False), ("0.27", True)])
def test_estimate_text_adds_up_with_graphs_where_the_version_puts_them(version, in_budget, capsys):
    """From 0.20 vLLM subtracts the CUDA graphs before sizing the KV cache, so the estimate's
    budget line lists them among the terms (A100, llama3-8b at 0.27: 14.96 + 0.05 + 0.84 + 0.57
    + 56.49 = 72.91 of 0.92 x 79.26 = 72.92 GiB, KV rounded down to whole blocks); before 0.20
    they are captured after the KV cache is sized and are reported beside it."""
    assert main(["estimate", "--profile", "profiles/a100.json", "--model", "llama3-8b", "--vllm-version", version]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "accounting, per GPU" in x)
    assert ("+ CUDA graphs 0.57 + KV" in line) == in_budget
    assert line.endswith("CUDA graphs 0.57 GiB after") != in_budget
