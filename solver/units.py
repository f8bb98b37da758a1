"""Unit constants and parsers. Bandwidth is GB/s (1e9 B/s) per direction everywhere."""

from __future__ import annotations

import re

GIB = 2**30
MIB = 2**20
KIB = 2**10
GB = 1e9  # bytes in a GB; *_gbps values are multiplied by this once to get bytes/s

# Bytes per element for the dtypes the planner accepts.
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "B": 1, "K": KIB, "M": MIB, "G": GIB, "T": 2**40}


def parse_size(text: str) -> int:
    """Parse ``64K``, ``1M``, ``1G``, ``4096`` or ``2MiB`` into bytes (binary multiples,
    as nccl-tests' ``-b/-e`` flags do). Raises ``ValueError`` with a readable message."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 4096, 64K, 1M, 1G)")
    num, unit = m.group(1), (m.group(2) or "").upper()
    mult = _SIZE_MULT[unit[:1] if unit not in ("", "B") else unit]
    return int(float(num) * mult)


def fmt_bytes(n: float) -> str:
    for unit, mult in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(n) >= mult:
            return f"{n / mult:.4g} {unit}"
    return f"{n:.0f} B"
