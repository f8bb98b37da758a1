"""Measure one grid point: prefill peak, retained K/V, allocator slack, non-torch memory,
a snapshot summary of the peak, prefill time and one decode step's time.

On CUDA (design.md section 5): ``reset_peak_memory_stats``, then
``max_memory_allocated() - memory_allocated()`` around one forward (after a warm-up),
``max_memory_reserved() - max_memory_allocated()`` for the allocator's slack,
``(total - free from mem_get_info) - memory_reserved()`` for memory outside torch (CUDA
context, kernel images, NCCL buffers: device-wide, so run on an idle GPU), and a
``_record_memory_history`` trace summarised by ``calibrate.memory.snapshot``. Times are CUDA-event
means. On CPU (``--dry-run``) the same row is produced with a live-tensor counter standing
in for the allocator and wall-clock times; it checks shapes and plumbing, and its rows are
``synthetic``.
"""

from __future__ import annotations

import time
import weakref

from calibrate.memory.layers import Shape, Stage, kv_tensor_bytes, local_heads
from calibrate.memory.phase_peaks import phase_peaks
from calibrate.memory.snapshot import compact, summarize

SHAPES = {
    "llama3-8b": Shape("llama3-8b", 4096, 14336, 32, 8, 128),
    "llama3-70b": Shape("llama3-70b", 8192, 28672, 64, 8, 128),
    # f/h = 2.7 and no GQA: separates c_h_t from c_f_t
    "mha-5120": Shape("mha-5120", 5120, 13824, 40, 40, 128),
    # a*d = 4096 != h = 3072 (Gemma-7B-like): separates c_q_t from c_h_t
    "wide-heads-3072": Shape("wide-heads-3072", 3072, 24576, 16, 16, 256),
    # CPU dry-run sizes: same structure, tiny numbers
    "tiny-a": Shape("tiny-a", 128, 352, 4, 2, 32, vocab=512),
    "tiny-b": Shape("tiny-b", 96, 384, 2, 2, 64, vocab=512),
}
TOKENS = [(1, 2048), (8, 512), (8, 2048), (32, 1024), (4, 4096)]
GRIDS = {
    "default": {"shapes": ["llama3-8b", "llama3-70b", "mha-5120", "wide-heads-3072"], "tp": [1, 2, 4, 8],
                "layers": [1, 4], "tokens": TOKENS},
    "quick": {"shapes": ["llama3-8b"], "tp": [1, 8], "layers": [1, 4], "tokens": TOKENS[:3]},
    "tiny": {"shapes": ["tiny-a", "tiny-b"], "tp": [1, 2], "layers": [1, 2],
             "tokens": [(1, 32), (2, 16), (2, 64)]},
}


def grid_points(name: str):
    """(shape, tp, layers, [(batch, seq), ...]) in build order (one stage per triple)."""
    g = GRIDS[name]
    for s in g["shapes"]:
        shape = SHAPES[s]
        for tp in g["tp"]:
            if shape.heads % tp:
                continue
            for layers in g["layers"]:
                yield shape, tp, layers, list(g["tokens"])


class LiveTensors:
    """CPU stand-in for the caching allocator's ``allocated`` counter: every storage an op
    creates is counted until it is garbage collected (weakref finalizer)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._track(out)
                return out

        self.mode, self.current, self.peak, self._live = _Mode(), 0, 0, {}

    def _track(self, out):
        import torch
        from torch.utils._pytree import tree_flatten
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key, n = st.data_ptr(), st.nbytes()
                if n and key not in self._live:
                    self.current += n
                    self.peak = max(self.peak, self.current)
                    self._live[key] = weakref.finalize(st, self._free, key, n)

    def _free(self, key, n):
        self.current -= n
        self._live.pop(key, None)

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_ms(fn, device: str, iters: int) -> float:
    import torch
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) * 1e3 / iters


def measure_prefill(stage: Stage, batch: int, seq: int, device: str, snapshot: bool = True,
                    iters: int = 5) -> tuple[dict, dict | None, list]:
    """Columns of one prefill row, the snapshot summary (CUDA only), and the K/V (kept for
    the decode step that follows)."""
    import torch
    cuda = device.startswith("cuda")
    row: dict = {"phase": "prefill", "batch": batch, "seq": seq}
    summary = None
    with torch.inference_mode():
        inp = stage.make_input(batch, seq)
        out, kv = stage.prefill(inp)  # warm-up: kernels chosen, workspaces allocated
        del out, kv
        _sync(device)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            if snapshot:
                torch.cuda.memory._record_memory_history(max_entries=1_000_000, stacks="python")
            out, kv = stage.prefill(inp)
            _sync(device)
            row["peak_bytes"] = torch.cuda.max_memory_allocated() - base
            row["reserved_slack_bytes"] = torch.cuda.max_memory_reserved() - torch.cuda.max_memory_allocated()
            if snapshot:
                snap = torch.cuda.memory._snapshot()
                summary = summarize(snap, device=torch.cuda.current_device())
                summary["phase_peaks_bytes"] = phase_peaks(snap, device=torch.cuda.current_device())
                torch.cuda.memory._record_memory_history(enabled=None)
                row["snapshot_top"] = compact(summary)
            row["retained_bytes"] = torch.cuda.memory_allocated() - base
            free, total = torch.cuda.mem_get_info()
            row["nontorch_bytes"] = (total - free) - torch.cuda.memory_reserved()
        else:
            with LiveTensors() as live:
                out, kv = stage.prefill(inp)
                row["peak_bytes"] = live.peak
                row["retained_bytes"] = live.current
        row["kv_bytes"] = kv_tensor_bytes(kv)
        del out
        kv_keep = kv
        row["time_ms"] = _time_ms(lambda: stage.prefill(inp), device, iters)
        row["time_method"] = f"cuda_events_mean_of_{iters}" if cuda else f"cpu_wall_mean_of_{iters}"
    return row, summary, kv_keep


def measure_decode(stage: Stage, kv: list, batch: int, seq: int, device: str, iters: int = 5) -> dict:
    """One decode step at context ``seq`` (the prefill's K/V): peak and mean time. The
    native cache has one spare slot, so each timed step rewrites position ``seq``."""
    import torch
    cuda = device.startswith("cuda")
    row = {"phase": "decode", "batch": batch, "seq": seq, "kv_bytes": kv_tensor_bytes(kv)}
    with torch.inference_mode():
        stage.decode(kv, batch, seq)  # warm-up
        _sync(device)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            stage.decode(kv, batch, seq)
            _sync(device)
            row["peak_bytes"] = torch.cuda.max_memory_allocated() - base
        else:
            with LiveTensors() as live:
                stage.decode(kv, batch, seq)
                row["peak_bytes"] = live.peak
        # native rewrites its spare slot; HF's DynamicCache grows by one token per step
        # (a 1/seq change in context, negligible)
        row["time_ms"] = _time_ms(lambda: stage.decode(kv, batch, seq), device, iters)
        row["time_method"] = f"cuda_events_mean_of_{iters}" if cuda else f"cpu_wall_mean_of_{iters}"
    return row


def shape_columns(shape: Shape, tp: int, layers: int, dtype: str, dtype_bytes: int) -> dict:
    local_heads(shape, tp)  # raises on a bad split
    return {"dtype": dtype, "dtype_bytes": dtype_bytes, "hidden": shape.hidden, "heads": shape.heads,
            "kv_heads": shape.kv_heads, "head_dim": shape.head_dim, "ffn": shape.ffn,
            "gated_mlp": int(shape.gated_mlp), "tp": tp, "layers": layers}


def non_torch_steps(device: str, make_communicator=None) -> dict:
    """Device memory outside torch's allocator at each step of an engine's start-up, bytes:
    ``context`` after the CUDA context exists (the first mem_get_info creates it), then
    ``communicator`` after ``make_communicator()`` (an NCCL group and one collective) --
    ``(total - free) - memory_reserved()`` each time. Device-wide: profile on an idle GPU."""
    import torch
    if not device.startswith("cuda"):
        return {}

    def outside() -> int:
        free, total = torch.cuda.mem_get_info()
        return int(total - free - torch.cuda.memory_reserved())
    out = {"context_bytes": outside()}
    if make_communicator is not None:
        make_communicator()
        torch.cuda.synchronize()
        out["communicator_bytes"] = outside() - out["context_bytes"]
    return out
