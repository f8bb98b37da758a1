"""The online report of one replica: simulated percentiles, steady-state means and capacity."""

from __future__ import annotations

from solver.cost.online.little import max_stable_rate, steady_state
from solver.cost.online.simulate import DEFAULT_SEED, simulate
from solver.cost.online.steps import StepModel
from solver.cost.online.traffic import Traffic

PERCENTILES = (50, 90)
# Requests simulated by default: 20 per concurrent client (as a `vllm bench serve` sweep
# with --num-prompts 20 x C), at least 100, at most 2000 (a few seconds on one core).
def default_requests(traffic: Traffic) -> int:
    n = 20 * traffic.concurrency if traffic.closed_loop else 300
    return max(100, min(2000, n))


def online_report(steps: StepModel, traffic: Traffic, num_requests: int | None = None,
                  seed: int = DEFAULT_SEED) -> dict:
    """``online`` block of ``solver estimate --online --json`` (times in ms)."""
    n = num_requests or default_requests(traffic)
    sim = simulate(steps, traffic, n, seed)
    st = steady_state(steps, traffic)
    rate, limit = max_stable_rate(steps, traffic)
    out = {
        "load": {"concurrency": traffic.concurrency} if traffic.closed_loop else {"request_rate_per_s": traffic.rate_per_s},
        "method": f"simulation of {n} requests (seed {seed}); steady state (Little's law) alongside",
        "throughput_tok_s": sim.output_tok_s,
        "total_throughput_tok_s": (sim.output_tokens + sim.prompt_tokens) / sim.duration_s if sim.duration_s else 0.0,
        "request_rate_per_s": sim.request_rate_per_s,
        "max_rate_per_replica": rate,
        "max_rate_limited_by": limit,
        "mean_running": sim.mean_running,
        "preemptions": sim.preemptions,
        "finished": sim.finished,
        "kv_capacity_tokens": steps.kv_capacity_tokens(),
        "max_num_batched_tokens": steps.budget_tokens,
        "max_num_seqs": steps.max_num_seqs,
        "steady_state": {"stable": st.stable, "limited_by": st.limit or None, "running": st.running,
                         "itl_mean_ms": st.itl_mean_s * 1e3,
                         "ttft_ms": {f"p{q}": st.ttft_q_s(q) * 1e3 for q in PERCENTILES}},
    }
    for name, arr in (("ttft_ms", "ttft_s"), ("itl_ms", "itl_s"), ("tpot_ms", "tpot_s")):
        block = {f"p{q}": sim.pct(arr, q) * 1e3 for q in PERCENTILES}
        block["mean"] = float(getattr(sim, arr).mean() * 1e3) if getattr(sim, arr).size else None
        out[name] = block
    return out
