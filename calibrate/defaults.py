"""A fresh profile: the datasheet ``gpu`` block plus documented ``default`` assumptions.

Every default carries ``source: "default"`` and a ``ref`` saying what it assumes and where
the figure comes from, so ``solver`` can show which numbers are uncalibrated. Calibration
commands replace them with ``measured`` fits.
"""

from __future__ import annotations

import datetime as _dt

from calibrate import published
from solver.errors import InputError
from solver.inputs.profile import SCHEMA_VERSION


def _default(value: float, ref: str) -> dict:
    return {"value": value, "source": "default", "ref": ref}


NETWORK_DEFAULTS = {
    "intra_node_alpha_us": _default(10.0, "design.md section 4: NVLink latency in a node ~5-15 us"),
    "inter_node_alpha_us": _default(40.0, "design.md section 4: latency across nodes ~30-50 us"),
    "nic_efficiency": _default(0.8, "assumption: 80% of the nominal NIC rate for large point-to-point "
                                    "transfers; calibrate with scripts/profile_nccl.py (send_recv, inter_node)"),
    "intra_node_p2p_efficiency": _default(0.8, "assumption: 80% of the nominal GPU-GPU link for large "
                                               "point-to-point transfers; calibrate with send_recv intra_node"),
}

MEMORY_DEFAULTS = {
    "runtime_overhead_gib": _default(1.0, "assumption: CUDA context, kernel images and NCCL buffers take "
                                          "~0.5-1.5 GiB per GPU outside the caching allocator; measure with "
                                          "scripts/profile_memory.py (torch.cuda.mem_get_info)"),
    "fragmentation_frac": _default(0.05, "assumption: caching-allocator reserved-minus-allocated slack of 5% "
                                         "of the activation peak; measure with scripts/profile_memory.py"),
}

COMPUTE_DEFAULTS = {
    "prefill_efficiency": {"kind": "constant", "value": 0.5, "x_quantity": "layer_gflop", "source": "default",
                           "ref": "assumption: half of dense peak for prefill matmuls+attention; "
                                  "measured H100 layers reach 0.46-0.69 (shared/data/h100)"},
    "decode_efficiency": {"kind": "constant", "value": 0.7, "x_quantity": "bytes", "source": "default",
                          "ref": "assumption: decode streams weights+KV at 70% of nominal HBM bandwidth"},
}


SYNTHETIC_SUMMARY = ("SYNTHETIC test profile: its measured sections hold CPU/gloo or fixture numbers, "
                     "not GPU data; never plan with it")


def skeleton(gpu: str, command: str = "", synthetic: bool = False) -> dict:
    """A complete, loadable profile for ``gpu`` from published numbers and defaults;
    ``synthetic`` marks it (``provenance.synthetic``) as the only kind that takes test numbers."""
    found = published.find(gpu)
    if found is None:
        names = ", ".join(published.GPUS)
        raise InputError("--gpu", gpu, f"no datasheet entry; known: {names}")
    name, spec = found
    out = {
        "schema_version": SCHEMA_VERSION,
        "gpu": published.gpu_block(name, spec),
        "provenance": {
            "created": _dt.date.today().isoformat(),
            "command": command,
            "summary": "published datasheet numbers and documented defaults; nothing measured yet",
        },
        "collectives": [],
        "network": dict(NETWORK_DEFAULTS),
        "memory": dict(MEMORY_DEFAULTS),
        "compute": dict(COMPUTE_DEFAULTS),
    }
    if synthetic:
        out["provenance"].update(synthetic=True, summary=SYNTHETIC_SUMMARY)
    return out
