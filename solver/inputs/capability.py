"""Which weight scheme a GPU can run, from its profile's ``gpu.compute_capability``.

The rule table says, per scheme, the lowest CUDA compute capability (SM version) that runs
it natively and the lowest that runs it through a weight-only path (vLLM's Marlin kernels
dequantize the weights to 16 bits inside the GEMM), each with its source. The GPU's own
capability is a profile number (published from NVIDIA's CUDA GPUs list), never code.
"""

from __future__ import annotations

from dataclasses import dataclass

from solver.errors import InputError
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload

VLLM_QUANT = "vllm/model_executor/layers/quantization"


@dataclass(frozen=True)
class Rule:
    native_sm: float          # matmuls in the scheme's own dtype
    weight_only_sm: float     # weight-only fallback (16-bit matmuls); = native_sm if none
    source: str


RULES = {
    "fp16": Rule(7.0, 7.0, "fp16 tensor cores from Volta (SM 7.0): NVIDIA V100 whitepaper"),
    "bf16": Rule(8.0, 8.0, "bf16 from Ampere (SM 8.0): vLLM platforms/cuda.py refuses bfloat16 below "
                           "compute capability 8.0 ('use float16 instead')"),
    "fp8": Rule(8.9, 8.0, f"fp8 tensor cores from Ada/Hopper (SM 8.9); {VLLM_QUANT}/fp8.py "
                          "get_min_capability 80, weight-only via Marlin FP8 below 8.9"),
    "fp8-block": Rule(8.9, 8.0, f"as fp8 ({VLLM_QUANT}/fp8.py, block-wise scales)"),
    "int8": Rule(7.5, 7.5, f"{VLLM_QUANT}/compressed_tensors/schemes/compressed_tensors_w8a8_int8.py "
                           "get_min_capability 75"),
    "awq": Rule(7.5, 7.5, f"{VLLM_QUANT}/awq.py get_min_capability 75 (awq_marlin from 8.0)"),
    "gptq": Rule(6.0, 6.0, f"{VLLM_QUANT}/gptq.py get_min_capability 60 (gptq_marlin from 8.0)"),
    "w4a16": Rule(8.0, 8.0, f"{VLLM_QUANT}/compressed_tensors/schemes/compressed_tensors_wNa16.py "
                            "get_min_capability 80 (Marlin)"),
    "mxfp4": Rule(10.0, 8.0, f"fp4 tensor cores from Blackwell (SM 10.0); {VLLM_QUANT}/mxfp4.py "
                             "get_min_capability 80 (Marlin / Triton weight-only)"),
    "nvfp4": Rule(10.0, 8.0, f"fp4 tensor cores from Blackwell (SM 10.0); {VLLM_QUANT}/modelopt.py "
                             "ModelOptNvFp4LinearMethod falls back to Marlin FP4 (SM >= 8.0)"),
}


def support(profile: Profile, scheme: str) -> str:
    """``native``, ``weight_only`` or ``unknown`` (no capability in the profile: the
    profile's ``peak_tflops`` keys decide); InputError when the GPU cannot run it."""
    cc = profile.compute_capability
    rule = RULES.get(scheme)
    if rule is None:
        return "native"  # a plain bytes-per-weight format (library callers passing a number)
    if cc is None:
        return "unknown"
    if cc.value >= rule.native_sm:
        return "native"
    if cc.value >= rule.weight_only_sm:
        return "weight_only"
    raise InputError(profile.path, "gpu.compute_capability",
                     f"{profile.gpu_name} (SM {cc.value:.1f}) cannot run {scheme} weights: needs SM >= "
                     f"{rule.weight_only_sm:.1f} ({rule.source}){_hint(profile)}")


def _hint(profile: Profile) -> str:
    """The 16-bit dtypes the GPU runs, as a fix to suggest."""
    ok = [d for d in ("bf16", "fp16") if d in profile.peak_tflops and profile.compute_capability.value
          >= RULES[d].native_sm]
    return f"; use --dtype {' or --dtype '.join(ok)}" if ok else ""


def check_workload(profile: Profile, workload: Workload) -> None:
    """The GPU runs the workload's weight scheme and its activation dtype (an fp16-only GPU
    cannot run bf16 activations next to quantized weights either)."""
    support(profile, workload.weight_bytes.name)
    if workload.act_dtype != workload.weight_bytes.name:
        support(profile, workload.act_dtype)


def matmul_dtype(profile: Profile, workload: Workload) -> str:
    """The ``gpu.peak_tflops`` key the layer matmuls run at: the scheme's compute dtype when
    the GPU runs it natively (and the profile lists a rate for it), else the 16-bit
    activation dtype (weight-only kernels dequantize to it)."""
    fmt = workload.weight_bytes
    how = support(profile, fmt.name)
    if fmt.compute_dtype in profile.peak_tflops and how in ("native", "unknown"):
        return fmt.compute_dtype
    return workload.act_dtype
