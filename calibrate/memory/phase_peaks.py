"""Per-phase peaks from a CUDA memory snapshot trace: the data ``phases_max_v1`` is fitted on.

Replays ``device_traces`` as ``calibrate.memory.snapshot.summarize`` does and, at every
``alloc``, attributes the live total to the phase of the allocating code: the first stack
frame whose function or file names a phase (``PHASE_MARKERS``, checked in order: a norm
inside the MLP module counts as norm). A phase's peak is the largest live total at one of its
own allocations -- so the forward's peak is the max over phases, and each phase's value is
the level it reaches, which is what each linear phase model predicts. Pure Python.
"""

from __future__ import annotations

# (phase, substrings of a frame's function name or file name), first match wins
PHASE_MARKERS = (
    ("norm", ("rms_norm", "rmsnorm", "layernorm", "layer_norm", "_norm")),
    ("sampler", ("sample", "logits", "lm_head", "compute_logits")),
    ("attention", ("attn", "attention", "sdpa", "qkv", "o_proj", "rotary", "rope")),
    ("mlp", ("mlp", "gate", "up_proj", "down_proj", "silu", "act_fn", "experts", "moe")),
)


def phase_of(frames: list[dict] | None) -> str:
    for f in frames or []:
        text = f"{f.get('name', '')} {str(f.get('filename', '')).rsplit('/', 1)[-1]}".lower()
        for phase, marks in PHASE_MARKERS:
            if any(m in text for m in marks):
                return phase
    return "other"


def phase_peaks(snapshot: dict, device: int = 0) -> dict:
    """{phase: peak live bytes above the start of recording at one of its allocations}."""
    traces = snapshot.get("device_traces") or []
    events = traces[device] if device < len(traces) else []
    live: dict = {}
    cur = 0
    peaks: dict[str, int] = {}
    for ev in events:
        action, addr, size = ev.get("action"), ev.get("addr"), int(ev.get("size", 0))
        if action == "alloc":
            live[addr] = size
            cur += size
            ph = phase_of(ev.get("frames"))
            peaks[ph] = max(peaks.get(ph, 0), cur)
        elif action == "free_completed":
            cur -= live.pop(addr, size)
    return peaks
