"""``solver plan``: replicas and pipeline stages over a (heterogeneous) GPU pool, with the
MILP's status, bound and gap, two baselines, and vLLM launch commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from solver.cli_common import add_model_args, add_output_args, add_workload_args, collect_warnings, emit, workload_from
from solver.cli_common import atomic_write_text, check_out_arg, nonneg_float, positive_float
from solver.cli_common import add_engine_args, engine_settings_from
from solver.cost.intervals import corner
from solver.cost.serving import engine_settings
from solver.report.plan_interval import interval_line, plan_interval
from solver.errors import InputError
from solver.inputs.cluster import load_cluster
from solver.inputs.model import load_model
from solver.inputs.profile import load_profiles
from solver.plan.milp import SOLVERS
from solver.plan.planner import MAX_POOL_NODES, OBJECTIVES, plan
from solver.report.plan_report import plan_human, plan_payload
from solver.slo_cli import SLO_ONLY_OBJECTIVES, add_slo_args, run_slo

# The planner visits many stage sizes; a table for people shows the first few notices.
MAX_WARNINGS_SHOWN = 5


def register(sub) -> None:
    p = sub.add_parser(
        "plan", help="place replicas and pipeline stages on a GPU pool (MILP with gap, baselines, vLLM commands)",
        description="Choose replicas, each a pipeline of TP groups inside nodes holding contiguous layers, "
                    "to maximise total tokens/s or minimise $/h under a throughput floor. --batch sequences are "
                    "the pool's offline batch, split across the replicas (the split is part of the answer): "
                    "throughput = all tokens / the slowest replica's time; --batch-per-replica gives every replica "
                    "its own --batch instead (throughput sums over replicas). A replica runs its sequences in waves "
                    "when its KV cache holds fewer. Only layouts the runtime launches as planned are searched "
                    "(vLLM: one TP size per replica, nodes in Ray's rank order). 'optimal' is proven over the "
                    "searched layouts: the status names every bound that cut the space (--max-blocks, "
                    "--extra-stages, node splits of deep blocks). After --time-limit the "
                    f"status is 'feasible' with the solver's bound and gap. Pools of at most {MAX_POOL_NODES:,} nodes. "
                    "Exit 2 on bad input or when no plan exists.")
    p.add_argument("--profile", action="append", required=True, metavar="PATH",
                   help="profile JSON of a GPU type, or a folder of them; repeat for every GPU type in the cluster")
    add_model_args(p)
    p.add_argument("--cluster", required=True, help="cluster YAML (examples/clusters/)")
    p.add_argument("--objective", choices=OBJECTIVES + SLO_ONLY_OBJECTIVES, default="throughput",
                   help="throughput: max total tokens/s; cost: min $/h with --min-throughput, or with --request-rate "
                        "the cheapest plan meeting the latency targets; headroom (with --request-rate): the most "
                        "spare request rate within the targets (default throughput)")
    p.add_argument("--min-throughput", type=nonneg_float, default=0.0, metavar="TOK_S",
                   help="tokens/s the plan must reach (cost objective), default 0")
    p.add_argument("--max-replicas", type=int, default=None, metavar="R", help="at most R replicas (default no cap)")
    p.add_argument("--time-limit", type=positive_float, default=60.0, metavar="S",
                   help="MILP time limit in seconds (default 60); on expiry the best plan is reported with its gap")
    p.add_argument("--solver", choices=SOLVERS, default="cbc", help="MILP solver: cbc (bundled) or highs (default cbc)")
    p.add_argument("--runtime", choices=("vllm", "megatron"), default="vllm",
                   help="what crosses stage boundaries (default vllm: hidden + residual)")
    p.add_argument("--extra-stages", type=_depth_bound, default=-1, metavar="N|any",
                   help="pipeline depths searched beyond the fewest stages that fit, per block sequence; "
                        "'any' for every depth (default: any for models of <= 16 layers, else 2)")
    p.add_argument("--max-blocks", type=int, default=None,
                   help="most blocks (runs of stages on one node group) per replica; default 4 for pools "
                        "of <= 12 GPUs and models of <= 16 layers, else 2")
    p.add_argument("--batch-per-replica", action="store_true",
                   help="every replica serves --batch sequences of its own and throughput sums over replicas "
                        "(default: --batch is the pool's total, split across replicas, throughput = all tokens / "
                        "the slowest replica's time)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar on stderr (there is none either when stderr is not a terminal)")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON result to FILE (atomically)")
    add_workload_args(p, batch_default=32)
    add_slo_args(p)
    add_engine_args(p)
    p.add_argument("--robust", action="store_true",
                   help="rank layouts by the low end of their throughput interval: plan with every `default` "
                        "profile number at the pessimistic end of its plausible range (docs/metrics.md, Intervals)")
    add_output_args(p)
    p.set_defaults(func=run)


def _depth_bound(text: str) -> int | None:
    if text.strip().lower() == "any":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'any', got {text!r}") from None


def _check_args(args) -> None:
    if args.min_throughput < 0:
        raise InputError("", "--min-throughput", f"must be >= 0, got {args.min_throughput:g}")
    if args.objective == "cost" and args.min_throughput <= 0:
        raise InputError("", "--min-throughput", "the cost objective needs a throughput floor > 0 tokens/s")
    if args.objective == "throughput" and args.min_throughput > 0:
        raise InputError("", "--min-throughput", "only applies with --objective cost; the throughput objective "
                                                 "maximises tokens/s with no floor")
    if args.max_replicas is not None and args.max_replicas < 1:
        raise InputError("", "--max-replicas", f"must be >= 1, got {args.max_replicas}")
    if args.time_limit <= 0:
        raise InputError("", "--time-limit", f"must be > 0 seconds, got {args.time_limit:g}")
    if args.max_blocks is not None and args.max_blocks < 1:
        raise InputError("", "--max-blocks", f"must be >= 1, got {args.max_blocks}")
    if args.extra_stages is not None and args.extra_stages < 0 and args.extra_stages != -1:
        raise InputError("", "--extra-stages", f"must be >= 0, got {args.extra_stages}")


def run(args) -> int:
    if args.request_rate is not None or args.objective in SLO_ONLY_OBJECTIVES:
        with engine_settings(engine_settings_from(args)):
            return run_slo(args, _model_ref)
    _check_args(args)
    model = load_model(args.model)
    workload = workload_from(args, model)
    cluster = load_cluster(args.cluster)
    profiles = load_profiles(args.profile)
    check_out_arg(args.out)
    with collect_warnings(args.strict) as warns, engine_settings(engine_settings_from(args)):
        planned = [corner(p, "low") for p in profiles] if args.robust else profiles
        result = plan(model, workload, cluster, planned, objective=args.objective,
                      min_tok_s=args.min_throughput, max_replicas=args.max_replicas,
                      time_limit_s=args.time_limit, solver=args.solver, runtime=args.runtime,
                      extra_stages=args.extra_stages, max_blocks=args.max_blocks,
                      progress=not args.quiet and sys.stderr.isatty(), batch_per_replica=args.batch_per_replica)
        payload = plan_payload(result, model, workload, cluster, planned, args.runtime, _model_ref(model, args.model))
        payload["interval"] = plan_interval(result.plan, model, workload, cluster, profiles, args.runtime)
        payload["uncalibrated"], payload["robust"] = payload["interval"]["uncalibrated"], args.robust
    payload["inputs"] = {"model": model.name, "cluster": cluster.where, "profiles": sorted({p.path for p in profiles}),
                         "batch": workload.batch, "prompt_len": workload.prompt_len,
                         "output_len": workload.output_len, "dtype": workload.dtype}
    if args.out:
        atomic_write_text(args.out, json.dumps(dict(payload, warnings=warns), indent=2) + "\n")
    share = "per replica" if args.batch_per_replica else "split across replicas"
    title = (f"{model.name} on {cluster.name}: batch {workload.batch} {share}, prompt {workload.prompt_len}, "
             f"output {workload.output_len}, objective {args.objective}")
    shown = warns if args.json or len(warns) <= MAX_WARNINGS_SHOWN else (
        warns[:MAX_WARNINGS_SHOWN] + [f"... {len(warns) - MAX_WARNINGS_SHOWN} more (all of them in --json)"])
    emit(payload, args.json, plan_human(payload, title) + "\n" + interval_line(payload["interval"], args.robust),
         shown)
    return 0


def _model_ref(model, asked: str) -> str:
    """What ``vllm serve`` takes: the Hugging Face repo a preset was read from (its
    ``_source`` starts with it), else what the user gave."""
    first = (model.source or "").split(" ")[0]
    if first.count("/") == 1 and not Path(asked).exists():
        return first
    return asked
