"""Workload: an offline batch of requests, and the dtypes it runs in."""

from __future__ import annotations

from dataclasses import dataclass

from solver.errors import InputError
from solver.inputs.quant import SCHEME_NAMES, WeightFormat, weight_format
from solver.units import DTYPE_BYTES

WEIGHT_DTYPES = SCHEME_NAMES  # weight schemes (solver.inputs.quant.SCHEMES)
KV_DTYPES = ("fp16", "bf16", "fp8")


@dataclass(frozen=True)
class Workload:
    batch: int = 1
    prompt_len: int = 1024
    output_len: int = 128
    dtype: str = "bf16"  # weight scheme (solver.inputs.quant.SCHEMES)
    kv_dtype: str = ""  # "" = follow the activation dtype (vLLM's kv_cache_dtype=auto)
    # The checkpoint's own format (its unquantized modules, group sizes), when the scheme
    # comes from a config; None: the scheme's defaults.
    fmt: WeightFormat | None = None
    # vLLM --enable-expert-parallel: each MoE layer places E/t whole experts per rank of the
    # TP group and exchanges tokens with two all-to-alls instead of one all-reduce.
    expert_parallel: bool = False
    # Tokens (prompt + output) of the longest request when lengths vary (a --lengths
    # histogram); 0: every request is prompt_len + output_len.
    longest_len: int = 0

    def __post_init__(self):
        for name in ("batch", "prompt_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError("", f"--{name.replace('_', '-')}", f"must be an integer >= 1, got {v!r}")
        if isinstance(self.output_len, bool) or not isinstance(self.output_len, int) or self.output_len < 0:
            raise InputError("", "--output-len", f"must be an integer >= 0, got {self.output_len!r}")
        if isinstance(self.longest_len, bool) or not isinstance(self.longest_len, int) or self.longest_len < 0:
            raise InputError("", "--lengths", f"longest request must be an integer >= 0 tokens, got {self.longest_len!r}")
        if self.dtype not in WEIGHT_DTYPES:
            raise InputError("", "--dtype", f"must be one of {', '.join(WEIGHT_DTYPES)}, got {self.dtype!r}")
        if self.kv_dtype and self.kv_dtype not in KV_DTYPES:
            raise InputError("", "--kv-dtype", f"must be one of {', '.join(KV_DTYPES)}, got {self.kv_dtype!r}")

    @property
    def act_dtype(self) -> str:
        """Activations run in 16-bit whatever the weights (quantized kernels upcast or
        accumulate in 16-bit); bf16 is what vLLM uses for fp8 checkpoints, fp16 for AWQ/GPTQ."""
        return self.weight_bytes.act_dtype

    @property
    def weight_bytes(self) -> WeightFormat:
        """Bytes per parameter of each tensor group (``WeightFormat.bytes_for``)."""
        return self.fmt if self.fmt is not None else weight_format(self.dtype)

    @property
    def act_bytes(self) -> int:
        return DTYPE_BYTES[self.act_dtype]

    @property
    def kv_bytes(self) -> int:
        return DTYPE_BYTES[self.kv_dtype or self.act_dtype]

    @property
    def context_len(self) -> int:
        """Tokens a sequence holds in KV cache at its end."""
        return self.prompt_len + self.output_len

    @property
    def max_len(self) -> int:
        """Longest sequence the engine must admit (vLLM's max_model_len unless set): the
        longest request of a length histogram, else prompt + output."""
        return self.longest_len or self.context_len
