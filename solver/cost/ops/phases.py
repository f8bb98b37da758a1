"""A stage's prefill pass and decode step as op-table sums (the op-level ``stage_time``).

Prefill of ``batch`` prompts of ``prompt_len`` tokens runs in steps of at most
``max_num_batched_tokens`` tokens (vLLM's token budget; chunked prefill, the V1 default,
splits a prompt longer than the budget into chunks that attend to the prefix already
cached). Each step is composed by :func:`solver.cost.ops.compose.stage_ops`; the decode
step is one step of ``batch`` sequences at ``context``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from solver.cost.ops.compose import OpTime, Step, stage_ops
from solver.inputs.model import ModelSpec
from solver.inputs.ops_profile import OpTables
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload


def prefill_steps(batch: int, prompt_len: int, budget: int) -> list[tuple[Step, int]]:
    """(step, repeats) covering ``batch`` prompts under a ``budget`` of tokens per step.

    >>> [(s.prefill_batch, s.prefill_len, s.prefill_context, n) for s, n in prefill_steps(5, 1000, 2048)]
    [(2, 1000, 1000, 2), (1, 1000, 1000, 1)]
    >>> [(s.prefill_len, s.prefill_context, n) for s, n in prefill_steps(1, 3000, 2048)]
    [(1500.0, 1500.0, 1), (1500.0, 3000.0, 1)]
    """
    if prompt_len <= budget:
        per = max(1, budget // prompt_len)
        full, rest = divmod(batch, per)
        out = [(Step(prefill_batch=per if full else rest, prefill_len=prompt_len, prefill_context=prompt_len),
                full if full else 1)]
        if full and rest:
            out.append((Step(prefill_batch=rest, prefill_len=prompt_len, prefill_context=prompt_len), 1))
        return out
    chunks = math.ceil(prompt_len / budget)
    length = prompt_len / chunks  # equal chunks; vLLM's last one is the remainder
    return [(Step(prefill_batch=1, prefill_len=length, prefill_context=length * (j + 1)), batch)
            for j in range(chunks)]


def merge(parts: list[tuple[list[OpTime], int]]) -> list[OpTime]:
    """Sum op lists (each repeated ``n`` times) by op name: total time and calls add up."""
    acc: OrderedDict[str, list] = OrderedDict()
    for ops, n in parts:
        for o in ops:
            a = acc.setdefault(o.name, [o.kind, 0.0, 0.0, o.source])
            a[1] += o.total_s * n
            a[2] += o.count * n
    return [OpTime(name, kind, total / count if count else 0.0, count, src)
            for name, (kind, total, count, src) in acc.items()]


def prefill_ops(profile: Profile, tables: OpTables | None, model: ModelSpec, tp: int, n_layers: int, first: bool,
                last: bool, workload: Workload, batch: int, budget: int, runtime: str = "vllm") -> list[OpTime]:
    return merge([(stage_ops(profile, tables, model, tp, n_layers, first, last, workload, step, "prefill", runtime), n)
             for step, n in prefill_steps(batch, workload.prompt_len, budget)])


def decode_ops(profile: Profile, tables: OpTables | None, model: ModelSpec, tp: int, n_layers: int, first: bool,
               last: bool, workload: Workload, batch: int, context: float, runtime: str = "vllm") -> list[OpTime]:
    step = Step(decode_batch=batch, context=context)
    return merge([(stage_ops(profile, tables, model, tp, n_layers, first, last, workload, step, "decode", runtime), 1)])


def split_s(ops: list[OpTime]) -> tuple[float, float]:
    """(compute seconds, communication seconds) of an op list."""
    comm_s = sum(o.total_s for o in ops if o.comm)
    return sum(o.total_s for o in ops) - comm_s, comm_s
