"""``solver estimate --online``: flags and report of the online serving model
(``solver.cost.online``) for one homogeneous replica."""

from __future__ import annotations

import argparse

from solver.cli_common import positive_float
from solver.cost.online.estimate import PERCENTILES, online_report
from solver.cost.online.simulate import DEFAULT_SEED
from solver.cost.online.steps import StepModel
from solver.cost.online.traffic import Traffic, read_histogram
from solver.cost.serving import serving_config
from solver.errors import InputError
from solver.report.table import render


def add_online_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("online serving (--online: latency at a load, vLLM continuous batching, chunked prefill)")
    g.add_argument("--online", action="store_true",
                   help="report TTFT, ITL and TPOT (p50/p90, ms), throughput and the max request rate of the replica "
                        "(--tp x --pp, default pp 1) under --concurrency or --request-rate")
    load = g.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=int, default=None, metavar="C",
                      help="closed loop: C clients, each sending its next request when the last finished")
    load.add_argument("--request-rate", type=positive_float, default=None, metavar="R",
                      help="open loop: Poisson arrivals at R requests/s")
    g.add_argument("--lengths", default=None, metavar="CSV",
                   help="prompt/output length histogram (columns prompt_len, output_len, weight); default: the fixed "
                        "--prompt-len and --output-len")
    g.add_argument("--num-requests", type=int, default=None, metavar="N",
                   help="requests simulated (default 20 x C, or 300 at a rate; 100..2000)")
    g.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"simulation seed (default {DEFAULT_SEED})")


def traffic_from(args) -> Traffic:
    if args.concurrency is None and args.request_rate is None:
        raise InputError("", "--online", "give --concurrency C or --request-rate R")
    hist = read_histogram(args.lengths) if args.lengths else ()
    return Traffic(prompt_len=args.prompt_len, output_len=args.output_len, concurrency=args.concurrency,
                   rate_per_s=args.request_rate, histogram=hist)


def run_online(args, model, profile, workload, pipeline_stages) -> tuple[dict, str]:
    traffic = traffic_from(args)
    if args.num_requests is not None and args.num_requests < 1:
        raise InputError("", "--num-requests", f"must be >= 1, got {args.num_requests}")
    if args.max_num_seqs is not None and args.max_num_seqs < 1:
        raise InputError("", "--max-num-seqs", f"must be >= 1, got {args.max_num_seqs}")
    pp = args.pp or 1
    split, stages, _, links = pipeline_stages(args, model, profile, pp)
    cfg = serving_config(profile, args.gpu_memory_utilization, args.max_num_seqs)
    steps = StepModel(model, stages, links, dtype=workload.dtype, kv_dtype=workload.kv_dtype,
                      runtime=args.runtime, serving=cfg)
    online = online_report(steps, traffic, args.num_requests, args.seed)
    online["layer_partition"] = split
    load = (f"concurrency {traffic.concurrency}" if traffic.closed_loop
            else f"{traffic.rate_per_s:g} requests/s (Poisson)")
    rows = [[name, *(online[key][f"p{q}"] for q in PERCENTILES), online[key]["mean"]]
            for name, key in (("TTFT", "ttft_ms"), ("ITL", "itl_ms"), ("TPOT", "tpot_ms"))]
    title = (f"{model.name} on {profile.gpu_name}: TP{args.tp} x PP{pp}, {load}, prompt {traffic.prompt_len}, "
             f"output {traffic.output_len}" + (f" (lengths from {args.lengths})" if args.lengths else "")
             + "\nlatency in ms")
    human = render(["metric"] + [f"p{q}" for q in PERCENTILES] + ["mean"], rows, title)
    human += (f"\n\noutput {online['throughput_tok_s']:,.1f} tokens/s, {online['request_rate_per_s']:.3g} requests/s; "
              f"{online['mean_running']:.1f} decodes per step on average, {online['preemptions']} preemptions"
              f"\nmax request rate of this replica: {online['max_rate_per_replica']:.3g} requests/s "
              f"(limited by {online['max_rate_limited_by']}); KV cache {online['kv_capacity_tokens']:,} tokens, "
              f"max_num_batched_tokens {online['max_num_batched_tokens']}, max_num_seqs {online['max_num_seqs']}")
    if not online["finished"]:
        human += "\nOVERLOADED: the simulation stopped at its step cap before serving every request"
    return {"online": online}, human
