"""Import the shared H100 measurements (``shared/data/h100``) into the raw CSV format.

The two shared CSVs were produced by the probe scripts in ``shared/data/h100/probes``
(README there). They measure what ``scripts/profile_memory.py`` measures, so after this
conversion the same fit (``calibrate fit-memory``) consumes them. What maps to what:

- ``native_layer_prefill.csv`` (one hand-written TP-sharded layer, no GQA):
  ``peak_bytes`` = peak_above_inputs_gib (max_memory_allocated during one forward minus
  memory_allocated before it: weights and the input hidden states excluded; the layer's
  output and its K/V included); ``time_ms`` = forward_ms (mean of 10, CUDA events).
- ``transformers_llama_prefill.csv`` (HF LlamaModel body, Llama-3-8B shapes, 1 or 4 layers):
  ``peak_bytes`` = peak_prefill_above_weights_gib (embedding output, all layers, final norm;
  includes the KV cache created and the output hidden states); ``time_ms`` = prefill_ms (one
  synchronized wall-clock forward). decode_step_ms is not imported: the README says it is
  launch/host-bound, so it says nothing about HBM efficiency.

GiB values in the shared files have 6 decimals (1e-6 GiB ~ 1 KiB): negligible next to peaks
of 0.1-21 GiB. ``kv_bytes`` is recomputed exactly from the shapes and checked against the file.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from calibrate.memory.fit import prefill_flops
from solver.errors import InputError
from solver.inputs.fields import read_text
from solver.units import GIB

DEVICE = "NVIDIA H100 80GB HBM3"
DATASET_REF = ("shared/data/h100 (measured 2026-11-24 on one NVIDIA H100 80GB HBM3 SXM, torch 2.11.0+cu130, "
               "CUDA 13.0, fp16, torch.inference_mode, TP emulated by sharding heads/kv heads/ffn by t; "
               "probes/native_layer_probe.py and probes/transformers_probe.py)")
NATIVE_CSV = "native_layer_prefill.csv"
HF_CSV = "transformers_llama_prefill.csv"
_DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}


def _read(path: Path, needed: tuple[str, ...]) -> list[dict]:
    rows = list(csv.DictReader(read_text(path).splitlines()))
    for c in needed:
        if not rows or c not in rows[0]:
            raise InputError(str(path), c, "missing column; is this the shared/data/h100 file?")
    return rows


class _Cells:
    """Typed cells of one CSV row; a bad cell is a one-line error naming file:line and column."""

    def __init__(self, row: dict, where: str):
        self.row, self.where = row, where

    def text(self, name: str) -> str:
        v = (self.row.get(name) or "").strip()
        if not v:
            raise InputError(self.where, name, "missing or empty")
        return v

    def int(self, name: str, lo: int = 1) -> int:
        v = self.text(name)
        try:
            n = int(v)
        except ValueError:
            raise InputError(self.where, name, f"not a whole number: {v!r}") from None
        if n < lo:
            raise InputError(self.where, name, f"must be >= {lo}, got {n}")
        return n

    def float(self, name: str, positive: bool = False) -> float:
        v = self.text(name)
        try:
            x = float(v)
        except ValueError:
            raise InputError(self.where, name, f"not a number: {v!r}") from None
        if not math.isfinite(x) or x < 0 or (positive and x == 0):
            raise InputError(self.where, name, f"must be a finite number {'>' if positive else '>='} 0, got {v!r}")
        return x

    def dtype(self) -> tuple[str, int]:
        v = self.text("dtype")
        if v not in _DTYPE_BYTES:
            raise InputError(self.where, "dtype", f"one of {', '.join(_DTYPE_BYTES)}, got {v!r}")
        return v, _DTYPE_BYTES[v]


def _kv_bytes(batch: int, seq: int, kv_heads: int, head_dim: int, tp: int, layers: int, p: int,
              reported_gib: float, where: str) -> float:
    """2 (K and V) x tokens x local kv heads x head_dim x p per layer."""
    kv = 2 * batch * seq * max(1, kv_heads // tp) * head_dim * p * layers
    if abs(kv / GIB - reported_gib) > 2e-6:
        raise InputError(where, "kv_gib", f"file says {reported_gib}, shapes give {kv / GIB:.6f}")
    return kv


def native_rows(path: Path) -> list[dict]:
    out = []
    for i, r in enumerate(_read(path, ("runtime", "peak_above_inputs_gib", "kv_gib", "forward_ms")), start=2):
        c = _Cells(r, f"{path}:{i}")
        b, s, h, a = c.int("batch"), c.int("seq"), c.int("hidden"), c.int("heads")
        t, (dt, p) = c.int("tp"), c.dtype()
        row = {
            "runtime": c.text("runtime"), "device": DEVICE, "dtype": dt, "dtype_bytes": p, "phase": "prefill",
            "batch": b, "seq": s, "hidden": h, "heads": a, "kv_heads": c.int("kv_heads"), "head_dim": h // a,
            "ffn": c.int("ffn"), "gated_mlp": c.int("gated_mlp", 0), "tp": t, "layers": 1,
            "weights_bytes": round(c.float("weights_gib") * GIB),
            "kv_bytes": _kv_bytes(b, s, c.int("kv_heads"), h // a, t, 1, p, c.float("kv_gib"), f"{path}:{i}"),
            "peak_bytes": round(c.float("peak_above_inputs_gib") * GIB), "retained_bytes": None,
            "reserved_slack_bytes": None, "nontorch_bytes": None,
            "time_ms": c.float("forward_ms", positive=True), "time_method": "cuda_events_mean_of_10",
            "snapshot_top": "", "source": "measured", "ref": f"{DATASET_REF}: {NATIVE_CSV} line {i}",
        }
        row["flops"] = round(prefill_flops(row))
        # the probe's own FLOP count (same formula) must agree with ours to its 4 digits
        achieved = row["flops"] / (row["time_ms"] * 1e-3) / 1e12
        if abs(achieved / c.float("achieved_tflops", positive=True) - 1) > 2e-3:
            raise InputError(f"{path}:{i}", "achieved_tflops", f"file {r['achieved_tflops']}, ours {achieved:.1f}")
        out.append(row)
    return out


def hf_rows(path: Path) -> list[dict]:
    out = []
    need = ("runtime", "layers", "peak_prefill_above_weights_gib", "retained_after_prefill_gib", "prefill_ms")
    for i, r in enumerate(_read(path, need), start=2):
        c = _Cells(r, f"{path}:{i}")
        b, s, h, a = c.int("batch"), c.int("seq"), c.int("hidden"), c.int("heads")
        t, L, (dt, p) = c.int("tp"), c.int("layers"), c.dtype()
        # the probe builds LlamaConfig with heads/t, kv_heads/t, ffn/t: the shard of rank 0
        row = {
            "runtime": c.text("runtime"), "device": DEVICE, "dtype": dt, "dtype_bytes": p, "phase": "prefill",
            "batch": b, "seq": s, "hidden": h, "heads": a, "kv_heads": c.int("kv_heads"), "head_dim": h // a,
            "ffn": c.int("ffn"), "gated_mlp": 1, "tp": t, "layers": L,
            "weights_bytes": round(c.float("weights_gib") * GIB),
            "kv_bytes": _kv_bytes(b, s, c.int("kv_heads"), h // a, t, L, p, c.float("kv_gib"), f"{path}:{i}"),
            "peak_bytes": round(c.float("peak_prefill_above_weights_gib") * GIB),
            "retained_bytes": round(c.float("retained_after_prefill_gib") * GIB),
            "reserved_slack_bytes": None, "nontorch_bytes": None,
            "time_ms": c.float("prefill_ms", positive=True), "time_method": "wall_clock_once_synchronized",
            "snapshot_top": "", "source": "measured",
            "ref": f"{DATASET_REF}: {HF_CSV} line {i} ({c.text('model')} shapes)",
        }
        row["flops"] = round(prefill_flops(row))
        out.append(row)
    return out


def import_shared(folder: str | Path) -> dict[str, list[dict]]:
    """{runtime: rows} for both shared CSVs in ``folder``."""
    d = Path(folder)
    if not (d / NATIVE_CSV).exists() or not (d / HF_CSV).exists():
        raise InputError(str(d), "", f"expected {NATIVE_CSV} and {HF_CSV} (the shared H100 data set)")
    by_runtime: dict[str, list[dict]] = {}
    for row in native_rows(d / NATIVE_CSV) + hf_rows(d / HF_CSV):
        by_runtime.setdefault(row["runtime"], []).append(row)
    return by_runtime
