"""``solver plan --request-rate R --ttft-ms X --tpot-ms Y``: flags and output of SLO planning
(``solver.plan.slo``) -- replicas, router weights, latency per replica, vLLM launch lines."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from solver.cli_common import atomic_write_text, check_out_arg, collect_warnings, emit, positive_float, workload_from
from solver.cost.online.slo import SLO
from solver.cost.online.traffic import Traffic, read_histogram
from solver.errors import InputError
from solver.inputs.cluster import load_cluster
from solver.inputs.model import load_model
from solver.inputs.profile import load_profiles
from solver.plan.slo import plan_slo
from solver.report.slo_report import slo_human, slo_payload

SLO_ONLY_OBJECTIVES = ("headroom",)


def add_slo_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("online traffic with latency targets (--request-rate: plan replicas, router weights)")
    g.add_argument("--request-rate", type=positive_float, default=None, metavar="R",
                   help="Poisson requests/s the whole pool must serve; each replica gets a share (router weight) "
                        "within --ttft-ms/--tpot-ms at --percentile; --batch then only ranks layer splits")
    g.add_argument("--ttft-ms", type=positive_float, default=None, metavar="X", help="time-to-first-token target, ms")
    g.add_argument("--tpot-ms", type=positive_float, default=None, metavar="Y", help="time-per-output-token target, ms")
    g.add_argument("--percentile", type=float, default=90.0, metavar="Q",
                   help="percentile the targets hold at, in (0, 100) (default 90)")
    g.add_argument("--lengths", default=None, metavar="CSV",
                   help="prompt/output length histogram (prompt_len, output_len, weight); default the fixed lengths")
    g.add_argument("--no-simulate", action="store_true",
                   help="judge replicas by the steady-state model only (faster; no scheduler simulation)")


def run_slo(args, model_ref) -> int:
    if args.request_rate is None:
        raise InputError("", "--objective", f"{args.objective} needs --request-rate")
    if args.objective == "throughput":
        args.objective = "cost"  # with a rate to serve, the default is the cheapest plan
    slo = SLO(args.ttft_ms, args.tpot_ms, args.percentile)
    if args.max_replicas is not None and args.max_replicas < 1:
        raise InputError("", "--max-replicas", f"must be >= 1, got {args.max_replicas}")
    model = load_model(args.model)
    workload = workload_from(args, model)
    hist = read_histogram(args.lengths) if args.lengths else ()
    traffic = Traffic(workload.prompt_len, workload.output_len, rate_per_s=args.request_rate, histogram=hist)
    if hist:  # the engine must admit the histogram's longest request (max_model_len, KV per sequence)
        workload = replace(workload, longest_len=traffic.max_context())
        if args.max_model_len is not None and args.max_model_len < workload.longest_len:
            raise InputError(args.lengths, "prompt_len + output_len",
                             f"longest request is {workload.longest_len} tokens, over --max-model-len "
                             f"{args.max_model_len}: vLLM would reject it")
    cluster = load_cluster(args.cluster)
    profiles = load_profiles(args.profile)
    check_out_arg(args.out)
    with collect_warnings(args.strict) as warns:
        result = plan_slo(model, workload, cluster, profiles, rate_per_s=args.request_rate, slo=slo,
                          objective=args.objective, traffic=traffic, max_replicas=args.max_replicas,
                          time_limit_s=args.time_limit, solver=args.solver, runtime=args.runtime,
                          extra_stages=args.extra_stages, max_blocks=args.max_blocks,
                          simulate_check=not args.no_simulate)
        payload = slo_payload(result, model, workload, model_ref(model, args.model))
    payload["inputs"] = {"model": model.name, "cluster": cluster.where, "profiles": sorted({p.path for p in profiles}),
                         "request_rate_per_s": args.request_rate, "prompt_len": workload.prompt_len,
                         "output_len": workload.output_len, "dtype": workload.dtype, "lengths": args.lengths}
    if args.out:
        atomic_write_text(args.out, json.dumps(dict(payload, warnings=warns), indent=2) + "\n")
    shown = warns if args.json or len(warns) <= 5 else warns[:5] + [f"... {len(warns) - 5} more (all in --json)"]
    emit(payload, args.json, slo_human(payload), shown)
    return 0
