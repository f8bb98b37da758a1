"""``solver estimate``: memory and time of one stage, or of a whole homogeneous pipeline."""

from __future__ import annotations

from solver.cli_common import add_engine_args, engine_settings_from
from solver.cli_common import (add_model_args, add_output_args, add_workload_args, collect_warnings, emit,
                               positive_float, positive_int, workload_from)
from solver.cost.pipeline import estimate_pipeline, even_split
from solver.cost.serving import engine_settings, serving_config
from solver.cost.stage import Stage, stage_breakdown, stage_mem, stage_time
from solver.report.engine_report import engine_summary, engine_text, estimate_intervals, interval_text
from solver.errors import InfeasibleError, InputError
from solver.inputs.model import ModelSpec, load_model
from solver.inputs.profile import load_profile
from solver.online_cli import add_online_args, run_online
from solver.report.breakdown import breakdown_dict, render_breakdown
from solver.report.table import render

POSITIONS = ("only", "first", "middle", "last")


def register(sub) -> None:
    p = sub.add_parser(
        "estimate", help="memory (GiB) and time (ms) of one stage or one homogeneous pipeline",
        description="Predict, for one GPU of a stage of --layers layers at TP --tp, the memory "
                    "(weights, KV cache, activation peak, runtime overhead) and the time of one prefill "
                    "pass and one decode step of the batch; with --pp, the whole pipeline and its "
                    "throughput. Every constant comes from --profile.")
    p.add_argument("--profile", required=True, help="profile JSON of the GPU type (profiles/<gpu>.json)")
    add_model_args(p)
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree: GPUs per stage (default 1)")
    p.add_argument("--pp", type=int, default=None,
                   help="pipeline stages over the whole model, layers split evenly (default: one stage)")
    p.add_argument("--layers", type=int, default=None,
                   help="layers in the single stage (default: all layers); not with --pp")
    p.add_argument("--stage", choices=POSITIONS, default=None,
                   help="position of that stage: first holds the embedding, last the LM head "
                        "(default: only when --layers covers the model, else middle)")
    p.add_argument("--gpus-per-node", type=positive_int, default=8,
                   help="GPUs per node; with --pp, stages fill nodes in order (default 8)")
    p.add_argument("--nic-gbps", type=positive_float, default=None,
                   help="NIC bandwidth between nodes, GB/s per direction (needed when stages span nodes)")
    p.add_argument("--runtime", choices=("vllm", "megatron"), default="vllm",
                   help="what crosses stage boundaries: vllm sends hidden+residual, megatron one tensor")
    p.add_argument("--breakdown", action="store_true",
                   help="per-op time of the prefill pass and the decode step of the (first) stage, with each "
                        "op's source (profile op tables, schema v2; roofline when the profile has none)")
    add_workload_args(p, batch_default=1)
    add_engine_args(p)
    add_online_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def check_tp(model: ModelSpec, tp: int, where: str = "--tp") -> None:
    if tp < 1 or tp & (tp - 1):
        raise InputError("", where, f"must be a power of two >= 1, got {tp}")
    if model.num_heads % tp:
        raise InputError("", where, f"{tp} does not divide the {model.num_heads} attention heads of {model.name}")


def check_stage_position(args, model: ModelSpec) -> None:
    """--stage must fit --layers: the whole model is the only stage; a part cannot be it."""
    if args.stage is None:
        return
    if args.pp is not None:
        raise InputError("", "--stage", "positions one stage of --layers; with --pp every position is given")
    layers = model.num_layers if args.layers is None else args.layers
    if layers == model.num_layers and args.stage != "only":
        raise InputError("", "--stage", f"{args.stage} needs a stage of fewer than the {model.num_layers} layers of "
                                        f"{model.name} (--layers); the whole model is the 'only' stage")
    if layers < model.num_layers and args.stage == "only":
        raise InputError("", "--stage", f"only holds every layer; --layers {layers} < {model.num_layers}")


def run(args) -> int:
    model = load_model(args.model)
    profile = load_profile(args.profile)
    workload = workload_from(args, model)
    check_tp(model, args.tp)
    if args.tp > args.gpus_per_node:
        raise InputError("", "--tp", f"{args.tp} exceeds --gpus-per-node {args.gpus_per_node}: a TP group lives in one node")
    if args.pp is not None and args.layers is not None:
        raise InputError("", "--layers", "give --layers for one stage or --pp for a whole pipeline, not both")
    check_stage_position(args, model)
    settings = engine_settings_from(args)
    with collect_warnings(args.strict) as warns, engine_settings(settings):
        if args.online:
            payload, human = run_online(args, model, profile, workload, pipeline_stages)
        elif args.pp is None:
            payload, human = _one_stage(args, model, profile, workload)
        else:
            payload, human = _pipeline(args, model, profile, workload)
    if args.breakdown:
        human += _breakdown(args, model, profile, workload, payload)
    payload["inputs"] = {"model": model.name, "profile": profile.path, "gpu": profile.gpu_name, "tp": args.tp,
                         "batch": workload.batch, "prompt_len": workload.prompt_len,
                         "output_len": workload.output_len, "dtype": workload.dtype}
    emit(payload, args.json, human, warns)
    return 0


def _breakdown(args, model, profile, workload, payload) -> str:
    """Op breakdown of one rank of the single stage, or of the first stage of a pipeline."""
    layers = model.num_layers if args.layers is None else args.layers
    pos = args.stage or ("only" if layers == model.num_layers else "middle")
    if args.pp is not None:
        layers, pos = even_split(model.num_layers, args.pp)[0], "only" if args.pp == 1 else "first"
    stage = Stage(profile, args.tp, layers, first=pos in ("only", "first"), last=pos in ("only", "last"))
    with collect_warnings(args.strict):
        ops = stage_breakdown(stage, model, workload, workload.batch, args.runtime)
    if ops is None:
        payload["breakdown"] = None
        return "\n\nno op tables for this runtime in the profile: times are the roofline (no breakdown)"
    pre, dec = breakdown_dict(ops[0]), breakdown_dict(ops[1])
    payload["breakdown"] = {"prefill": pre, "decode_step": dec}
    return ("\n\n" + render_breakdown(f"prefill of {workload.batch} x {workload.prompt_len} tokens, one rank", pre)
            + "\n\n" + render_breakdown(f"decode step of {workload.batch} sequences, one rank", dec))


def _with_engine(payload: dict, human: str, stages, model, workload, links=None, runtime="vllm") -> tuple[dict, str]:
    """Add vLLM's own accounting (solver/report/engine_report.py) and the low / expected /
    high interval from the profile's defaults (solver/cost/intervals.py) to a payload."""
    eng = engine_summary(stages, model, workload, serving_config(stages[0].profile))
    payload["serving"] = eng
    for d in payload.get("stages", [payload]):
        d["memory_gib"].update(non_torch=eng["memory_gib"]["non_torch"], cuda_graphs=eng["memory_gib"]["cuda_graphs"])
    iv = estimate_intervals(stages, model, workload, links, runtime)
    payload["interval"] = iv
    payload["uncalibrated"] = iv["uncalibrated"]
    return payload, human + "\n\n" + engine_text(eng) + "\n" + interval_text(iv)


def _stage_dict(mem, t) -> dict:
    return {
        "memory_gib": mem.as_gib(),
        "memory_capacity_gib": mem.capacity / 2**30,
        "fits": mem.total <= mem.capacity,
        "time_ms": {"prefill": t.prefill_s * 1e3, "decode_step": t.decode_step_s * 1e3,
                    "tp_comm_prefill": t.prefill_comm_s * 1e3, "tp_comm_decode": t.decode_comm_s * 1e3},
    }


def _one_stage(args, model, profile, workload):
    layers = model.num_layers if args.layers is None else args.layers
    if not 1 <= layers <= model.num_layers:
        raise InputError("", "--layers", f"must be in 1..{model.num_layers} for {model.name}, got {layers}")
    pos = args.stage or ("only" if layers == model.num_layers else "middle")
    stage = Stage(profile, args.tp, layers, first=pos in ("only", "first"), last=pos in ("only", "last"))
    mem = stage_mem(stage, model, workload, version=serving_config(profile).version)
    t = stage_time(stage, model, workload, workload.batch, args.runtime)
    d = _stage_dict(mem, t)
    d.update(layers=layers, position=pos)
    title = (f"{model.name} on {profile.gpu_name}: one GPU of a TP{args.tp} stage of {layers} layers ({pos}), "
             f"batch {workload.batch} x prompt {workload.prompt_len}")
    return _with_engine(d, _human(title, [d]), [stage], model, workload, None, args.runtime)


def pipeline_stages(args, model, profile, pp: int):
    """Even layer split over ``pp`` stages of TP ``args.tp``, filling nodes in order:
    (split, stages, node of each stage, link GB/s between consecutive stages or None)."""
    if not 1 <= pp <= model.num_layers:
        raise InputError("", "--pp", f"must be in 1..{model.num_layers}, got {pp}")
    split = even_split(model.num_layers, pp)
    stages = [Stage(profile, args.tp, n, first=i == 0, last=i == pp - 1) for i, n in enumerate(split)]
    node_of = [(i * args.tp) // args.gpus_per_node for i in range(pp)]
    links = []
    for i in range(pp - 1):
        if node_of[i] == node_of[i + 1]:
            links.append(None)
        elif args.nic_gbps is None:
            raise InputError("", "--nic-gbps", f"stages {i} and {i + 1} are on different nodes "
                                               f"(--gpus-per-node {args.gpus_per_node}); give the NIC bandwidth")
        else:
            links.append(args.nic_gbps)
    return split, stages, node_of, links


def _pipeline(args, model, profile, workload):
    split, stages, node_of, links = pipeline_stages(args, model, profile, args.pp)
    cfg = serving_config(profile)
    est = estimate_pipeline(model, workload, stages, links, args.runtime, serving=cfg)
    conc = est.concurrency
    if not est.feasible:
        raise InfeasibleError(f"one sequence of {workload.context_len} tokens does not fit the KV cache "
                              f"({conc.kv_capacity_tokens} tokens at gpu_memory_utilization "
                              f"{cfg.gpu_memory_utilization:g}): use more GPUs per stage or more stages")
    mems = [stage_mem(s, model, workload, max(1, conc.seqs), pp=len(stages), version=cfg.version) for s in stages]
    stage_dicts = []
    for i, (s, mem, t) in enumerate(zip(stages, mems, est.stage_times)):
        d = _stage_dict(mem, t)
        d.update(stage=i, layers=s.n_layers, node=node_of[i])
        stage_dicts.append(d)
    pipe = {"throughput_tok_s": est.throughput_tok_s, "elapsed_s": est.elapsed_s, "prefill_s": est.prefill_s,
            "decode_round_ms": est.decode_round_s * 1e3, "micro_batch": est.micro_batch,
            "micro_batches": est.num_micro_batches, "bottleneck": est.bottleneck,
            "link_prefill_ms": [x * 1e3 for x in est.link_prefill_s],
            "link_decode_ms": [x * 1e3 for x in est.link_decode_s],
            "decode_s": est.decode_s, "seqs_at_once": conc.seqs, "limited_by": conc.limited_by,
            "waves": len(conc.waves), "kv_capacity_tokens": conc.kv_capacity_tokens,
            "gpu_memory_utilization": cfg.gpu_memory_utilization, "max_num_seqs": cfg.max_num_seqs,
            "serving_defaults_assumed": list(cfg.assumed),
            "layer_partition": split}
    title = (f"{model.name} on {profile.gpu_name}: TP{args.tp} x PP{args.pp}, micro-batches of "
             f"{est.micro_batch} (times per micro-batch)")
    human = _human(title, stage_dicts)
    human += (f"\n\nthroughput {est.throughput_tok_s:,.1f} tokens/s (prompt+output), elapsed {est.elapsed_s:.3g} s, "
              f"bottleneck: {est.bottleneck}"
              f"\nprefill {est.prefill_s:.3g} s + decode {est.decode_s:.3g} s; {conc.seqs} sequences at once "
              f"(limited by {conc.limited_by}; KV cache {conc.kv_capacity_tokens:,} tokens at "
              f"gpu_memory_utilization {cfg.gpu_memory_utilization:g}), {len(conc.waves)} wave(s)")
    if cfg.assumed:
        human += f"\nserving defaults assumed (not in the profile): {', '.join(cfg.assumed)}"
    payload = {"stages": stage_dicts, "pipeline": pipe,
               "memory_gib": stage_dicts[0]["memory_gib"], "time_ms": stage_dicts[0]["time_ms"]}
    return _with_engine(payload, human, stages, model, workload, links, args.runtime)


def _human(title: str, stages: list[dict]) -> str:
    headers = ["stage", "layers", "weights", "kv_cache", "act_peak", "overhead", "total", "capacity",
               "prefill_ms", "decode_ms", "tp_comm_pre_ms", "tp_comm_dec_ms"]
    rows = []
    for i, d in enumerate(stages):
        m, t = d["memory_gib"], d["time_ms"]
        rows.append([str(d.get("stage", d.get("position", i))), d["layers"], m["weights"], m["kv_cache"],
                     m["activation_peak"], m["runtime_overhead"], m["total"], d["memory_capacity_gib"],
                     t["prefill"], t["decode_step"], t["tp_comm_prefill"], t["tp_comm_decode"]])
    out = render(headers, rows, title + "\nmemory in GiB per GPU, time in ms")
    if any(not d["fits"] for d in stages):
        out += "\nDOES NOT FIT: total exceeds the GPU's memory"
    return out
