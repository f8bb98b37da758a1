"""Summarise a ``torch.cuda.memory._snapshot()`` dict: which tensors are live at the peak.

Pure Python (no torch), so it runs on a saved snapshot anywhere. The snapshot format is
the one ``torch.cuda.memory._record_memory_history`` produces (read by
``torch/cuda/_memory_viz.py``): ``segments`` (blocks live when the snapshot was taken) and
``device_traces[device]``, a list of events ``{"action", "addr", "size", "frames"}`` with
actions ``alloc``, ``free_requested``, ``free_completed``, ``segment_alloc``, ... .

Replaying the trace: ``alloc`` adds a block, ``free_completed`` removes it (the caching
allocator decrements ``memory_allocated`` there, not at ``free_requested``). Blocks freed
in the trace but never allocated in it existed before recording began (weights, inputs):
they count as the starting level, so ``peak_bytes_above_start`` matches
``max_memory_allocated() - memory_allocated()`` taken when recording started.
"""

from __future__ import annotations

# Frames inside these paths say nothing about *which* tensor it is; skip to the caller.
_LIBRARY_MARKERS = ("/torch/", "\\torch\\", "/site-packages/transformers/", "<frozen", "??", "/calibrate/memory/probe")


def frame_label(frames: list[dict] | None) -> str:
    """``file.py:line:function`` of the first frame outside torch/transformers internals
    (the model code line that made the tensor); the first frame if all are internal."""
    frames = frames or []
    for f in frames:
        name = str(f.get("filename", ""))
        if name and not any(m in name for m in _LIBRARY_MARKERS) and not name.endswith(".cpp"):
            return f"{name.rsplit('/', 1)[-1]}:{f.get('line', '?')}:{f.get('name', '?')}"
    if frames:
        f = frames[0]
        return f"{str(f.get('filename', '?')).rsplit('/', 1)[-1]}:{f.get('line', '?')}:{f.get('name', '?')}"
    return "(no stack)"


def summarize(snapshot: dict, device: int = 0, top: int = 8) -> dict:
    """Peak of live bytes over the trace, and the live blocks at that moment grouped by
    allocating frame (largest first). Sizes are the allocator's block sizes (rounded)."""
    traces = snapshot.get("device_traces") or []
    events = traces[device] if device < len(traces) else []
    live: dict[int, tuple[int, str]] = {}
    cur = peak = 0
    peak_live: dict[int, tuple[int, str]] = {}
    peak_index = -1
    preexisting = 0
    for i, ev in enumerate(events):
        action, addr, size = ev.get("action"), ev.get("addr"), int(ev.get("size", 0))
        if action == "alloc":
            live[addr] = (size, frame_label(ev.get("frames")))
            cur += size
            if cur > peak:
                peak, peak_index, peak_live = cur, i, dict(live)
        elif action == "free_completed":
            if addr in live:
                cur -= live.pop(addr)[0]
            else:  # allocated before recording started
                preexisting += size
                cur -= size
    groups: dict[str, list[int]] = {}
    for size, label in peak_live.values():
        g = groups.setdefault(label, [0, 0])
        g[0] += size
        g[1] += 1
    ranked = sorted(groups.items(), key=lambda kv: -kv[1][0])
    return {
        "events": len(events),
        "peak_bytes_above_start": peak,
        "peak_event_index": peak_index,
        "live_blocks_at_peak": len(peak_live),
        "freed_preexisting_bytes": preexisting,
        "segments_reserved_bytes": sum(int(s.get("total_size", 0)) for s in snapshot.get("segments", [])
                                       if s.get("device", device) == device),
        "top": [{"frame": k, "bytes": v[0], "blocks": v[1]} for k, v in ranked[:top]],
        "other_bytes": sum(v[0] for _, v in ranked[top:]),
    }


def compact(summary: dict, n: int = 3) -> str:
    """One CSV cell: ``frame=MiB;frame=MiB`` for the ``n`` largest groups at the peak."""
    return ";".join(f"{t['frame']}={t['bytes'] / 2**20:.1f}MiB" for t in summary.get("top", [])[:n])
