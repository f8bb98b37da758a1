"""Datasheet numbers for `published` fallback profiles (design.md section 3).

Each entry names its source. Memory is the usable total nvidia-smi reports (MiB / 1024),
as collected in modal-labs/modal-client PR #2797 ("nvidia quotes GB on their GPUs not GiB"),
where available; otherwise the datasheet capacity. ``memory_cuda_total_gib`` is the smaller
total CUDA reports, which vLLM sizes its budget by (CUDA_TOTAL_GIB below).
"""

from __future__ import annotations

_NVSMI = "nvidia-smi total as listed in modal-labs/modal-client PR #2797"
_CUDA_GPUS = "NVIDIA CUDA GPUs compute capability list, https://developer.nvidia.com/cuda-gpus"

# name -> spec. tflops: dense tensor-core FLOP/s without sparsity, per dtype.
GPUS: dict[str, dict] = {
    "A100-SXM4-80GB": {
        "aliases": ["A100-80GB", "A100-SXM-80GB", "A100 80GB", "NVIDIA A100-SXM4-80GB", "a100"],
        "memory_gib": (80.0, f"81920 MiB, {_NVSMI}"),
        "interconnect": "nvlink",
        "intra_node_gbps": (300.0, "NVIDIA A100 datasheet: NVLink3 12 links x 25 GB/s per direction"),
        "tflops": {"bf16": 312.0, "fp16": 312.0},
        "tflops_ref": "NVIDIA A100 datasheet (dense, no sparsity)",
        "hbm_gbps": (2039.0, "NVIDIA A100 80GB SXM datasheet, HBM2e"),
        "compute_capability": (8.0, _CUDA_GPUS + ": A100 8.0"),
    },
    "A100-SXM4-40GB": {
        "aliases": ["A100-40GB", "A100 40GB", "NVIDIA A100-SXM4-40GB"],
        "memory_gib": (40.0, f"40960 MiB, {_NVSMI}"),
        "interconnect": "nvlink",
        "intra_node_gbps": (300.0, "NVIDIA A100 datasheet: NVLink3 12 links x 25 GB/s per direction"),
        "tflops": {"bf16": 312.0, "fp16": 312.0},
        "tflops_ref": "NVIDIA A100 datasheet (dense, no sparsity)",
        "hbm_gbps": (1555.0, "NVIDIA A100 40GB SXM datasheet, HBM2"),
        "compute_capability": (8.0, _CUDA_GPUS + ": A100 8.0"),
    },
    "A100-PCIE-80GB": {
        "aliases": ["A100-80GB-PCIe", "A100 80GB PCIe", "NVIDIA A100 80GB PCIe", "a100-pcie"],
        "memory_gib": (80.0, "NVIDIA A100 datasheet: 80 GB HBM2e (capacity; nvidia-smi total not pinned here)"),
        "interconnect": "pcie",
        "intra_node_gbps": (31.5, "PCI-SIG: PCIe 4.0 x16 ~31.5 GB/s per direction (no NVLink bridge assumed)"),
        "tflops": {"bf16": 312.0, "fp16": 312.0},
        "tflops_ref": "NVIDIA A100 datasheet (dense, no sparsity; PCIe and SXM list the same peak)",
        "hbm_gbps": (1935.0, "NVIDIA A100 80GB PCIe datasheet, HBM2e"),
        "compute_capability": (8.0, _CUDA_GPUS + ": A100 8.0"),
    },
    "H100-SXM-80GB": {
        "aliases": ["H100", "H100-80GB", "H100-SXM", "H100 80GB HBM3", "NVIDIA H100 80GB HBM3", "h100"],
        "memory_gib": (81559 / 1024, f"81559 MiB, {_NVSMI}"),
        "interconnect": "nvlink",
        "intra_node_gbps": (450.0, "NVIDIA H100 datasheet: NVLink4 18 links, 900 GB/s total = 450 per direction"),
        "tflops": {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0},
        "tflops_ref": "NVIDIA H100 SXM datasheet (dense, no sparsity)",
        "hbm_gbps": (3350.0, "NVIDIA H100 SXM datasheet, HBM3"),
        "compute_capability": (9.0, _CUDA_GPUS + ": H100 9.0"),
    },
    "H200-SXM-141GB": {
        "aliases": ["H200", "H200-SXM", "H200 141GB", "NVIDIA H200", "h200"],
        "memory_gib": (141e9 / 2**30, "NVIDIA H200 datasheet: 141 GB HBM3e (141e9 bytes = 131.3 GiB)"),
        "interconnect": "nvlink",
        "intra_node_gbps": (450.0, "NVIDIA H200 datasheet: NVLink4 900 GB/s total = 450 per direction"),
        "tflops": {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0},
        "tflops_ref": "NVIDIA H200 SXM datasheet (dense, no sparsity)",
        "hbm_gbps": (4800.0, "NVIDIA H200 SXM datasheet, HBM3e 4.8 TB/s"),
        "compute_capability": (9.0, _CUDA_GPUS + ": H200 9.0"),
    },
    "V100-SXM2-16GB": {
        "aliases": ["V100", "V100-16GB", "Tesla V100-SXM2-16GB", "v100"],
        "memory_gib": (16.0, "NVIDIA V100 datasheet: 16 GB HBM2, i.e. 16 GiB physical; unlike the other "
                             "entries not the usable total nvidia-smi reports, which is lower (16160 MiB = "
                             "15.78 GiB in public nvidia-smi logs, none pinned as a citable source here): "
                             "may overstate usable memory by ~1.4%"),
        "interconnect": "nvlink",
        "intra_node_gbps": (150.0, "V100 datasheet: NVLink2 6 links x 25 GB/s per direction in total; "
                                   "DGX-1 pairs have 1-2 links, some none (design.md section 3)"),
        "tflops": {"fp16": 125.0},
        "tflops_ref": "NVIDIA V100 datasheet: fp16 tensor; no bf16",
        "hbm_gbps": (900.0, "NVIDIA V100 SXM2 datasheet, HBM2"),
        "compute_capability": (7.0, _CUDA_GPUS + ": Tesla V100 7.0"),
    },
    "L40S": {
        "aliases": ["L40S-48GB", "NVIDIA L40S", "l40s"],
        "memory_gib": (46068 / 1024, f"46068 MiB, {_NVSMI}"),
        "interconnect": "pcie",
        "intra_node_gbps": (31.5, "PCI-SIG: PCIe 4.0 x16 ~31.5 GB/s per direction; L40S has no NVLink"),
        "tflops": {"bf16": 362.0, "fp16": 362.0, "fp8": 733.0},
        "tflops_ref": "NVIDIA L40S datasheet (dense, no sparsity)",
        "hbm_gbps": (864.0, "NVIDIA L40S datasheet, GDDR6"),
        "compute_capability": (8.9, _CUDA_GPUS + ": L40S 8.9"),
    },
    "A10G": {
        "aliases": ["A10G-24GB", "NVIDIA A10G", "a10g"],
        "memory_gib": (23028 / 1024, "23028 MiB: the A10's nvidia-smi total as listed in modal-labs/modal-client "
                                     "PR #2797 (24 GB GDDR6); the A10G has the same 24 GB"),
        "interconnect": "pcie",
        "intra_node_gbps": (31.5, "PCI-SIG: PCIe 4.0 x16 ~31.5 GB/s per direction; A10G has no NVLink"),
        # NVIDIA publishes no tensor-core figure for the A10G (an AWS-only part, g5 instances).
        "tflops": {"bf16": 125.0, "fp16": 125.0},
        "tflops_source": "default",
        "tflops_ref": "assumption: taken equal to the A10's published 125 TFLOP/s dense fp16/bf16 tensor "
                      "(NVIDIA A10 datasheet; same GA102 die, 1710 vs 1695 MHz boost); NVIDIA publishes "
                      "none for the A10G and design.md expects it lower: an upper bound, calibrate it",
        "hbm_gbps": (600.0, "AWS EC2 G5 / NVIDIA A10 datasheet: 24 GB GDDR6, 600 GB/s"),
        "compute_capability": (8.6, _CUDA_GPUS + ": A10G 8.6"),
    },
}


# The total CUDA reports (torch.cuda.mem_get_info, printed by vLLM as ``total_gpu_memory``), GiB:
# what vLLM multiplies by gpu_memory_utilization, below nvidia-smi's total (the driver keeps the
# rest). (value, ref) where a public vLLM log gives it; it varies by ~0.1 GiB with the driver.
CUDA_TOTAL_GIB = {
    "A100-SXM4-80GB": (79.26, "vLLM 0.10.1.1 on A100 80GB at two gpu_memory_utilization values of one setup "
                              "(../shared/data/vllm_memory/logs.csv lines 17/18 and 19/20, dennislee22/vLLM-"
                              "benchmarking b474d1e): KV difference / utilization difference = (24.83 - 5.01) / "
                              "0.25 = 79.28 and (31.83 - 12.02) / 0.25 = 79.24 GiB; mean 79.26"),
    "H100-SXM-80GB": (79.22, "vLLM log in vllm-project/vllm PR #10511 ('total_gpu_memory 79.22GiB', Llama-3-8B "
                             "TP1 and TP2); the same author gives H100-80G with 79.22 GiB in PR #12126. SXM or "
                             "PCIe is not stated (both carry 80 GB HBM); other public H100 logs print 79.11-79.18 "
                             "GiB with other drivers (vllm#27508 OOM message: 79.11 GiB; llm-d/llm-d-benchmark "
                             "config_explorer: 79.18, data/vllm_memory_extra)"),
    "L40S": (44.31, "vLLM 0.7.2 start-up log on an L40S, vllm-project/vllm#15196: 'total_gpu_memory (44.31GiB)'"),
    "A10G": (22.06, "PyTorch OOM message of a Qwen2.5-14B TP1 vLLM run on an A10G (g5): 'GPU 0 has a total capacity "
                    "of 22.06 GiB', ddiiwoong/newblog blog/2026-08-23-llm-advanced-optimization.md @00205ba "
                    "(data/vllm_memory_extra, lines 15-20)"),
}
# smi - CUDA where both totals are cited for the GPU itself: 0.74 (A100), 0.43 (H100), 0.68
# (L40S) GiB (the A10G's nvidia-smi figure is the A10's). A GPU without a sourced total gets
# nvidia-smi's minus their mean as a `default`, ranging from minus the largest gap up to
# nvidia-smi's total itself (no reservation: the bound that cannot be passed).
_GAPS = [GPUS[g]["memory_gib"][0] - CUDA_TOTAL_GIB[g][0] for g in ("A100-SXM4-80GB", "H100-SXM-80GB", "L40S")]
_GAP_REF = (f"nvidia-smi's total minus the mean smi-minus-CUDA gap of the sourced profiles ({min(_GAPS):.2f}-"
            f"{max(_GAPS):.2f} GiB: A100 80GB, H100, L40S; calibrate/published.py CUDA_TOTAL_GIB); range: minus "
            f"the largest gap up to nvidia-smi's total")
# H200: nvidia-smi prints 143,771 MiB (gpu.memory_gib keeps the datasheet's 141e9 bytes = 131.3 GiB).
_H200_SMI_GIB = 143771 / 1024


def _gap_default(name: str, note: str) -> tuple:
    smi = GPUS[name]["memory_gib"][0]
    return smi - sum(_GAPS) / len(_GAPS), (smi - max(_GAPS), smi), f"no citable log pinned: {_GAP_REF} ({note})"


CUDA_TOTAL_DEFAULT = {
    "V100-SXM2-16GB": _gap_default("V100-SXM2-16GB", "16 GiB here is the physical size, above nvidia-smi's. PyTorch "
                                                     "OOM messages on 16 GB GPUs commonly print 15.77 GiB, inside "
                                                     "the range"),
    "H200-SXM-141GB": (139.80, (_H200_SMI_GIB - max(_GAPS), _H200_SMI_GIB - min(_GAPS)),
                       "not pinned to a citable URL, hence default: public vLLM logs on 8x H200 print "
                       "'total_gpu_memory (139.81GiB)' beside nvidia-smi's 143,771 MiB, and PyTorch OOM messages "
                       "on H200 'total capacity of 139.80 GiB'; range: 143,771 MiB minus the sourced profiles' "
                       "smi-minus-CUDA gaps (calibrate/published.py CUDA_TOTAL_GIB)"),
}


def cuda_total_record(name: str) -> dict | None:
    """``gpu.memory_cuda_total_gib`` of a datasheet GPU: published where a vLLM log gives it,
    else the documented default above; None for GPUs in neither table."""
    if name in CUDA_TOTAL_GIB:
        return _pub(*CUDA_TOTAL_GIB[name])
    if name in CUDA_TOTAL_DEFAULT:
        v, (lo, hi), ref = CUDA_TOTAL_DEFAULT[name]
        return {"value": round(v, 4), "source": "default", "ref": ref, "plausible": [round(lo, 4), round(hi, 4)]}
    return None


def find(name: str) -> tuple[str, dict] | None:
    from solver.inputs.profile_records import normalize_gpu_name
    key = normalize_gpu_name(name)
    for gpu, spec in GPUS.items():
        if key in {normalize_gpu_name(n) for n in [gpu, *spec["aliases"]]}:
            return gpu, spec
    return None


def _pub(value: float, ref: str) -> dict:
    return {"value": value, "source": "published", "ref": ref}


def gpu_block(name: str, spec: dict) -> dict:
    """The ``gpu`` section of a profile from the datasheet table."""
    return {
        "name": name,
        "aliases": list(spec["aliases"]),
        "memory_gib": _pub(*spec["memory_gib"]),
        "interconnect": spec["interconnect"],
        "intra_node_gbps": _pub(*spec["intra_node_gbps"]),
        "peak_tflops": {dt: {"value": v, "source": spec.get("tflops_source", "published"), "ref": spec["tflops_ref"]}
                        for dt, v in spec["tflops"].items()},
        "hbm_gbps": _pub(*spec["hbm_gbps"]),
        "compute_capability": _pub(*spec["compute_capability"]),
        **({"memory_cuda_total_gib": rec} if (rec := cuda_total_record(name)) else {}),
    }
