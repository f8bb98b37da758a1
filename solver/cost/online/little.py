"""Steady state of a continuously batching engine from Little's law (the first cut).

Open loop, rate lambda (requests/s), mean prompt p, mean output o, token budget K per step:
- decodes running: B = lambda x (o - 1) x ITL              (Little: arrival rate x time in decode)
- prompt tokens per step: tau = lambda x p x ITL            (what arrives during one step)
- ITL = D(B, ctx) + share x (F(chunk) - D(1, 0))           (``StepModel.step_s`` averaged over steps)
  with ctx = p + o/2 (on the context grid) and chunk = min(p, K - B): while tau <= chunk a fraction tau/chunk of
  steps carries one chunk, beyond it every step carries tau tokens.
ITL is the fixed point of that map (iterated from D(1, ctx); it rises monotonically). The
load is stable while the fixed point exists with B <= min(max_num_seqs, KV tokens / context)
and tau + B <= K.

TTFT = residual of the step under way + waiting for the prefill server + ceil(p/chunk)
chunk steps. The prefill server is busy rho = lambda x ceil(p/chunk) x S of the time (S: one
chunk step); its wait quantile uses the heavy-traffic tail of an M/D/1 queue,
P(W > t) ~ rho exp(-2 (1 - rho) t / S) (Kingman), so W_q = S / (2 (1 - rho)) ln(rho / (1 - q)).

ITL quantile q: a decode step carries a chunk with probability share; the q-quantile is the
chunk step time when share > 1 - q, else the decode-only step.

Closed loop (concurrency C): the same map with lambda = X, the completion rate, and
X = C / (TTFT + (o - 1) x ITL) (Little over the whole request), iterated to agreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solver.cost.online.steps import CTX_GRID_TOKENS, StepModel
from solver.cost.online.traffic import Traffic

_ITER = 200
_RTOL = 1e-9


@dataclass(frozen=True)
class SteadyState:
    stable: bool
    rate_per_s: float          # completions/s
    running: float             # B, decodes per step
    itl_mean_s: float
    decode_step_s: float       # step without a prefill chunk
    chunk_step_s: float        # step with one chunk
    chunk_share: float         # fraction of steps carrying a chunk
    chunks_per_prompt: int
    prefill_busy: float        # rho of the prefill server
    limit: str = ""            # why unstable: "kv_cache", "max_num_seqs", "token_budget", "steps"

    def itl_q_s(self, q: float) -> float:
        return self.chunk_step_s if self.chunk_share > 1 - q / 100 else self.decode_step_s

    def ttft_q_s(self, q: float) -> float:
        """q in percent (50, 90)."""
        s, rho = self.chunk_step_s, self.prefill_busy
        wait = 0.0
        if 0 < rho < 1 and rho > 1 - q / 100:
            wait = s / (2 * (1 - rho)) * math.log(rho / (1 - q / 100))
        residual = self.itl_mean_s * q / 100
        return residual + wait + self.chunks_per_prompt * s


def running_cap(steps: StepModel, traffic: Traffic) -> tuple[int, str]:
    """Most sequences the engine keeps running: max_num_seqs or KV tokens / full context."""
    kv = steps.kv_capacity_tokens() // max(1, traffic.max_context())
    return (kv, "kv_cache") if kv < steps.max_num_seqs else (steps.max_num_seqs, "max_num_seqs")


def mean_context(p: float, o: float) -> float:
    """Tokens a decode attends on average, p + o/2, on the step model's context grid (one
    grid point: half the step evaluations of an off-grid context, <= 128 tokens of KV off)."""
    return max(CTX_GRID_TOKENS, round((p + o / 2) / CTX_GRID_TOKENS) * CTX_GRID_TOKENS)


def _state(steps: StepModel, rate: float, p: float, o: float, cap: int, cap_name: str) -> SteadyState:
    ctx = mean_context(p, o)
    itl = steps.decode_s(1, ctx)
    b = share = tau = 0.0
    chunk = float(min(p, steps.budget_tokens))
    overflow = False
    for _ in range(_ITER):
        b = rate * (o - 1) * itl
        tau = rate * p * itl
        if b > cap or tau + b > steps.budget_tokens:
            overflow = True  # past what the engine runs at once: no steady state
            break
        chunk = max(1.0, min(p, steps.budget_tokens - b))
        d = steps.decode_s(max(b, 1e-9), ctx)
        if tau <= chunk:
            share = tau / chunk
            new = d + share * (steps.step_s(1, ctx, round(chunk)) - steps.decode_s(1, ctx))
        else:
            share = 1.0
            new = steps.step_s(max(b, 1e-9), ctx, round(tau))
        if abs(new - itl) <= _RTOL * new:
            itl = new
            break
        itl = new
    n_chunks = math.ceil(p / chunk)
    bb = min(max(b, 1.0), max(cap, 1))
    chunk_step = steps.step_s(bb, ctx, round(min(chunk, p)))
    rho = rate * n_chunks * chunk_step
    limit = ""
    if b > cap:
        limit = cap_name
    elif overflow or rho >= 1:
        limit = "token_budget"
    return SteadyState(not limit, rate, b, itl, steps.decode_s(bb, ctx), chunk_step, share, n_chunks, rho, limit)


def steady_state(steps: StepModel, traffic: Traffic) -> SteadyState:
    p, o = traffic.mean_lengths()
    cap, cap_name = running_cap(steps, traffic)
    if not traffic.closed_loop:
        return _state(steps, traffic.rate_per_s, p, o, cap, cap_name)
    c = traffic.concurrency
    if c > cap:
        st = steady_state(steps, Traffic(traffic.prompt_len, traffic.output_len, cap, None, traffic.histogram))
        return SteadyState(st.stable, st.rate_per_s, st.running, st.itl_mean_s, st.decode_step_s, st.chunk_step_s,
                           st.chunk_share, st.chunks_per_prompt, st.prefill_busy, cap_name)
    x = c / (steps.prefill_s(int(p)) + (o - 1) * steps.decode_s(c, mean_context(p, o)))
    st = _state(steps, x, p, o, cap, cap_name)
    for _ in range(_ITER):
        ttft = st.chunks_per_prompt * st.chunk_step_s + st.itl_mean_s / 2
        new = c / (ttft + (o - 1) * st.itl_mean_s)
        if abs(new - x) <= 1e-6 * x:
            break
        x = 0.5 * (x + new)
        st = _state(steps, x, p, o, cap, cap_name)
    return st


def max_stable_rate(steps: StepModel, traffic: Traffic, rel_tol: float = 1e-3) -> tuple[float, str]:
    """Largest Poisson rate (requests/s) with a steady state, and what caps it."""
    p, o = traffic.mean_lengths()
    cap, cap_name = running_cap(steps, traffic)
    if cap < 1:
        return 0.0, cap_name
    ctx = mean_context(p, o)
    hi = 1.0 / steps.decode_s(1, ctx)  # more than one request per step-time: never stable
    hi = max(hi, cap / ((o - 1) * steps.decode_s(max(1, cap), ctx) + steps.prefill_s(int(p))) * 2)
    lo, why = 0.0, ""
    st = _state(steps, hi, p, o, cap, cap_name)
    while st.stable:
        hi *= 2
        st = _state(steps, hi, p, o, cap, cap_name)
    why = st.limit
    while hi - lo > rel_tol * hi:
        mid = 0.5 * (lo + hi)
        st = _state(steps, mid, p, o, cap, cap_name)
        if st.stable:
            lo = mid
        else:
            hi, why = mid, st.limit
    return lo, why
