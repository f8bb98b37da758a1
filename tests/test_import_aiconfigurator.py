"""``calibrate import-aiconfigurator`` on tiny parquet tables made here (the package is not a
test dependency): units (ms -> us, elements -> bytes), subsetting, provenance, file written."""

import json

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from calibrate.cli import main  # noqa: E402
from solver.inputs.profile import load_profile  # noqa: E402


def _write(root, rel, rows):
    path = root / "data" / "toy_sxm" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


@pytest.fixture
def systems(tmp_path):
    root = tmp_path / "systems"
    gemm = [{"gemm_dtype": "bfloat16", "kernel_source": "k", "m": m, "n": n, "k": k, "latency": 0.001 * m}
            for m in (1, 2, 3, 4) for n in (1024, 2048, 65536) for k in (1024, 8192, 65536)]
    _write(root, "gemm/vllm/0.9.0/gemm_perf.parquet", gemm)
    attn = [{"kernel_source": "vllm_flash_attn", "head_dim": 128, "kv_cache_dtype": "bfloat16", "num_heads": 64,
             "num_key_value_heads": 8, "batch_size": b, "isl": 1, "step": s - 1, "latency": 0.01 * b * s}
            for b in (1, 2) for s in (2, 4, 8) if not (b == 2 and s == 8)]  # one point missing: filled
    _write(root, "attention/vllm/0.9.0/generation_attention_perf.parquet", attn)
    ar = [{"kernel_source": f"vLLM_custom_{g}", "allreduce_dtype": "bfloat16", "num_gpus": 2,
           "message_size": sz, "latency": 0.005 if g == "graph" else 0.04} for g in ("graph", "eager")
          for sz in (128, 4096)]
    _write(root, "comm/vllm/0.9.0/custom_allreduce_perf.parquet", ar)
    (root / "toy_sxm.yaml").write_text("gpu:\n  mem_bw: 2000000000000\n  mem_bw_empirical_scaling_factor: 0.8\n"
                                       "  mem_empirical_constant_latency: 0.000003\n")
    return root


def test_import_writes_tables_with_units_and_provenance(systems, tmp_path):
    out = tmp_path / "toy.json"
    rc = main(["import-aiconfigurator", "--system", "toy_sxm", "--data-dir", str(systems), "--package-version",
               "9.9.9", "--gpu", "A100-80GB", "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2
    ops = data["ops"]["vllm-0.9"]
    g = ops["gemm"][0]
    # m = 3 is not a power of two: dropped; 0.001 ms x m -> 1 us x m
    assert g["m"] == [1, 2, 4] and g["time_us"][2][0][0] == 4.0
    assert "aiconfigurator-core 9.9.9: systems/data/toy_sxm/gemm/vllm/0.9.0/gemm_perf.parquet" in g["ref"]
    dec = ops["decode_attention"][0]
    # context = isl + step; 0.01 ms x b x ctx -> 10 us x b x ctx; (b=2, ctx=8) extrapolated: 160 us
    assert dec["context"] == [2, 4, 8] and dec["time_us"] == [[20, 40, 80], [40, 80, 160]]
    assert "1 of 6 points" in dec["note"]
    ar = {(a["impl"], a["ranks"]): a for a in ops["all_reduce"]}
    # message_size counts bf16 elements: 128 -> 256 bytes
    assert ar[("custom_graph", 2)]["size_bytes"] == [256, 8192] and ar[("custom_graph", 2)]["time_us"] == [5, 5]
    assert ops["elementwise"]["gbps"]["value"] == 1600.0 and ops["elementwise"]["latency_us"]["value"] == 3.0
    assert ops["allreduce_policy"]["custom_ranks"] == [2, 4, 6, 8]  # the A100 profile is NVLink
    assert load_profile(out).ops["vllm-0.9"].gemm["bf16"].axes[0] == (1.0, 2.0, 4.0)


def test_unknown_system_is_one_line(systems, tmp_path, capsys):
    rc = main(["import-aiconfigurator", "--system", "nope", "--data-dir", str(systems), "--gpu", "A100-80GB",
               "--out", str(tmp_path / "x.json")])
    assert rc == 2 and "toy_sxm" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_import_moe_tables_for_the_zoo_shapes(systems, tmp_path):
    """Fused-MoE rows for mixtral-8x7b's expert shape (4096, 14336, top-2 of 8) at TP2: the
    ``balanced`` routing is kept over ``power_law_1.01`` (x10 slower here), the faster of two
    kernels per token count (0.2 ms x tokens vs 0.3 ms), ms -> us; a shape no preset has
    (hidden 1234) and a split with a single point (TP4) are dropped."""
    rows = [{"moe_dtype": "bfloat16", "kernel_source": ks, "hidden_size": h, "inter_size": 14336, "topk": 2,
             "num_experts": 8, "moe_tp_size": tp, "moe_ep_size": 1, "distribution": dist, "num_tokens": t,
             "latency": base * t * (10 if dist != "balanced" else 1)}
            for ks, base in (("fast", 0.2), ("slow", 0.3)) for h in (4096, 1234)
            for dist in ("balanced", "power_law_1.01") for tp, ts in ((2, (1, 8)), (4, (1,))) for t in ts]
    _write(systems, "moe/vllm/0.9.0/moe_perf.parquet", rows)
    out = tmp_path / "toy.json"
    assert main(["import-aiconfigurator", "--system", "toy_sxm", "--data-dir", str(systems), "--package-version",
                 "9.9.9", "--gpu", "A100-80GB", "--out", str(out)]) == 0
    moe = json.loads(out.read_text())["ops"]["vllm-0.9"]["moe"]
    assert [(m["hidden"], m["inter"], m["topk"], m["experts"], m["tp"], m["ep"]) for m in moe] == [(4096, 14336, 2, 8, 2, 1)]
    assert moe[0]["tokens"] == [1, 8] and moe[0]["time_us"] == [200, 1600] and moe[0]["dtype"] == "bf16"
    assert moe[0]["ref"] == "aiconfigurator-core 9.9.9: systems/data/toy_sxm/moe/vllm/0.9.0/moe_perf.parquet (routing balanced)"
    load_profile(out)  # the loader takes it back
