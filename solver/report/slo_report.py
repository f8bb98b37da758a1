"""Report of an SLO plan: replicas with their router weight, rate and predicted latency, the
plan's cost and spare rate, and a vLLM launch line per replica."""

from __future__ import annotations

from solver.report.table import render
from solver.report.vllm_export import device_assignment, vllm_launch


def slo_payload(result, model, workload, model_ref: str) -> dict:
    slo = result.slo
    reps = []
    devices = device_assignment([r.placed for r in result.replicas])
    for r, (dev, port) in zip(result.replicas, devices):
        st = r.placed.stages
        launch = vllm_launch(r.placed, model_ref, model.num_layers, workload, r.serving, dev, port)
        reps.append({
            "shape": r.placed.shape, "gpus": r.placed.gpus, "usd_per_hour": r.placed.usd_per_hour,
            "stages": [{"node": s.node_id, "gpu": s.gpu, "tp": s.tp, "layers": [s.first_layer, s.first_layer + s.n_layers]}
                       for s in st],
            "max_rate_per_s": r.max_rate_per_s, "rate_per_s": r.rate_per_s, "router_weight": r.router_weight,
            "limited_by": r.limit, "rate_method": r.method,
            "ttft_ms": r.latency_ms["ttft"], "itl_ms": r.latency_ms["itl"], "tpot_ms": r.latency_ms["tpot"],
            "vllm": launch,
        })
    return {
        "mode": "slo", "status": result.status, "objective": result.objective,
        "request_rate_per_s": result.request_rate_per_s,
        "targets": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "percentile": slo.percentile},
        "usd_per_hour": result.usd_per_hour, "capacity_per_s": result.capacity_per_s,
        "spare_rate_per_s": result.spare_rate_per_s, "gap": result.gap, "solve_s": result.solve_s,
        "columns": result.columns, "search_space": result.search_space, "notes": result.notes,
        "router": {"policy": "weighted random (e.g. a load balancer with these weights)",
                   "weights": [r["router_weight"] for r in reps]},
        "replicas": reps,
    }


def slo_human(p: dict) -> str:
    t = p["targets"]
    q = f"p{t['percentile']:g}"
    targets = ", ".join(x for x in ((f"TTFT {q} < {t['ttft_ms']:g} ms" if t["ttft_ms"] else ""),
                                    (f"TPOT {q} < {t['tpot_ms']:g} ms" if t["tpot_ms"] else "")) if x)
    title = (f"{p['request_rate_per_s']:g} req/s with {targets}; objective {p['objective']}: "
             f"{p['status']}, ${p['usd_per_hour']:,.2f}/h, capacity {p['capacity_per_s']:.3g} req/s "
             f"(spare {p['spare_rate_per_s']:.3g})")
    rows = []
    for i, r in enumerate(p["replicas"]):
        rows.append([i, r["shape"], r["gpus"], r["usd_per_hour"], round(r["router_weight"], 3), r["rate_per_s"],
                     r["max_rate_per_s"], r["limited_by"], r["ttft_ms"]["p50"], r["ttft_ms"]["p90"],
                     r["tpot_ms"]["p50"], r["tpot_ms"]["p90"]])
    out = render(["replica", "shape", "gpus", "$/h", "weight", "req/s", "max req/s", "limit", "ttft_p50",
                  "ttft_p90", "tpot_p50", "tpot_p90"], rows, title + "\nlatency in ms at each replica's share")
    out += "\n\nvLLM launch per replica (route requests by the weights above):"
    for i, r in enumerate(p["replicas"]):
        v = r["vllm"]
        out += f"\n  [{i}] weight {r['router_weight']:.3f} on {', '.join(v['nodes'])}: " + (
            v["command"] if v["ok"] else v["reason"])
    for n in p["notes"]:
        out += f"\nnote: {n}"
    out += f"\nsearch space: {p['search_space']}; {p['columns']} replica layouts"
    return out
