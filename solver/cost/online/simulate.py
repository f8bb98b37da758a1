"""A short discrete-event simulation of vLLM's V1 scheduler, one engine step at a time.

Each step (``vllm/v1/core/sched/scheduler.py``, ``schedule()``): running requests first, in
admission order -- a decode takes one token of the step's budget, an unfinished prompt its
next chunk -- then waiting requests first-come-first-served while the budget, ``max_num_seqs``
and free KV blocks allow. A running request that needs a KV block when none is free
preempts the most recently admitted one (recompute: its blocks are freed and it later
prefills prompt + generated tokens again). The step lasts ``StepModel.step_s(decodes,
mean context, prefill tokens)``; a request whose prompt completes emits its first token at
the end of that step, every decode one token.

Deterministic: Poisson arrivals and histogram lengths come from ``numpy``'s generator with
a fixed seed. Bounded: at most ``num_requests`` requests and a step cap.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from solver.cost.memory import kv_blocks
from solver.cost.online.steps import StepModel
from solver.cost.online.traffic import Traffic
from solver.errors import InfeasibleError

DEFAULT_SEED = 0


@dataclass(eq=False)
class _Req:
    arrival_s: float
    prompt: int
    output: int
    computed: int = 0        # tokens whose KV is in the cache
    generated: int = 0       # output tokens emitted
    blocks: int = 0
    first_s: float = math.nan
    last_s: float = math.nan
    active: bool = False     # in the running list

    @property
    def prefill_target(self) -> int:
        """Tokens to compute before decoding resumes: the prompt, plus (after a preemption)
        the tokens generated so far but the last (recompute)."""
        return self.prompt + max(0, self.generated - 1)


@dataclass(frozen=True)
class SimResult:
    ttft_s: np.ndarray           # per request
    tpot_s: np.ndarray           # per request with output > 1
    itl_s: np.ndarray            # every gap between consecutive tokens of a request
    duration_s: float            # first arrival to last completion
    output_tokens: int
    prompt_tokens: int
    requests: int
    steps: int
    preemptions: int
    mean_running: float          # decodes per step, averaged over steps
    finished: bool               # False: stopped at the step cap (overloaded)

    def pct(self, what: str, q: float) -> float:
        arr = getattr(self, what)
        return float(np.percentile(arr, q)) if arr.size else math.nan

    @property
    def output_tok_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def request_rate_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def _lengths(traffic: Traffic, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    if not traffic.histogram:
        return [(traffic.prompt_len, traffic.output_len)] * n
    w = np.array([r[2] for r in traffic.histogram], dtype=float)
    idx = rng.choice(len(traffic.histogram), size=n, p=w / w.sum())
    return [traffic.histogram[i][:2] for i in idx]


def simulate(steps: StepModel, traffic: Traffic, num_requests: int, seed: int = DEFAULT_SEED) -> SimResult:
    """Serve ``num_requests`` requests of ``traffic`` on one replica; times in seconds."""
    rng = np.random.default_rng(seed)
    lengths = _lengths(traffic, num_requests, rng)
    total_blocks, block_size = steps.kv_blocks(), steps.block_size  # the version's (64 from vLLM 0.34)
    longest = max(p + o for p, o in lengths)
    if (need := kv_blocks(longest, block_size)) > total_blocks:
        raise InfeasibleError(f"a request of {longest} tokens needs {need} KV blocks; the replica "
                              f"has {total_blocks} ({total_blocks * block_size} tokens)")
    budget, max_seqs = steps.budget_tokens, steps.max_num_seqs
    if traffic.closed_loop:
        arrivals = deque([0.0] * min(traffic.concurrency, num_requests))
    else:
        arrivals = deque(np.cumsum(rng.exponential(1.0 / traffic.rate_per_s, size=num_requests)).tolist())
    sent = 0
    waiting: deque[_Req] = deque()
    running: list[_Req] = []
    free = total_blocks
    t = 0.0
    ttft, tpot, itl = [], [], []
    done = n_steps = preempt = 0
    decode_sum = 0
    step_cap = 50 * sum(o + math.ceil(p / max(1, budget)) for p, o in lengths) + 1000

    def admit_arrivals():
        nonlocal sent
        while arrivals and arrivals[0] <= t + 1e-12 and sent < num_requests:
            p, o = lengths[sent]
            waiting.append(_Req(arrivals.popleft(), p, o))
            sent += 1

    def grow(r: _Req, tokens: int) -> bool:
        """Give ``r`` blocks for ``tokens`` cached tokens, preempting from the tail; False
        when ``r`` itself had to be preempted."""
        nonlocal free, preempt
        need = kv_blocks(tokens, block_size) - r.blocks
        while need > free:
            victim = running.pop()
            victim.active = False
            free += victim.blocks
            victim.blocks, victim.computed = 0, 0
            waiting.appendleft(victim)
            preempt += 1
            if victim is r:
                return False
        free -= max(0, need)
        r.blocks += max(0, need)
        return True

    while done < num_requests and n_steps < step_cap:
        admit_arrivals()
        if not running and not waiting:
            t = max(t, arrivals[0])
            continue
        left = budget
        decodes: list[_Req] = []
        chunks: list[tuple[_Req, int]] = []
        for r in list(running):
            if not r.active or left <= 0:
                continue
            if r.computed < r.prefill_target:
                n = min(r.prefill_target - r.computed, left)
                if grow(r, r.computed + n):
                    chunks.append((r, n))
                    left -= n
            elif grow(r, r.prompt + r.generated):
                decodes.append(r)
                left -= 1
        decodes = [r for r in decodes if r.active]
        chunks = [(r, n) for r, n in chunks if r.active]
        while waiting and left > 0 and len(running) < max_seqs:
            r = waiting[0]
            n = min(r.prefill_target - r.computed, left)
            need = kv_blocks(r.computed + n, block_size) - r.blocks
            if need > free:
                break
            waiting.popleft()
            free -= need
            r.blocks += need
            running.append(r)
            r.active = True
            chunks.append((r, n))
            left -= n
        ctx = sum(r.prompt + r.generated for r in decodes) / len(decodes) if decodes else 0.0
        dt = steps.step_s(len(decodes), ctx, sum(n for _, n in chunks))
        t += dt
        n_steps += 1
        decode_sum += len(decodes)
        finished = []
        for r in decodes:
            itl.append(t - r.last_s)
            r.last_s = t
            r.generated += 1
            r.computed = r.prompt + r.generated - 1
            if r.generated >= r.output:
                finished.append(r)
        for r, n in chunks:
            r.computed += n
            if r.computed >= r.prefill_target and r.generated == 0:
                r.first_s = r.last_s = t
                r.generated = 1
                ttft.append(t - r.arrival_s)
                if r.output <= 1:
                    finished.append(r)
        for r in finished:
            r.active = False
        if finished:
            running = [r for r in running if r.active]
        for r in finished:
            free += r.blocks
            r.blocks = 0
            done += 1
            if r.output > 1:
                tpot.append((r.last_s - r.first_s) / (r.output - 1))
            if traffic.closed_loop and sent + len(arrivals) < num_requests:
                arrivals.append(t)
    return SimResult(
        ttft_s=np.array(ttft), tpot_s=np.array(tpot), itl_s=np.array(itl), duration_s=t,
        output_tokens=sum(o for _, o in lengths[:sent]), prompt_tokens=sum(p for p, _ in lengths[:sent]),
        requests=done, steps=n_steps, preemptions=preempt,
        mean_running=decode_sum / n_steps if n_steps else 0.0, finished=done >= num_requests)
