"""``solver plan`` output: a table per replica and stage for people, a dict for JSON.

Per stage: node, GPUs, layers, memory used / free per GPU with the KV cache the engine
actually allocates (every stage gets the smallest stage's blocks: ``serving.concurrency``),
the time of one decode step and one prefill micro-batch, and the stage's busy share of a
decode round (m x step / round, ``estimate_pipeline``'s definitions). Per replica:
throughput, the bottleneck (a stage, a link, the engine, or the chain), and how many
sequences run at once and in which waves.
"""

from __future__ import annotations

import dataclasses

from solver.cost.pipeline import estimate_pipeline
from solver.cost.stage import Stage
from solver.inputs.profile import profile_for
from solver.plan.validate_plan import served_stage_memory
from solver.report.table import render
from solver.report.vllm_export import device_assignment, vllm_launch
from solver.units import GIB


def _version_note(replicas) -> str:
    """The vLLM release the predicted memory and flags follow (engine defaults differ by version)."""
    versions = sorted({r["vllm"].get("vllm_version") for r in replicas if r["vllm"].get("vllm_version")})
    return f" (predicted for vLLM {', '.join(versions)}; --vllm-version to match yours)" if versions else ""


def _replica_rows(rep, model, workload, cluster, profiles, runtime) -> tuple[list[dict], object]:
    groups = {g.name: g for g in cluster.node_groups}
    prof = {g.name: profile_for(g.gpu, profiles) for g in cluster.node_groups}
    m = len(rep.stages)
    stages = [Stage(prof[s.group], s.tp, s.n_layers, k == 0, k == m - 1) for k, s in enumerate(rep.stages)]
    links = [None if a.node_id == b.node_id else cluster.link_gbps(groups[a.group], groups[b.group])
             for a, b in zip(rep.stages, rep.stages[1:])]
    est = estimate_pipeline(model, workload, stages, links, runtime)
    rows = []
    for k, (s, st) in enumerate(zip(rep.stages, stages)):
        mem = served_stage_memory(st, model, workload, est.serving, est.concurrency.kv_capacity_tokens,
                                  pp=len(stages))
        capacity = st.profile.memory_gib.value * GIB
        t = est.stage_times[k] if k < len(est.stage_times) else None
        dec = t.decode_step_s if t else float("nan")
        share = est.num_micro_batches * dec / est.decode_round_s if est.decode_round_s else 0.0
        rows.append({"stage": k, "node": s.node_id, "gpu": s.gpu, "tp": s.tp,
                     "layers": [s.first_layer, s.first_layer + s.n_layers - 1], "n_layers": s.n_layers,
                     "memory_used_gib": mem.total / GIB, "memory_free_gib": (capacity - mem.total) / GIB,
                     "kv_cache_gib": mem.kv_cache / GIB,
                     "prefill_ms": (t.prefill_s * 1e3) if t else None, "decode_step_ms": dec * 1e3,
                     "decode_busy_share": share,
                     "link_out_gbps": (links[k] if k < len(links) else None) if k < m - 1 else None})
    return rows, est


def plan_payload(result, model, workload, cluster, profiles, runtime: str, model_ref: str) -> dict:
    replicas, nic = [], {}
    for rep, (devices, port) in zip(result.plan.replicas, device_assignment(result.plan.replicas)):
        wl = dataclasses.replace(workload, batch=rep.batch) if rep.batch else workload
        rows, est = _replica_rows(rep, model, wl, cluster, profiles, runtime)
        _add_nic_load(nic, rep, est)
        conc = est.concurrency
        replicas.append({"shape": rep.shape, "batch": wl.batch, "elapsed_s": est.elapsed_s,
                         "throughput_tok_s": rep.throughput_tok_s,
                         "usd_per_hour": rep.usd_per_hour, "bottleneck": rep.bottleneck,
                         "concurrency": conc.seqs, "concurrency_limited_by": conc.limited_by,
                         "waves": list(conc.waves), "kv_capacity_tokens": conc.kv_capacity_tokens,
                         "micro_batch": est.micro_batch, "decode_round_ms": est.decode_round_s * 1e3,
                         "stages": rows, "vllm": vllm_launch(rep, model_ref, model.num_layers, wl,
                                                             est.serving, devices, port)})
    total = result.plan.throughput_tok_s
    baselines = {}
    usd = result.plan.usd_per_hour
    for name, b in result.baselines.items():
        if b is None:
            baselines[name] = None
            continue
        baselines[name] = {"throughput_tok_s": b.throughput_tok_s, "usd_per_hour": b.usd_per_hour,
                           "replicas": len(b.replicas), "gpus": b.gpus,
                           "tokens_per_usd": tokens_per_usd(b.throughput_tok_s, b.usd_per_hour),
                           "plan_over_baseline": total / b.throughput_tok_s if b.throughput_tok_s else None,
                           "plan_over_baseline_per_usd": _ratio(tokens_per_usd(total, usd),
                                                                tokens_per_usd(b.throughput_tok_s, b.usd_per_hour))}
    return {"status": result.status, "status_text": status_text(result.status, result.heuristic_splits),
            "exact_columns": result.heuristic_splits == 0, "heuristic_splits": result.heuristic_splits,
            "search_space": result.search_space, "objective": result.objective,
            "objective_value": result.objective_value,
            "best_bound": result.best_bound, "gap": result.gap, "solve_s": result.solve_s,
            "solver": result.solver, "columns": result.columns,
            "throughput_tok_s": total, "usd_per_hour": usd, "tokens_per_usd": tokens_per_usd(total, usd),
            "gpus_used": result.plan.gpus, "validator": result.validator,
            "batch_mode": "shared" if result.plan.shared else "per_replica",
            "nic_busy_share": nic, "nic_busy_max": max((v for d in nic.values() for v in d.values()), default=0.0),
            "gpus_in_pool": cluster.num_gpus, "replicas": replicas, "baselines": baselines,
            "profiles_used": {g.gpu: profile_for(g.gpu, profiles).path for g in cluster.node_groups},
            "notes": list(result.notes)}


def _add_nic_load(nic: dict, rep, est) -> None:
    """Busy share of each node's NIC per direction in the decode phase, summed over the
    replicas on the node: per inter-node link, micro-batches x one decode step's transfer /
    the decode round (estimate_pipeline's times, each of which assumes the whole NIC)."""
    if not est.decode_round_s:
        return
    for k, (a, b) in enumerate(zip(rep.stages, rep.stages[1:])):
        if a.node_id == b.node_id or k >= len(est.link_decode_s):
            continue
        share = est.num_micro_batches * est.link_decode_s[k] / est.decode_round_s
        for node, way in ((a.node_id, "send"), (b.node_id, "recv")):
            d = nic.setdefault(node, {"send": 0.0, "recv": 0.0})
            d[way] += share


def tokens_per_usd(tok_s: float, usd_per_hour: float) -> float | None:
    """Tokens per dollar: tokens/s x 3,600 s/h / ($/h); None when the GPUs are free."""
    return tok_s * 3600.0 / usd_per_hour if usd_per_hour > 0 else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def status_text(status: str, heuristic_splits: int) -> str:
    """``optimal`` only when the MILP proved it and every column's layer split was searched
    exhaustively (docs/metrics.md, "planner objective")."""
    if status == "optimal" and heuristic_splits:
        return f"optimal over searched layouts (splits heuristic for {heuristic_splits} layouts)"
    if status == "feasible":
        return "feasible (not proven optimal: see gap)"
    return status


def _fmt_x(r) -> str:
    return "n/a" if r is None else f"{r:.3f}x"


def _fmt_gap(gap) -> str:
    return "n/a" if gap is None else f"{gap * 100:.3g}%"


def _fmt_waves(waves: list[int]) -> str:
    full = [w for w in waves if w == waves[0]]
    rest = waves[len(full):]
    return f"{len(full)} x {waves[0]}" + "".join(f" + {w}" for w in rest) if waves else "none"


def plan_human(payload: dict, title: str) -> str:
    p = payload
    unit = "tokens/s" if p["objective"] == "throughput" else "$/h"
    head = (f"{title}\nstatus {p['status_text']} ({p['solver']}, {p['solve_s']:.2f} s, {p['columns']} shapes): "
            f"objective {p['objective_value']:,.2f} {unit}, best bound {p['best_bound']:,.2f}, "
            f"gap {_fmt_gap(p['gap'])}\n"
            f"throughput {p['throughput_tok_s']:,.1f} tokens/s (prompt+output), {p['usd_per_hour']:,.2f} $/h, "
            f"{p['gpus_used']}/{p['gpus_in_pool']} GPUs, {len(p['replicas'])} replicas, validator: {p['validator']}\n"
            f"searched: {p['search_space']}\n"
            f"profiles: {'; '.join(f'{gpu} <- {path}' for gpu, path in p['profiles_used'].items())}")
    headers = ["replica", "stage", "node", "gpu", "tp", "layers", "mem_used_gib", "kv_gib", "mem_free_gib",
               "prefill_ms", "decode_ms", "decode_busy"]
    rows = []
    for r, rep in enumerate(p["replicas"]):
        for s in rep["stages"]:
            rows.append([str(r), s["stage"], s["node"], s["gpu"], s["tp"], f"{s['layers'][0]}-{s['layers'][1]}",
                         s["memory_used_gib"], s["kv_cache_gib"], s["memory_free_gib"], s["prefill_ms"],
                         s["decode_step_ms"],
                         f"{s['decode_busy_share'] * 100:.0f}%"])
    out = [head, "", render(headers, rows, "stages (memory per GPU; times per micro-batch)"), ""]
    rep_rows = [[str(r), rep["shape"], rep["batch"], rep["elapsed_s"], rep["throughput_tok_s"], rep["usd_per_hour"],
                 rep["bottleneck"], f"{rep['concurrency']} ({rep['concurrency_limited_by']})", _fmt_waves(rep["waves"])]
                for r, rep in enumerate(p["replicas"])]
    out.append(render(["replica", "shape", "batch", "elapsed_s", "tokens_per_s", "usd_per_h", "bottleneck",
                       "concurrency", "waves"], rep_rows,
                      "replicas (their batch, sequences at once, and the waves of their batch)"))
    base_rows = [[name, b["throughput_tok_s"], b["usd_per_hour"], b["replicas"], b["gpus"],
                  _fmt_x(b["plan_over_baseline"]), _fmt_x(b["plan_over_baseline_per_usd"])]
                 for name, b in p["baselines"].items() if b]
    base_rows += [[name, "none", "", "", "", "", ""] for name, b in p["baselines"].items() if not b]
    out += ["", render(["baseline", "tokens_per_s", "usd_per_h", "replicas", "gpus", "plan/baseline per s",
                        "plan/baseline per $"], base_rows, "baselines computed by the tool")]
    fewer = [f"{name} uses {b['gpus']} of the plan's {p['gpus_used']} GPUs" for name, b in p["baselines"].items()
             if b and b["gpus"] < p["gpus_used"]]
    if fewer:
        out.append(f"({'; '.join(fewer)}: compare per $ as well as per s)")
    out += ["", "vLLM launch per replica" + _version_note(p["replicas"]) + ":"]
    for r, rep in enumerate(p["replicas"]):
        v = rep["vllm"]
        line = f"  [{r}] {v['command']}" if v["ok"] else f"  [{r}] {v['reason']}"
        if v["ok"] and v["reason"]:
            line += f"\n      ({v['reason']})"
        out.append(line)
    if p["nic_busy_max"] > 1.0:
        node, way = max(((n, w) for n, d in p["nic_busy_share"].items() for w in d), key=lambda x: p["nic_busy_share"][x[0]][x[1]])
        out.append(f"note: replicas sharing node {node}'s NIC keep it busy {p['nic_busy_max'] * 100:.0f}% ({way}) in "
                   "decode: each replica's link time assumes the whole NIC, so their throughput is optimistic "
                   "(the planner's NIC rows bound the run's average, not the decode peak)")
    out += [f"note: {n}" for n in p["notes"]]
    return "\n".join(out)
