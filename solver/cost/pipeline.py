"""Throughput of one pipeline (one replica) on an offline batch: the one definition used by
``solver estimate``, the planner and ``solver validate`` (docs/metrics.md).

Model (vLLM-like): the batch of B sequences is split into m = number-of-stages
micro-batches of ceil(B/m) sequences that are in flight at once. Each stage and each link
between stages is a server (design.md section 5).
- Prefill: the m micro-batches flow through the pipeline: sum_k t_k + (m-1) max_k t_k.
- Decode: every output token is one round in which each micro-batch passes every stage;
  a round lasts max(m x max_k t_k, sum_k t_k): either the busiest server is saturated, or
  one micro-batch's token is still travelling the chain.
- Elapsed = prefill + output_len x round; throughput = B x (prompt + output) / elapsed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solver.cost import comm
from solver.cost.stage import Stage, StageTime, activation_bytes, stage_time
from solver.inputs.model import ModelSpec
from solver.inputs.workload import Workload


@dataclass(frozen=True)
class PipelineEstimate:
    micro_batch: int
    num_micro_batches: int
    stage_times: tuple[StageTime, ...]
    link_prefill_s: tuple[float, ...]  # one transfer of one micro-batch's prefill activations
    link_decode_s: tuple[float, ...]   # one decode step's activations
    prefill_s: float
    decode_round_s: float
    elapsed_s: float
    tokens: int
    bottleneck: str  # "stage k", "link k" or "chain"

    @property
    def throughput_tok_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _servers(stage_s: list[float], link_s: list[float]) -> list[tuple[str, float]]:
    out = [(f"stage {i}", t) for i, t in enumerate(stage_s)]
    out += [(f"link {i}", t) for i, t in enumerate(link_s)]
    return out


def estimate_pipeline(model: ModelSpec, workload: Workload, stages: list[Stage],
                      links_gbps: list[float | None], runtime: str = "vllm") -> PipelineEstimate:
    """``links_gbps[k]`` is the nominal bandwidth between stage k and k+1 (None: same node)."""
    if len(links_gbps) != len(stages) - 1:
        raise ValueError("need one link per pair of consecutive stages")
    m = len(stages)
    mb = math.ceil(workload.batch / m)
    times = [stage_time(s, model, workload, mb, runtime) for s in stages]
    pre_bytes = activation_bytes(model, mb * workload.prompt_len, workload, runtime)
    dec_bytes = activation_bytes(model, mb, workload, runtime)
    link_pre = [comm.p2p_s(stages[k].profile, pre_bytes, g) for k, g in enumerate(links_gbps)]
    link_dec = [comm.p2p_s(stages[k].profile, dec_bytes, g) for k, g in enumerate(links_gbps)]

    pre_servers = _servers([t.prefill_s for t in times], link_pre)
    dec_servers = _servers([t.decode_step_s for t in times], link_dec)
    pre_max = max(t for _, t in pre_servers)
    prefill_s = sum(t for _, t in pre_servers) + (m - 1) * pre_max
    busiest_name, busiest = max(dec_servers, key=lambda kv: kv[1])
    chain = sum(t for _, t in dec_servers)
    round_s = max(m * busiest, chain)
    bottleneck = busiest_name if m * busiest >= chain else "chain"
    elapsed = prefill_s + workload.output_len * round_s
    if workload.output_len == 0:
        bottleneck = max(pre_servers, key=lambda kv: kv[1])[0]
    return PipelineEstimate(
        micro_batch=mb, num_micro_batches=m, stage_times=tuple(times),
        link_prefill_s=tuple(link_pre), link_decode_s=tuple(link_dec),
        prefill_s=prefill_s, decode_round_s=round_s, elapsed_s=elapsed,
        tokens=workload.batch * (workload.prompt_len + workload.output_len), bottleneck=bottleneck,
    )


def even_split(num_layers: int, pp: int) -> list[int]:
    """Layers per stage for an even split; earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    return [base + (1 if i < extra else 0) for i in range(pp)]
