"""Small pools, a tiny model and synthetic GPU variants for the planner tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from solver.inputs.cluster import parse_cluster
from solver.inputs.model import parse_hf_config
from solver.inputs.profile import parse_profile
from solver.inputs.workload import Workload

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Llama-3-8B's layer anatomy with 4 layers: 218M parameters (436 MB bf16) per layer,
# 525M (1.05 GB) per embedding matrix.
TINY = parse_hf_config({"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 4096,
                        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                        "vocab_size": 128256}, "tiny", name="tiny")
WORKLOAD = Workload(batch=8, prompt_len=512, output_len=128)


def syn_profile(name: str = "SYN-80", memory_gib: float = 80.0, hbm_gbps: float = 1000.0,
                tflops: float = 1000.0):
    """The synthetic fixture with its name, memory, HBM bandwidth and peak changed."""
    data = copy.deepcopy(json.loads((FIXTURES / "synthetic_profile.json").read_text()))
    data["gpu"]["name"], data["gpu"]["aliases"] = name, []
    data["gpu"]["memory_gib"]["value"] = memory_gib
    data["gpu"]["hbm_gbps"]["value"] = hbm_gbps
    for v in data["gpu"]["peak_tflops"].values():
        v["value"] = tflops
    return parse_profile(data, f"{name}.json")


def pool(*groups, inter_group_gbps=None, interconnect="nvlink"):
    """groups: (name, count, gpu, gpus_per_node, nic_gbps, usd_per_gpu_hour)."""
    data = {"name": "test", "node_groups": [
        {"name": n, "count": c, "gpu": gpu, "gpus_per_node": k, "interconnect": interconnect, "nic_gbps": nic,
         "usd_per_gpu_hour": usd} for n, c, gpu, k, nic, usd in groups]}
    if inter_group_gbps is not None:
        data["inter_group_gbps"] = inter_group_gbps
    return parse_cluster(data, "test.yaml")
