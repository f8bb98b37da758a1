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
                       "runner_buffers": b.runner_buffers / GIB, "budget": b.budget / GIB, "total": b.total / GIB},
        "activation_phase": b.activation_phase,
        "cuda_graphs_in_budget": b.graphs_in_budget,
        "calibrated": all(x.calibrated for x in budgets),
        "settings": settings,
        "settings_from": dict(cfg.sources),
    }


def engine_text(e: dict) -> str:
    m, s = e["memory_gib"], e["settings"]
    phase = f", {e['activation_phase']} phase" if e["activation_phase"] else ""
    # Model Runner V2's per-request sampler tables, where the version counts them (from 0.27)
    phase += f" + V2 sampler tables {m['runner_buffers']:.2f}" if m.get("runner_buffers") else ""
    lines = [f"vLLM {s['vllm_version']} accounting, per GPU of stage {e['smallest_stage']} (the fewest KV blocks): "
             f"{s['gpu_memory_utilization']:g} x {m['total']:.2f} = {m['budget']:.2f} GiB = weights {m['weights']:.2f}"
             f" + non-torch {m['non_torch']:.2f} + activation peak {m['activation_peak']:.2f}{phase}"
             + (f" + CUDA graphs {m['cuda_graphs']:.2f}" if e.get("cuda_graphs_in_budget") else "")
             + f" + KV {e['kv_cache_gib']:.2f} GiB ({e['kv_cache_tokens']:,} tokens)"
             + ("" if e.get("cuda_graphs_in_budget") else f"; CUDA graphs {m['cuda_graphs']:.2f} GiB after"),
             f"maximum concurrency {e['max_concurrency']:.2f}x at max_model_len {s['max_model_len']}; "
             f"max_num_batched_tokens {s['max_num_batched_tokens']}, max_num_seqs {s['max_num_seqs']}, chunked "
             f"prefill {'on' if s['enable_chunked_prefill'] else 'off'} ({s['entry_point']})"]
    if not e["calibrated"]:
        lines.append("uncalibrated: the profile has no memory.vllm section (runtime_overhead_gib and its "
                     "activation model stand in); fit one with `calibrate fit-memory --vllm`")
    return "\n".join(lines)


def estimate_intervals(stages, model, workload, links=None, runtime: str = "vllm") -> dict:
    """Low / expected / high of KV tokens, stage times and (with ``links``: a pipeline)
    throughput, from the profiles' default ranges (solver/cost/intervals.py); KV tokens widened by
    the memory fit's held-out reservation error, the times by the serving fit's spread."""
    from solver.cost import intervals
    from solver.cost.pipeline import estimate_pipeline
    from solver.cost.serving import kv_capacity_tokens, serving_config
    from solver.cost.stage import stage_time

    def cfg(st):
        return serving_config(st[0].profile)
    out = {"kv_cache_tokens": intervals.kv_interval(lambda st: kv_capacity_tokens(st, model, workload, cfg(st)),
                                                    stages),
           "prefill_ms": intervals.interval(lambda st: 1e3 * stage_time(st[0], model, workload, workload.batch,
                                                                          runtime).prefill_s, stages),
           "decode_step_ms": intervals.interval(lambda st: 1e3 * stage_time(st[0], model, workload, workload.batch,
                                                                              runtime).decode_step_s, stages)}
    if links is not None:
        out["throughput_tok_s"] = intervals.interval(
            lambda st: estimate_pipeline(model, workload, st, links, runtime, serving=cfg(st)).throughput_tok_s,
            stages)
    out["uncalibrated"] = any(v["uncalibrated"] for v in out.values())
    out["defaults"] = sorted({d for s in stages for d in intervals.defaults_used(s.profile)})
    return out


def interval_text(iv: dict) -> str:
    def fmt(name, unit, v):
        return f"{name} {v['low']:,.4g} / {v['expected']:,.4g} / {v['high']:,.4g} {unit}"
    parts = []
    if "throughput_tok_s" in iv:
        parts.append(fmt("throughput", "tokens/s", iv["throughput_tok_s"]))
    kv, err = iv["kv_cache_tokens"], iv["kv_cache_tokens"].get("memory_fit_error_gib")
    parts += [fmt("KV cache", "tokens", kv) + (f" (reservation +/- {err:.2f} GiB per GPU: the memory fit's held-out "
                                               f"error)" if err else ""), fmt("prefill", "ms", iv["prefill_ms"]),
              fmt("decode step", "ms", iv["decode_step_ms"])]
    head = ("UNCALIBRATED: this prediction rests on default numbers (" + ", ".join(iv["defaults"]) + "); "
            "low / expected / high over their plausible ranges:" if iv["uncalibrated"] else
            "calibrated (no default widens it); low / expected / high:")
    return head + "\n  " + "\n  ".join(parts)
