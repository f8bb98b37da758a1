"""Engine step times for the online model: a thin adapter over the offline cost model.

Every number comes from ``solver.cost.pipeline.running_wave`` (stage times, links, PP
micro-batches, per-step engine overhead) and ``solver.cost.serving`` (KV capacity, engine
settings), so improvements there (op tables, vLLM memory accounting) flow in unchanged.

One vLLM step (V1 engine, chunked prefill) runs the running sequences' decode tokens and
up to ``budget - decodes`` prompt tokens of prefill chunks in one forward. Its time is
composed as

    step(b, ctx, P) = D(b, ctx) + max(0, F(P) - D(1, 0))

with D(b, ctx) one decode round of b sequences attending ctx tokens and F(P) one prefill
pass of a P-token chunk. The weights are streamed once per forward: a decode-only step pays
them in D, a prefill chunk in F (compute-bound, weights read while computing), so the chunk
adds what it costs beyond one weight pass, D(1, 0). P = 0 gives D; b = 0 gives F
(Sarathi-Serve, OSDI'24, section 3: a hybrid batch costs about its prefill plus the
decodes' attention).

Context enters D through the KV bytes read, which are linear in ctx; D is computed on a
grid of ``CTX_GRID_TOKENS`` and interpolated linearly between grid points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from solver.cost.engine_settings import DEFAULT_VERSION, batched_tokens_default, parse_version
from solver.cost.pipeline import running_wave
from solver.cost.serving import ServingConfig, kv_capacity_tokens
from solver.cost.stage import Stage, memoized_stage_times
from solver.inputs.model import ModelSpec
from solver.inputs.workload import Workload

# Spacing of the decode-context grid; D is linear in ctx between points (KV bytes read).
CTX_GRID_TOKENS = 256
# Spacing of the prefill-chunk grid above which F is interpolated linearly.
PREFILL_GRID_TOKENS = 256


def batch_grid_below(b: float) -> tuple[int, int]:
    """Decode batches D is computed at: every batch up to 8, then four points per doubling
    (8, 10, 12, 14, 16, 20, ...); D is interpolated linearly in between (the roofline is
    piecewise linear in b, op tables are interpolated the same way). Returns the grid points
    (lo, hi) with lo <= b <= hi."""
    if b <= 8:
        lo = max(1, math.floor(b))
        return lo, (lo if lo == b else lo + 1)
    k = 2 ** math.floor(math.log2(b))
    pts = [k, k + k // 4, k + k // 2, k + 3 * k // 4, 2 * k]
    for lo, hi in zip(pts, pts[1:]):
        if lo <= b <= hi:
            return lo, (lo if lo == b else hi)
    return pts[-1], pts[-1]

def server_token_budget(stages: list[Stage], cfg: ServingConfig) -> int:
    """Tokens one step may schedule: the configured budget, else vLLM's server default
    (``vllm serve``, chunked prefill, the default version's rule in engine_settings) for the
    first stage's GPU (the engine is one process with one setting)."""
    if cfg.max_num_batched_tokens is not None:
        return cfg.max_num_batched_tokens
    prof = stages[0].profile
    return batched_tokens_default(parse_version(DEFAULT_VERSION), True, 0, prof.gpu_name,
                                  prof.memory_gib.value, "serve")[0]


@dataclass
class StepModel:
    """Step times (seconds) of one replica: a pipeline of ``stages`` joined by ``links_gbps``."""
    model: ModelSpec
    stages: list[Stage]
    links_gbps: list
    dtype: str = "bf16"
    kv_dtype: str = ""
    runtime: str = "vllm"
    serving: ServingConfig | None = None
    budget_tokens: int = 0               # 0: server_token_budget
    kv_tokens: int | None = None         # KV-cache tokens the engine logged; None: the memory model's
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        cfg = self.serving
        if cfg is None:
            from solver.cost.serving import serving_config
            cfg = serving_config(self.stages[0].profile)
        if not self.budget_tokens:
            self.budget_tokens = server_token_budget(self.stages, cfg)
        # the engine sizes its KV cache after a dummy step of the budget's tokens
        self.cfg = replace(cfg, max_num_batched_tokens=self.budget_tokens)

    @property
    def max_num_seqs(self) -> int:
        return self.cfg.max_num_seqs

    @property
    def block_size(self) -> int:
        """KV block tokens of the version (``ServingConfig.block_size``: 64 from vLLM 0.34)."""
        return self.cfg.block_size

    def _workload(self, prompt_len: int, batch: int = 1, output_len: int = 0) -> Workload:
        return Workload(batch=batch, prompt_len=max(1, prompt_len), output_len=output_len, dtype=self.dtype,
                        kv_dtype=self.kv_dtype)

    def kv_capacity_tokens(self) -> int:
        """KV-cache tokens of the replica (smallest stage's blocks x block size)."""
        if self.kv_tokens is not None:
            return self.kv_tokens
        if "kv" not in self._cache:
            self._cache["kv"] = kv_capacity_tokens(self.stages, self.model, self._workload(1), self.cfg)
        return self._cache["kv"]

    def kv_blocks(self) -> int:
        return self.kv_capacity_tokens() // self.block_size

    def _wave(self, workload: Workload, seqs: int):
        key = (workload.prompt_len, workload.output_len, seqs)
        if key not in self._cache:
            with memoized_stage_times():
                self._cache[key] = running_wave(self.model, workload, self.stages, self.links_gbps, seqs,
                                                self.runtime, serving=self.cfg)
        return self._cache[key]

    def _prefill_grid(self, tokens: int) -> float:
        return self._wave(self._workload(tokens), 1).prefill_s

    def prefill_s(self, tokens: float) -> float:
        """F(P): one prefill pass of a P-token chunk through the pipeline; exact up to
        ``PREFILL_GRID_TOKENS`` and at its multiples, linear in between (the GEMMs are
        linear in P; the causal-attention term's curvature over one grid step is small)."""
        g = PREFILL_GRID_TOKENS
        if tokens <= g:
            return self._prefill_grid(max(1, round(tokens)))
        lo = math.floor(tokens / g) * g
        f0 = self._prefill_grid(lo)
        return f0 if tokens == lo else f0 + (tokens - lo) / g * (self._prefill_grid(lo + g) - f0)

    def _decode_grid(self, b: int, ctx: int) -> float:
        """A decode round at context ``ctx``: a 1-token prompt with 2 (ctx - 1) outputs has
        ``decode_context`` = 1 + (ctx - 1) = ctx, and its (unused) prefill pass stays tiny."""
        return self._wave(self._workload(1, b, 2 * max(0, ctx - 1)), b).round_s

    def decode_s(self, b: float, ctx: float) -> float:
        """D(b, ctx): one decode round of b sequences attending ctx tokens each, linear
        between the grid points of ``batch_grid_below`` and ``CTX_GRID_TOKENS``."""
        if b <= 0:
            return 0.0
        lo_b, hi_b = batch_grid_below(max(b, 1.0))
        g = CTX_GRID_TOKENS
        c0 = max(0, math.floor(ctx / g) * g)
        c1 = c0 + g
        fc = (ctx - c0) / g

        def at(bb: int) -> float:
            d0 = self._decode_grid(bb, c0)
            return d0 + fc * (self._decode_grid(bb, c1) - d0) if fc > 0 else d0

        d_lo = at(lo_b)
        return d_lo if hi_b == lo_b else d_lo + (b - lo_b) / (hi_b - lo_b) * (at(hi_b) - d_lo)

    def weights_pass_s(self) -> float:
        """D(1, 0): one decode round that only streams the weights (plus fixed costs)."""
        return self._decode_grid(1, 0)

    def step_s(self, decodes: float, ctx: float, prefill_tokens: int) -> float:
        """One engine step: ``decodes`` decode tokens at context ``ctx`` plus a prefill chunk
        of ``prefill_tokens`` tokens (module docstring)."""
        if prefill_tokens <= 0:
            return self.decode_s(decodes, ctx)
        f = self.prefill_s(prefill_tokens)
        if decodes <= 0:
            return f
        return self.decode_s(decodes, ctx) + max(0.0, f - self.weights_pass_s())
