"""Bad input of any kind -> one line naming file, field and reason, exit 2, nothing written."""

import copy
import json
import math
import os
import stat
from pathlib import Path

import pytest

from calibrate.cli import main as calibrate_main
from calibrate.profile_io import atomic_write_text, write_profile
from solver.cli import main as solver_main
from solver.errors import InputError
from solver.inputs.fields import Fields
from solver.inputs.model import parse_hf_config
from solver.inputs.profile import load_profile, load_profiles, parse_profile

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "synthetic_profile.json"
BASE = json.loads(FIX.read_text())
POOL = """
name: syn-pool
node_groups:
  - {name: a, count: 2, gpu: SYN-80, gpus_per_node: 2, interconnect: nvlink, nic_gbps: 25, usd_per_gpu_hour: 2.0}
"""


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _set(d: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(d)
    node = out
    *head, last = dotted.split(".")
    for k in head:
        node = node[k]
    node[last] = value
    return out


# ---------------------------------------------------------------- 1. profile value bounds

@pytest.mark.parametrize("path, value, reason", [
    ("gpu.hbm_gbps.value", 0, "must be > 0"),
    ("gpu.peak_tflops.bf16.value", 0, "must be > 0"),
    ("gpu.memory_gib.value", -1, "must be > 0"),
    ("gpu.intra_node_gbps.value", 0.0, "must be > 0"),
    ("network.intra_node_p2p_efficiency.value", 0, "must be in (0, 1]"),
    ("network.nic_efficiency.value", 1.5, "must be in (0, 1]"),
    ("network.inter_node_alpha_us.value", -1, "must be >= 0"),
    ("memory.runtime_overhead_gib.value", -0.5, "must be >= 0"),
    ("memory.fragmentation_frac.value", -0.1, "must be in [0, 1]"),
    ("gpu.hbm_gbps.value", float("nan"), "finite"),
    ("gpu.memory_gib.value", float("inf"), "finite"),
])
def test_profile_values_are_range_checked(path, value, reason):
    with pytest.raises(InputError) as e:
        parse_profile(_set(BASE, path, value), "p.json")
    field = path.rsplit(".", 1)[0]
    assert e.value.where == "p.json" and e.value.field == f"{field}.value" and reason in e.value.reason


@pytest.mark.parametrize("key", ["intra_node_alpha_us", "inter_node_alpha_us", "nic_efficiency",
                                 "intra_node_p2p_efficiency"])
def test_network_keys_are_required(key):
    data = copy.deepcopy(BASE)
    del data["network"][key]
    with pytest.raises(InputError, match=f"network.{key}: required field is missing"):
        parse_profile(data, "p.json")


def test_empty_or_missing_network_block_is_an_input_error():
    with pytest.raises(InputError, match="network.intra_node_alpha_us: required"):
        parse_profile(_set(BASE, "network", {}), "p.json")
    data = copy.deepcopy(BASE)
    del data["network"]
    with pytest.raises(InputError, match="p.json: network: required"):
        parse_profile(data, "p.json")


def test_collective_table_times_must_be_positive():
    coll = {"collective": "all_reduce", "ranks": 2, "scope": "intra_node", "alpha_us": 5.0, "busbw_gbps": 100.0,
            "source": "synthetic", "table": {"size_bytes": [1024, 2048], "time_us": [10.0, 0.0]}}
    data = _set(BASE, "collectives", [coll])
    with pytest.raises(InputError, match=r"collectives\[0\].table.time_us: must be finite numbers > 0"):
        parse_profile(data, "p.json")
    coll["table"]["time_us"] = [10.0, float("nan")]
    with pytest.raises(InputError, match="time_us"):
        parse_profile(data, "p.json")


def test_every_shipped_profile_loads():
    profiles = load_profiles([str(ROOT / "profiles")])
    assert {p.gpu_name for p in profiles} >= {"V100-SXM2-16GB"}
    assert all(set(p.network) == {"intra_node_alpha_us", "inter_node_alpha_us", "nic_efficiency",
                                  "intra_node_p2p_efficiency"} for p in profiles)


def test_profile_zero_hbm_via_cli_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_set(BASE, "gpu.hbm_gbps.value", 0)))
    assert solver_main(["estimate", "--profile", str(bad), "--model", "llama3-8b"]) == 2
    assert _one_line(capsys).endswith(f"{bad}: gpu.hbm_gbps.value: must be > 0, got 0")


# ---------------------------------------------------------------- 2. non-finite numbers

@pytest.mark.parametrize("v", [float("nan"), float("inf"), -float("inf")])
def test_fields_reject_non_finite(v):
    with pytest.raises(InputError, match="x.yaml: k: must be a finite number"):
        Fields({"k": v}, "x.yaml", "", ["k"]).get("k", float)


def test_nan_price_in_cluster_is_one_line(write, capsys):
    c = write("pool.yaml", POOL.replace("usd_per_gpu_hour: 2.0", "usd_per_gpu_hour: .nan"))
    argv = ["plan", "--profile", str(FIX), "--model", "llama3-8b", "--cluster", str(c), "--objective", "cost",
            "--min-throughput", "10"]
    assert solver_main(argv) == 2
    err = _one_line(capsys)
    assert "usd_per_gpu_hour" in err and "finite" in err


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "x"])
def test_estimate_nic_gbps_is_checked_by_argparse(value, capsys):
    argv = ["estimate", "--profile", str(FIX), "--model", "llama3-8b", "--pp", "2", "--gpus-per-node", "1",
            f"--nic-gbps={value}"]
    assert solver_main(argv) == 2
    err = _one_line(capsys)
    assert "--nic-gbps" in err and "KV" not in err


@pytest.mark.parametrize("flag, value", [("--gpu-memory-utilization", "1.5"), ("--gpu-memory-utilization", "nan"),
                                         ("--gpu-memory-utilization", "0")])
def test_estimate_fraction_flags(flag, value, capsys):
    argv = ["estimate", "--profile", str(FIX), "--model", "llama3-8b", "--pp", "1", f"{flag}={value}"]
    assert solver_main(argv) == 2
    assert flag in _one_line(capsys)


@pytest.mark.parametrize("flag, value", [("--time-limit", "nan"), ("--time-limit", "-1"),
                                         ("--min-throughput", "inf"), ("--min-throughput", "-5")])
def test_plan_float_flags(write, capsys, flag, value):
    c = write("pool.yaml", POOL)
    argv = ["plan", "--profile", str(FIX), "--model", "llama3-8b", "--cluster", str(c), f"{flag}={value}"]
    assert solver_main(argv) == 2
    assert flag in _one_line(capsys)


# ---------------------------------------------------------------- 3. non-UTF-8 CSV

def test_validate_non_utf8_csv(tmp_path, capsys):
    bad = tmp_path / "m.csv"
    bad.write_bytes(b"model,gpu\n\xff\xfe,\x80\n")
    assert solver_main(["validate", str(bad), "--profile", str(FIX)]) == 2
    assert _one_line(capsys).startswith(f"solver: error: {bad}: not a UTF-8 text file")


def test_calibrate_fit_non_utf8_csv(tmp_path, capsys):
    bad = tmp_path / "raw.csv"
    bad.write_bytes(b"collective,ranks\n\xff\n")
    assert calibrate_main(["fit", str(bad), "--out", str(tmp_path / "p.json"), "--gpu", "H100"]) == 2
    assert "not a UTF-8 text file" in _one_line(capsys)
    assert not (tmp_path / "p.json").exists()


def test_fit_memory_non_utf8_csv(tmp_path):
    from calibrate.memory.fit import read_raw
    bad = tmp_path / "raw.csv"
    bad.write_bytes(b"runtime\n\xc3\x28\n")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        read_raw(bad)


# ---------------------------------------------------------------- 4. model config

@pytest.mark.parametrize("tc", [["x"], "llama", 3])
def test_text_config_must_be_a_mapping(tc):
    with pytest.raises(InputError, match="c.json: text_config: must be a JSON object"):
        parse_hf_config({"text_config": tc}, "c.json")


def test_more_experts_per_token_than_experts():
    cfg = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100,
           "num_local_experts": 4, "num_experts_per_tok": 8}
    with pytest.raises(InputError, match="c.json: num_experts_per_tok: 8 exceeds the 4 experts"):
        parse_hf_config(cfg, "c.json")


# ---------------------------------------------------------------- 5. --out is a folder; file mode

def test_calibrate_init_out_folder(tmp_path, capsys):
    assert calibrate_main(["init", "--gpu", "H100", "--out", str(tmp_path), "--force"]) == 2
    assert _one_line(capsys).endswith(f"{tmp_path}: is a folder; give a file path")
    assert list(tmp_path.iterdir()) == []


def test_calibrate_fit_out_folder(tmp_path, capsys):
    raw = ROOT / "profiles" / "raw" / "nccl_h100_4gpu_1node_allreduce_snellius.csv"
    assert calibrate_main(["fit", str(raw), "--out", str(tmp_path), "--gpu", "H100"]) == 2
    assert "is a folder" in _one_line(capsys)


def test_atomic_write_is_0644_and_refuses_folders(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "sub" / "p.json"
        write_profile(target, BASE)
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        assert load_profile(target).gpu_name == BASE["gpu"]["name"]
    finally:
        os.umask(old)
    with pytest.raises(InputError, match="is a folder"):
        atomic_write_text(tmp_path, "x")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        atomic_write_text(blocker / "p.json", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "sub"]


# ---------------------------------------------------------------- 6. dtype without a peak rate

def test_bf16_on_v100_is_one_line(capsys):
    argv = ["plan", "--profile", str(ROOT / "profiles"), "--model", "llama3-70b",
            "--cluster", str(ROOT / "examples/clusters/v100-16x4.yaml"), "--time-limit", "5"]
    assert solver_main(argv) == 2
    line = _one_line(capsys)
    assert "profiles/v100.json: gpu.compute_capability: V100-SXM2-16GB (SM 7.0) cannot run bf16" in line
    assert line.endswith("use --dtype fp16")


def test_fp8_without_fp8_rate_falls_back_to_16_bit():
    v100 = load_profile(ROOT / "profiles" / "v100.json")
    assert v100.peak_flops("fp8") == v100.peak_flops("fp16") == 125e12
    a100 = load_profile(ROOT / "profiles" / "a100.json")
    assert a100.peak_flops("fp8") == a100.peak_flops("bf16")
    with pytest.raises(InputError, match="gpu.peak_tflops: no bf16 rate"):
        v100.peak_flops("bf16")


# ---------------------------------------------------------------- 9. one formula for fit and prediction

def test_fit_rows_use_the_solver_formulas():
    from calibrate.memory import fit as mem_fit
    from solver.cost.compute import prefill_layer_flops
    from solver.cost.activation import activation_terms
    from solver.inputs.model import load_model
    m = load_model("llama3-8b")
    r = {"hidden": m.hidden_size, "heads": m.num_heads, "kv_heads": m.num_kv_heads, "head_dim": m.head_dim,
         "ffn": m.ffn_size, "gated_mlp": 1, "tp": 2, "layers": 3, "batch": 4, "seq": 512, "dtype_bytes": 2}
    assert mem_fit.prefill_flops(r) == 3 * prefill_layer_flops(m, 2, 4, 512)
    assert mem_fit.activation_features(r) == activation_terms(m, 2, 4, 512, 2)
    assert math.isclose(mem_fit.activation_features(r)["c_f_t"], 4 * 512 * 2 * m.ffn_size / 2)



@pytest.mark.parametrize("cell", ["inf", "nan"])
def test_validate_csv_rejects_non_finite(write, capsys, cell):
    header = ("model,gpu,nodes,gpus_used_per_node,interconnect,nic_gbps,tp,pp,input_len,output_len,"
              "num_requests,measured_tok_s,source\n")
    path = write("m.csv", header + f"llama3-8b,SYN,1,2,nvlink,,2,1,1000,100,8,{cell},lab\n")
    assert solver_main(["validate", str(path), "--profile", str(FIX)]) == 2
    assert "column measured_tok_s" in _one_line(capsys)
