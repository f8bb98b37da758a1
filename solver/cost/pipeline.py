"""Throughput of one pipeline (one replica) serving an offline batch on a vLLM-like engine:
the one definition used by ``solver estimate``, the planner and ``solver validate``
(docs/metrics.md, "throughput").

1. Concurrency (``solver.cost.serving``): c = min(batch, max_num_seqs, KV capacity //
   context) sequences run at once; a larger batch runs in waves of c.
2. Each wave of n sequences is split into m = min(pp, n) micro-batches in flight (vLLM
   keeps pp batches in flight), each of ceil(n/m) sequences. Each stage, each link between
   stages and the engine (CPU-side scheduling, sampling: the per-step overhead of the
   profile's ``serving`` section) is a server (design.md section 5).
3. Prefill: the prompts go through in steps of at most ``max_num_batched_tokens`` tokens;
   K steps flow down the pipeline: chain + (K-1) x busiest server. The prefill forward
   samples each sequence's first output token.
4. Decode: the other output_len - 1 tokens. Each is one round in which every micro-batch
   passes every stage: round = max(m x busiest server, chain) -- either a server is
   saturated, or a micro-batch's token is still travelling the chain.
5. Elapsed = sum over waves of prefill + decode; throughput = batch x (prompt + output)
   / elapsed (the same definition as vLLM's offline benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from solver.cost import comm, kv_admission
from solver.cost.ops.phases import prefill_steps
from solver.cost.serving import Concurrency, ServingConfig, concurrency, serving_config
from solver.cost.stage import Stage, StageTime, activation_bytes, stage_time
from solver.inputs.model import ModelSpec
from solver.inputs.workload import Workload


@dataclass(frozen=True)
class PipelineEstimate:
    """Times in seconds for the whole batch unless named per step / per micro-batch."""
    micro_batch: int                    # sequences per decode micro-batch (first wave)
    num_micro_batches: int
    stage_times: tuple[StageTime, ...]  # per stage: prefill of one micro-batch, one decode step
    link_prefill_s: tuple[float, ...]   # one prefill step's activations over link k
    link_decode_s: tuple[float, ...]    # one decode step's activations over link k
    prefill_s: float                    # all waves
    decode_s: float                     # all waves
    decode_round_s: float               # one output token for every sequence of the first wave
    elapsed_s: float
    tokens: int                         # batch x (prompt + output)
    bottleneck: str                     # "stage k", "link k", "engine", "chain" or "kv_cache"
    concurrency: Concurrency | None = None
    prefill_steps: int = 0              # per wave (first wave)
    serving: ServingConfig | None = field(default=None, repr=False)
    # mean bytes of one TP all-reduce call over the batch (every forward pass of a stage makes
    # the same calls; a pass of T tokens reduces T x hidden x act_bytes): what an end-to-end
    # fit of the engine all-reduce pins (calibrate/serving/fit.py)
    allreduce_mean_bytes: float = 0.0

    @property
    def throughput_tok_s(self) -> float:
        ok = self.elapsed_s > 0 and math.isfinite(self.elapsed_s)
        return self.tokens / self.elapsed_s if ok else 0.0

    @property
    def feasible(self) -> bool:
        return math.isfinite(self.elapsed_s)


@dataclass(frozen=True)
class _Wave:
    prefill_s: float
    decode_s: float
    round_s: float
    bottleneck: str
    micro_batch: int
    micro_batches: int
    prefill_steps: int
    times: tuple[StageTime, ...]
    link_pre: tuple[float, ...]
    link_dec: tuple[float, ...]
    pass_tokens: float = 0.0  # tokens over all forward passes of one stage in this wave
    passes: float = 0.0       # forward passes of one stage in this wave


def _servers(stage_s: list[float], link_s: list[float], engine_s: float) -> list[tuple[str, float]]:
    out = [(f"stage {i}", t) for i, t in enumerate(stage_s)]
    out += [(f"link {i}", t) for i, t in enumerate(link_s)]
    return out + [("engine", engine_s)]


def _links(stages: list[Stage], links_gbps: list, size_bytes: float) -> list[float]:
    return [comm.p2p_s(stages[k].profile, size_bytes, g, senders=stages[k].tp) for k, g in enumerate(links_gbps)]


def _wave(model: ModelSpec, workload: Workload, stages: list[Stage], links_gbps: list, runtime: str,
          cfg: ServingConfig, n: int) -> _Wave:
    """Prefill and decode of ``n`` sequences that run together."""
    m = min(len(stages), n)
    mb = math.ceil(n / m)
    # prompts per prefill step: as many whole prompts as the token budget takes
    per_step = max(1, min(n, cfg.batched_tokens(workload) // workload.prompt_len))
    steps = math.ceil(n / per_step)
    pre_times = [stage_time(s, model, workload, per_step, runtime) for s in stages]
    times = [stage_time(s, model, workload, mb, runtime) for s in stages]
    link_pre = _links(stages, links_gbps, activation_bytes(model, per_step * workload.prompt_len, workload, runtime))
    link_dec = _links(stages, links_gbps, activation_bytes(model, mb, workload, runtime))

    pre = _servers([t.prefill_s for t in pre_times], link_pre, cfg.prefill_overhead_s)
    pre_s = sum(t for _, t in pre) + (steps - 1) * max(t for _, t in pre)
    dec = _servers([t.decode_step_s for t in times], link_dec, cfg.decode_step_overhead_s)
    busiest_name, busiest = max(dec, key=lambda kv: kv[1])
    chain = sum(t for _, t in dec)
    round_s = max(m * busiest, chain)
    decode_steps = max(0, workload.output_len - 1)
    if decode_steps == 0:
        bottleneck = max(pre, key=lambda kv: kv[1])[0]
    else:
        bottleneck = busiest_name if m * busiest >= chain else "chain"
    # forward passes of one stage: each prefill step in the op composition's chunks, then m per round
    chunks = prefill_steps(per_step, workload.prompt_len, cfg.batched_tokens(workload))
    pass_tokens = steps * sum(st.tokens * k for st, k in chunks) + decode_steps * m * mb
    passes = steps * sum(k for _, k in chunks) + decode_steps * m
    return _Wave(pre_s, decode_steps * round_s, round_s, bottleneck, mb, m, steps, tuple(times),
                 tuple(link_pre), tuple(link_dec), pass_tokens, passes)


def estimate_pipeline(model: ModelSpec, workload: Workload, stages: list[Stage],
                      links_gbps: list[float | None], runtime: str = "vllm", *,
                      serving: ServingConfig | None = None) -> PipelineEstimate:
    """``links_gbps[k]`` is the nominal bandwidth between stage k and k+1 (None: same node).

    ``serving`` defaults to the first stage's profile (``serving_config``): the engine is
    one process, its settings and per-step overheads are one set.
    """
    if len(links_gbps) != len(stages) - 1:
        raise ValueError("need one link per pair of consecutive stages")
    cfg = serving if serving is not None else serving_config(stages[0].profile)
    conc = concurrency(stages, model, workload, cfg)
    tokens = workload.batch * (workload.prompt_len + workload.output_len)
    if conc.seqs == 0:
        # one sequence's context does not fit the KV cache: the engine refuses the request
        never = tuple(math.inf for _ in links_gbps)
        return PipelineEstimate(0, 0, (), never, never, math.inf, math.inf, math.inf, math.inf, tokens,
                                "kv_cache", conc, 0, cfg)
    waves = {n: _wave(model, workload, stages, links_gbps, runtime, cfg, n) for n in set(conc.waves)}
    first = waves[conc.waves[0]]
    prefill_s = sum(waves[n].prefill_s for n in conc.waves)
    decode_s = sum(waves[n].decode_s for n in conc.waves)
    if cfg.kv_on_demand:
        prefill_s, decode_s = _on_demand(model, workload, stages, links_gbps, runtime, cfg, conc, waves,
                                         prefill_s, decode_s)
    return PipelineEstimate(
        micro_batch=first.micro_batch, num_micro_batches=first.micro_batches, stage_times=first.times,
        link_prefill_s=first.link_pre, link_decode_s=first.link_dec,
        prefill_s=prefill_s, decode_s=decode_s, decode_round_s=first.round_s,
        elapsed_s=prefill_s + decode_s, tokens=tokens, bottleneck=first.bottleneck,
        concurrency=conc, prefill_steps=first.prefill_steps, serving=cfg,
        allreduce_mean_bytes=_mean_pass_tokens([waves[n] for n in conc.waves]) * model.hidden_size
        * workload.act_bytes,
    )


def _mean_pass_tokens(waves: list[_Wave]) -> float:
    passes = sum(w.passes for w in waves)
    return sum(w.pass_tokens for w in waves) / passes if passes else 0.0


def _on_demand(model, workload, stages, links_gbps, runtime, cfg, conc, waves, prefill_s, decode_s):
    """(prefill_s, decode_s) of the batch when KV blocks are allocated as tokens are written
    (``kv_admission.on_demand``: more sequences at once, preempted ones recomputed), if that
    is faster than reserving whole contexts; else the reserved ones. Used only for the
    optimistic interval corner (``ServingConfig.kv_on_demand``), so the faster of the two.
    Each admission's prefill costs its wave's prefill per prompt token; each stretch of
    decode steps costs its running count's decode round."""
    sched = kv_admission.on_demand(workload.batch, workload.prompt_len, workload.output_len,
                                   conc.kv_capacity_tokens, cfg.max_num_seqs, cfg.block_size)
    if sched is None:
        return prefill_s, decode_s

    def wave(n: int) -> _Wave:
        if n not in waves:
            waves[n] = _wave(model, workload, stages, links_gbps, runtime, cfg, n)
        return waves[n]
    pre = sum(wave(n).prefill_s * tokens / (n * workload.prompt_len) for n, tokens in sched.admissions)
    dec = sum(steps * wave(n).round_s for n, steps in sched.segments)
    return (pre, dec) if pre + dec < prefill_s + decode_s else (prefill_s, decode_s)


def even_split(num_layers: int, pp: int) -> list[int]:
    """Layers per stage for an even split; earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    return [base + (1 if i < extra else 0) for i in range(pp)]


def running_wave(model: ModelSpec, workload: Workload, stages: list[Stage], links_gbps: list[float | None],
                 seqs: int, runtime: str = "vllm", *, serving: ServingConfig | None = None) -> _Wave:
    """Step times of ``seqs`` sequences running together, whatever the KV cache would hold:
    ``prefill_s`` for their prompts (in steps of the token budget) and ``round_s`` for one
    decode round at context ``decode_context(workload)``. The online model
    (``solver.cost.online``) builds every engine step from this, so it shares the offline
    model's stage, link, micro-batch and engine-overhead composition."""
    if len(links_gbps) != len(stages) - 1:
        raise ValueError("need one link per pair of consecutive stages")
    cfg = serving if serving is not None else serving_config(stages[0].profile)
    return _wave(model, workload, stages, links_gbps, runtime, cfg, seqs)
