"""Snapshot summariser on a saved sample, and the CPU live-tensor counter."""

import json
from pathlib import Path

import pytest

from calibrate.memory.snapshot import compact, frame_label, summarize

SAMPLE = Path(__file__).parent / "fixtures/cuda_snapshot_sample.json"
MIB = 2**20


def test_summary_of_sample():
    """Replay (MiB): -1 (pre-recording block freed), +4, +12 (=15), -4, +4, +4 -> peak 19 above
    the start, live then: 12 (model.py:11) and 4 + 4 (model.py:14, two blocks)."""
    s = summarize(json.loads(SAMPLE.read_text()))
    assert s["peak_bytes_above_start"] == 19 * MIB
    assert s["freed_preexisting_bytes"] == 1 * MIB
    assert s["live_blocks_at_peak"] == 3
    assert s["top"][0] == {"frame": "model.py:11:forward", "bytes": 12 * MIB, "blocks": 1}
    assert s["top"][1] == {"frame": "model.py:14:forward", "bytes": 8 * MIB, "blocks": 2}
    assert s["segments_reserved_bytes"] == 20 * MIB
    assert compact(s) == "model.py:11:forward=12.0MiB;model.py:14:forward=8.0MiB"


def test_frame_label_skips_torch_internals():
    frames = [{"filename": "/x/site-packages/torch/nn/functional.py", "line": 1, "name": "silu"},
              {"filename": "/work/m.py", "line": 7, "name": "mlp"}]
    assert frame_label(frames) == "m.py:7:mlp"
    assert frame_label([]) == "(no stack)"


def test_live_tensor_counter_counts_gate_product():
    """fp32 x[64,128] @ w[128,512] -> y (64*512*4 = 128 KiB); silu(y) * y holds y, silu(y) and
    the product at once: peak 3 x 128 KiB = 393,216 B; after del, nothing is live."""
    torch = pytest.importorskip("torch")
    from calibrate.memory.probe import LiveTensors
    x, w = torch.randn(64, 128), torch.randn(128, 512)
    with torch.inference_mode(), LiveTensors() as live:
        y = x @ w
        z = torch.nn.functional.silu(y) * y
        del y
        assert live.current == 131072
        del z
    assert live.peak == 393216 and live.current == 0
