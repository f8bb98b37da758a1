"""Time and memory of one pipeline stage on one TP group: compute plus TP communication.

TP traffic per layer (Megatron-style, design.md section 5): two all-reduces of T*h*p bytes
(after the attention output projection and after the MLP down projection); the first stage
adds one after the vocab-parallel embedding, the last gathers the logits, and a stage that
receives activations split across its t ranks all-gathers them.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace

from solver.cost import comm, compute
from solver.cost.engine_memory import non_torch_bytes
from solver.cost.memory import StageMemory, padded_vocab, stage_memory
from solver.cost.ops.compose import OpTime, covered
from solver.cost.ops.phases import decode_ops, prefill_ops, split_s
from solver.cost.serving import serving_config
from solver.inputs.model import ModelSpec
from solver.inputs.ops_profile import tables_for
from solver.inputs.profile import Profile
from solver.inputs.workload import Workload


@dataclass(frozen=True)
class Stage:
    """``n_layers`` consecutive layers on ``tp`` GPUs of one node of a profiled GPU type."""
    profile: Profile
    tp: int
    n_layers: int
    first: bool
    last: bool


@dataclass(frozen=True)
class StageTime:
    """Seconds on one stage for one micro-batch: a prefill pass and one decode step."""
    prefill_compute_s: float
    prefill_comm_s: float
    decode_compute_s: float
    decode_comm_s: float

    @property
    def prefill_s(self) -> float:
        return self.prefill_compute_s + self.prefill_comm_s

    @property
    def decode_step_s(self) -> float:
        return self.decode_compute_s + self.decode_comm_s


def activation_bytes(model: ModelSpec, tokens: int, workload: Workload, runtime: str = "vllm") -> float:
    """Bytes crossing a stage boundary for ``tokens`` tokens (vLLM: hidden + residual)."""
    return comm.TENSORS_BETWEEN_STAGES[runtime] * tokens * model.hidden_size * workload.act_bytes


def tp_comm_s(stage: Stage, model: ModelSpec, workload: Workload, tokens: int, rows: int,
              runtime: str = "vllm") -> float:
    """TP communication of one forward over ``tokens`` tokens producing ``rows`` logits rows."""
    if stage.tp <= 1:
        return 0.0
    p, prof, t = workload.act_bytes, stage.profile, stage.tp
    ar = comm.tp_allreduce_s(prof, t, tokens * model.hidden_size * p)
    total = 2 * stage.n_layers * ar
    if workload.expert_parallel:  # MoE layers: dispatch + combine all-to-alls replace one all-reduce
        moe = sum(k.moe for k in model.stage_layers(stage.n_layers, stage.first, stage.last))
        a2a = comm.ep_alltoall_s(prof, t, comm.ep_dispatch_bytes(tokens, model.experts_per_token,
                                                                  model.hidden_size, p, t))
        total += moe * (2 * a2a - ar)
    if stage.first:
        total += ar  # vocab-parallel embedding output
    else:
        total += comm.tp_allgather_s(prof, t, activation_bytes(model, tokens, workload, runtime))
    if stage.last:
        total += comm.tp_allgather_s(prof, t, rows * padded_vocab(model) * p)
    return total


def decode_context(workload: Workload) -> float:
    """Mean tokens attended per decode step over the generation: prompt + output/2."""
    return workload.prompt_len + workload.output_len / 2


_MEMO: dict | None = None


@contextmanager
def memoized_stage_times():
    """Inside the block, ``stage_time`` reuses results for identical arguments. It is a pure
    function and a planner asks it the same questions thousands of times; scoping the memo
    to a block keeps calibration warnings reported in every run (a global cache would
    swallow them) and the profiles alive, so keying them by id is safe."""
    global _MEMO
    outer = _MEMO
    _MEMO = {} if outer is None else outer
    try:
        yield
    finally:
        _MEMO = outer


def stage_time(stage: Stage, model: ModelSpec, workload: Workload, batch: int,
               runtime: str = "vllm") -> StageTime:
    """One prefill pass of ``batch`` prompts and one decode step of ``batch`` sequences."""
    if _MEMO is None:
        return _stage_time(stage, model, workload, batch, runtime)
    key = (id(stage.profile), stage.tp, stage.n_layers, stage.first, stage.last, model, workload, batch, runtime)
    if key not in _MEMO:
        _MEMO[key] = _stage_time(stage, model, workload, batch, runtime)
    return _MEMO[key]


def stage_breakdown(stage: Stage, model: ModelSpec, workload: Workload, batch: int,
                    runtime: str = "vllm") -> tuple[list[OpTime], list[OpTime]] | None:
    """(prefill ops, decode-step ops) of one rank of ``stage`` when its profile has op tables
    for ``runtime`` (schema v2), else None: the stage is timed by the roofline."""
    tables = tables_for(stage.profile.ops, runtime)
    if tables is None or not covered(model):
        return None
    prof, t, n, first, last = stage.profile, stage.tp, stage.n_layers, stage.first, stage.last
    budget = serving_config(prof).batched_tokens(workload)
    pre = prefill_ops(prof, tables, model, t, n, first, last, workload, batch, budget, runtime)
    dec = decode_ops(prof, tables, model, t, n, first, last, workload, batch, decode_context(workload), runtime)
    return pre, dec


def _stage_time(stage: Stage, model: ModelSpec, workload: Workload, batch: int, runtime: str) -> StageTime:
    ops = stage_breakdown(stage, model, workload, batch, runtime)
    if ops is not None:
        (pre_c, pre_m), (dec_c, dec_m) = split_s(ops[0]), split_s(ops[1])
        return StageTime(prefill_compute_s=pre_c, prefill_comm_s=pre_m, decode_compute_s=dec_c, decode_comm_s=dec_m)
    prof, t, n = stage.profile, stage.tp, stage.n_layers
    layers = model.stage_layers(n, stage.first, stage.last)
    pre = compute.prefill_layers_s(prof, model, t, workload, batch, layers)
    dec = compute.decode_layers_s(prof, model, t, workload, batch, decode_context(workload), layers)
    if stage.last:
        pre += compute.lm_head_s(prof, model, t, workload, batch)
        dec += compute.lm_head_s(prof, model, t, workload, batch)
    return StageTime(
        prefill_compute_s=pre,
        prefill_comm_s=tp_comm_s(stage, model, workload, batch * workload.prompt_len, batch, runtime),
        decode_compute_s=dec,
        decode_comm_s=tp_comm_s(stage, model, workload, batch, batch, runtime),
    )


def stage_mem(stage: Stage, model: ModelSpec, workload: Workload, batch: int | None = None,
              pp: int = 1, version: tuple[int, int] | None = None) -> StageMemory:
    """Memory per GPU; the runtime overhead is the engine's non-torch memory at this TP/PP
    (solver.cost.engine_memory.non_torch_bytes: the profile's memory.vllm when it has one) for
    the vLLM ``version`` (from 0.11 the communicators are not in it, as in the KV budget)."""
    mem = stage_memory(stage.profile, model, stage.tp, stage.n_layers, stage.first, stage.last, workload, batch)
    return replace(mem, runtime_overhead=non_torch_bytes(stage.profile, stage.tp, pp, version=version))
