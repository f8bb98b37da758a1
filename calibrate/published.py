"""Datasheet numbers for `published` fallback profiles (design.md section 3).

Each entry names its source. Memory is the usable total nvidia-smi reports (MiB / 1024),
as collected in modal-labs/modal-client PR #2797 ("nvidia quotes GB on their GPUs not GiB"),
where available; otherwise the datasheet capacity.
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
    }
