"""vLLM's own memory accounting for a deployment, as ``solver estimate`` reports it.

Per GPU of the smallest stage (the one with the fewest KV blocks: every stage gets that
count): the budget and what takes it (weights, non-torch memory, the profile run's
activation peak and the phase that sets it, CUDA graphs after), the KV cache in GiB and
tokens, and vLLM's "maximum concurrency" at max_model_len; then the engine settings as
resolved and where each came from (docs/vllm_memory.md).
"""

from __future__ import annotations

from solver.cost.serving import ServingConfig, max_concurrency, stage_budgets
from solver.units import GIB


def engine_summary(stages, model, workload, cfg: ServingConfig) -> dict:
    budgets = stage_budgets(stages, model, workload, cfg)
    k = min(range(len(budgets)), key=lambda i: budgets[i].blocks)
    b = budgets[k]
    tokens = b.blocks * cfg.block_size
    settings = cfg.resolved(workload)
    return {
        "smallest_stage": k,
        "kv_cache_gib": tokens * b.kv_bytes_per_block / cfg.block_size / GIB,
        "kv_cache_tokens": tokens,
        "kv_blocks": b.blocks,
        "max_concurrency": max_concurrency(tokens, settings["max_model_len"], cfg.block_size),
        "memory_gib": {"weights": b.weights / GIB, "non_torch": b.non_torch / GIB,
                       "activation_peak": b.activation_peak / GIB, "cuda_graphs": b.cudagraphs / GIB,
                       "budget": b.budget / GIB, "total": b.total / GIB},
        "activation_phase": b.activation_phase,
        "calibrated": all(x.calibrated for x in budgets),
        "settings": settings,
        "settings_from": dict(cfg.sources),
    }


def engine_text(e: dict) -> str:
    m, s = e["memory_gib"], e["settings"]
    phase = f", {e['activation_phase']} phase" if e["activation_phase"] else ""
    lines = [f"vLLM {s['vllm_version']} accounting, per GPU of stage {e['smallest_stage']} (the fewest KV blocks): "
             f"{s['gpu_memory_utilization']:g} x {m['total']:.2f} = {m['budget']:.2f} GiB = weights {m['weights']:.2f}"
             f" + non-torch {m['non_torch']:.2f} + activation peak {m['activation_peak']:.2f}{phase}"
             f" + KV {e['kv_cache_gib']:.2f} GiB ({e['kv_cache_tokens']:,} tokens); CUDA graphs {m['cuda_graphs']:.2f}"
             f" GiB after",
             f"maximum concurrency {e['max_concurrency']:.2f}x at max_model_len {s['max_model_len']}; "
             f"max_num_batched_tokens {s['max_num_batched_tokens']}, max_num_seqs {s['max_num_seqs']}, chunked "
             f"prefill {'on' if s['enable_chunked_prefill'] else 'off'} ({s['entry_point']})"]
    if not e["calibrated"]:
        lines.append("uncalibrated: the profile has no memory.vllm section (runtime_overhead_gib and its "
                     "activation model stand in); fit one with `calibrate fit-memory --vllm`")
    return "\n".join(lines)
