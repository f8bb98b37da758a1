"""vLLM V1's on-demand KV allocation of an offline batch (docs/metrics.md, "Intervals").

``solver.cost.serving.concurrency`` reserves each sequence's whole context (prompt + output)
for its lifetime. vLLM 0.10.0's V1 scheduler does not; it allocates KV blocks as tokens are
written (vllm 0.10.0 wheel):

* a request's slots cover its computed plus newly scheduled tokens, nothing more
  (``vllm/v1/core/kv_cache_manager.py:261-273``: ``num_tokens_need_slot`` = computed + new;
  ``None`` when the free blocks do not cover them);
* a waiting request is admitted when the blocks of its prompt are free, in FCFS order: the
  first one that does not fit stops admission (``vllm/v1/core/sched/scheduler.py:440-450``),
  and so do ``max_num_seqs`` running requests (``scheduler.py:334``);
* a running request allocates the slot of its next token each decode step, a block every
  ``block_size`` tokens; when no block is free the most recently admitted running request is
  preempted: its blocks are freed and it goes back to the front of the waiting queue with no
  computed tokens (``scheduler.py:247-275``), to be recomputed from its prompt and the tokens
  it had generated (``scheduler.py:406-412``: ``request.num_tokens`` includes its outputs);
* no waiting request is admitted in a step that preempted (``scheduler.py:332``).

So sequences at once are bounded by the *current* contexts, not the final ones, at the cost
of recomputing the preempted prompts. :func:`on_demand` plays these rules on a batch of equal
requests (every running request decodes one token per step), event by event: from one
admission, finish or preemption to the next, the running set is fixed. Block sizes, the
capacity and ``max_num_seqs`` are the caller's (the engine settings); nothing here is fitted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from solver.cost.memory import kv_blocks


@dataclass(frozen=True)
class Schedule:
    admissions: tuple[tuple[int, int], ...]  # (requests admitted together, prompt tokens they compute)
    segments: tuple[tuple[int, int], ...]    # (requests running, decode steps), in order
    preemptions: int

    @property
    def prefill_tokens(self) -> int:
        return sum(t for _, t in self.admissions)

    @property
    def decode_steps(self) -> int:
        return sum(s for _, s in self.segments)

    @property
    def mean_running(self) -> float:
        """Requests running per decode step, averaged over the steps."""
        steps = self.decode_steps
        return sum(n * s for n, s in self.segments) / steps if steps else 0.0


def on_demand(batch: int, prompt_len: int, output_len: int, capacity_tokens: int, max_num_seqs: int,
              block_size: int) -> Schedule | None:
    """The schedule of ``batch`` requests of ``prompt_len`` + ``output_len`` tokens on a KV
    cache of ``capacity_tokens`` (whole blocks of ``block_size``); None when one request's
    whole context does not fit (vLLM refuses to start: ``kv_cache_utils.py:676-691``).

    The prefill of a request computes its prompt's KV and samples its first output token;
    each decode step then writes one more token's KV, ``output_len - 1`` steps in all."""
    cap = capacity_tokens // block_size
    if batch <= 0 or kv_blocks(prompt_len + output_len - 1, block_size) > cap:
        return None
    waiting: deque[int] = deque([0] * batch)  # outputs a request had when it (re)joins the queue
    running: list[list[int]] = []             # [tokens in KV, decode steps left], admission order
    admissions, segments, preempted, just_preempted = [], [], 0, False
    while waiting or running:
        if not just_preempted:
            n_new, tokens, used = 0, 0, sum(kv_blocks(kv, block_size) for kv, _ in running)
            while waiting and len(running) < max_num_seqs:
                kv = prompt_len + waiting[0]
                if used + kv_blocks(kv, block_size) > cap:
                    break
                g = waiting.popleft()
                running.append([kv, output_len - 1 - g])
                used, n_new, tokens = used + kv_blocks(kv, block_size), n_new + 1, tokens + kv
            if n_new:
                admissions.append((n_new, tokens))
        just_preempted = False
        running = [r for r in running if r[1] > 0]  # output_len 1: done at prefill
        if not running:
            continue
        k_fin = min(r for _, r in running)
        k = _steps_that_fit(running, k_fin, cap, block_size)
        if k:
            segments.append((len(running), k))
            for r in running:
                r[0] += k
                r[1] -= k
            running = [r for r in running if r[1] > 0]
        if k < k_fin:
            kv, left = running.pop()  # the most recently admitted
            waiting.appendleft(output_len - left)
            preempted, just_preempted = preempted + 1, True
    return Schedule(tuple(admissions), tuple(_merged(segments)), preempted)


def _steps_that_fit(running: list[list[int]], most: int, cap: int, block_size: int) -> int:
    """The most decode steps (<= ``most``) the running requests take before one needs a
    block that is not free: step j writes token kv + j of each."""
    def fits(k: int) -> bool:
        return sum(kv_blocks(kv + k, block_size) for kv, _ in running) <= cap
    lo, hi = 0, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _merged(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for n, s in segments:
        if out and out[-1][0] == n:
            out[-1][1] += s
        else:
            out.append([n, s])
    return [(n, s) for n, s in out]

