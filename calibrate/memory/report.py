"""Memory and compute part of ``calibrate report``: a table of the fits and a PNG of
predicted vs measured (activation peak; prefill time), held-out points marked.

``memory_report(profile_dict, raw_paths=None) -> str`` and
``plot_memory(profile_dict, raw_csv, png_path) -> bool`` are what ``calibrate report`` calls.
"""

from __future__ import annotations

from calibrate.memory import fit as mem_fit
from solver.units import GIB


def _err(fe: dict | None) -> str:
    if not fe or fe.get("max_rel") is None:
        return "no held-out error"
    return (f"held-out max {fe['max_rel']:.1%} mean {fe['mean_rel']:.1%} (n={fe.get('held_out')}), "
            f"in-fit max {fe.get('in_fit_max_rel', float('nan')):.1%} (n={fe.get('fit_points')})")


def _rows_for(raw_paths, runtime: str, fe: dict | None) -> list[tuple[dict, bool]]:
    """Raw rows of ``runtime`` passing the fit's selection, each with held-out flag."""
    if not raw_paths or not fe:
        return []
    sel = fe.get("selection", {})
    hold = mem_fit.parse_holdout(fe.get("holdout", ""))
    out = []
    for path in ([raw_paths] if isinstance(raw_paths, str) else raw_paths):
        for r in mem_fit.read_raw(path):
            if r["runtime"] != runtime or r["phase"] != "prefill" or r["layers"] < sel.get("min_layers", 1):
                continue
            if "mlp" in sel and bool(r["gated_mlp"]) != (sel["mlp"] == "gated"):
                continue
            out.append((r, mem_fit.is_held_out(r, hold)))
    return out


def _prefill_pred(prof: dict, r: dict) -> float:
    comp = prof["compute"]
    c = comp["prefill_efficiency"]
    eff_max, x_half = (c["value"], 0.0) if c["kind"] == "constant" else (c.get("eff_max"), c.get("x_half"))
    passes = comp.get("prefill_elementwise_passes", {}).get("value", 0.0)
    peak = prof["gpu"]["peak_tflops"].get(r["dtype"], prof["gpu"]["peak_tflops"].get("fp16"))["value"] * 1e12
    return mem_fit.predict_prefill_s(r, eff_max, x_half, passes, peak, prof["gpu"]["hbm_gbps"]["value"] * 1e9)


def predict_record(act: dict, r: dict) -> float:
    """Predicted peak minus KV of a raw row under a profile's activation record (either model)."""
    if "phases" in act:
        from calibrate.memory.phases import predict
        from solver.cost.activation import phase_terms
        return predict(act["phases"], phase_terms(mem_fit.row_model(r), r["tp"], r["batch"], r["seq"],
                                                  r["dtype_bytes"]))[0]
    return mem_fit.predict_activation(act["coef"], r)


def _g(v) -> str:
    """A number as %.4g; anything else (the loader defaults a null coefficient) as text."""
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def memory_report(prof: dict, raw_paths=None) -> str:
    """Text table: activation model, overheads, prefill curve; per-point rows when raw given."""
    mem, comp = prof.get("memory", {}), prof.get("compute", {})
    lines = ["memory / compute fits", "-" * 60]
    act = mem.get("activation_peak")
    if act:
        coef = ("  ".join(f"{k}={_g(v)}" for k, v in act["coef"].items()) if "coef" in act else
                " | ".join(f"{n}: " + " ".join(f"{k}={_g(v)}" for k, v in c.items() if v)
                           for n, c in act["phases"].items()))
        rng = ", ".join(f"{k} {_g(v[0])}-{_g(v[1])}" if isinstance(v, list) and len(v) == 2 else f"{k} {v}"
                        for k, v in (act.get("range") or {}).items())
        lines += [f"activation_peak  {act['model']}  runtime {act.get('runtime', '?')}  [{act['source']}]",
                  f"  {coef}", f"  range: {rng}", f"  {_err(act.get('fit_error'))}"]
    else:
        lines.append("activation_peak  (none: solver uses its analytic default)")
    for k in ("runtime_overhead_gib", "fragmentation_frac"):
        if k in mem:
            lines.append(f"{k:<22} {_g(mem[k]['value']):<10} [{mem[k]['source']}]")
    for k in ("prefill_efficiency", "decode_efficiency"):
        c = comp.get(k)
        if not c:
            continue
        shape = (f"{c['value']:.3f}" if c["kind"] == "constant" else
                 f"{c['eff_max']:.3f} * x/(x + {c['x_half']:g})" if c["kind"] == "saturating" else "table")
        lines.append(f"{k:<22} {shape} (x = {c.get('x_quantity')}) [{c['source']}]  {_err(c.get('fit_error'))}")
    if "prefill_elementwise_passes" in comp:
        lines.append(f"prefill_elementwise_passes {comp['prefill_elementwise_passes']['value']:.3g} "
                     f"[{comp['prefill_elementwise_passes']['source']}]")
    if act:
        pts = _rows_for(raw_paths, act.get("runtime", ""), act.get("fit_error"))
        if pts:
            lines += ["", f"activation peak minus KV ({act.get('runtime')}), GiB",
                      f"{'b':>4}{'s':>6}{'h':>6}{'t':>3}{'L':>3} {'measured':>9}{'predicted':>10}{'err':>8}  set"]
            for r, held in sorted(pts, key=lambda p: (not p[1], p[0]["tp"], p[0]["batch"] * p[0]["seq"])):
                y, pr = mem_fit.activation_target(r), predict_record(act, r)
                lines.append(f"{r['batch']:>4}{r['seq']:>6}{r['hidden']:>6}{r['tp']:>3}{r['layers']:>3} "
                             f"{y / GIB:>9.4f}{pr / GIB:>10.4f}{pr / y - 1:>+8.1%}  {'held-out' if held else 'fit'}")
    return "\n".join(lines)


def plot_memory(prof: dict, raw_csv, png_path: str) -> bool:
    """Two panels, predicted vs measured with y = x: activation peak minus KV, prefill time."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no memory PNG (pip install '.[plot]')")
        return False
    act = prof.get("memory", {}).get("activation_peak")
    pre = prof.get("compute", {}).get("prefill_efficiency", {})
    panels = []
    if act:
        pts = _rows_for(raw_csv, act.get("runtime", ""), act.get("fit_error"))
        panels.append((f"activation peak - KV, GiB ({act.get('runtime')})",
                       [(mem_fit.activation_target(r) / GIB, predict_record(act, r) / GIB, h)
                        for r, h in pts]))
    runtime = (pre.get("fit_error") or {}).get("runtime", "")
    if runtime:
        pts = [(r, h) for r, h in _rows_for(raw_csv, runtime, pre.get("fit_error")) if r.get("time_ms")]
        panels.append((f"prefill time, ms ({runtime})",
                       [(r["time_ms"], _prefill_pred(prof, r) * 1e3, h) for r, h in pts]))
    panels = [p for p in panels if p[1]]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    for ax, (title, pts) in zip(axes[0], panels):
        for held, marker, label in ((False, "o", "fit"), (True, "x", "held out")):
            sel = [(m, p) for m, p, h in pts if h == held]
            if sel:
                ax.plot([m for m, _ in sel], [p for _, p in sel], marker, ls="", label=label)
        lo = min(min(m, p) for m, p, _ in pts) * 0.8
        hi = max(max(m, p) for m, p, _ in pts) * 1.25
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.85", label="+-10%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from calibrate.figures import save  # temp file + rename, one-line error
    try:
        save(fig, png_path)
    finally:
        plt.close(fig)
    return True
