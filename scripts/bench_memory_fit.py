"""Held-out error of the activation-peak, prefill-time and vLLM KV-cache fits.

    python scripts/bench_memory_fit.py [profiles/raw/h100_native.csv profiles/raw/h100_transformers.csv]
        [--vllm ../shared/data/vllm_memory/logs.csv]

KV cache per GPU (``--vllm``): every start-up point the model can predict (calibrate/memory/
vllm_fit.py: a dense model whose shapes it knows, a vLLM version in 0.6-0.34
(engine_settings.SUPPORTED; from 0.20 the row's logged CUDA-graph GiB comes off the budget,
not on Model Runner V2 before 0.29), a
known GPU memory) predicted end to end -- weights from solver.cost.memory, the engine's non-torch memory
and profile-run peak from the fit -- against the KV GiB vLLM printed, fit rows and held-out
rows apart; rows it cannot predict are listed with the reason.

Extra held-out set (``--vllm-extra``, default data/vllm_memory_extra/logs.csv): fitted on the
``--vllm`` points only, then every extra row is predicted the same way -- no row of it enters any
fit, so its table is a fully held-out judge of the KV-cache prediction (reported, never gating).

KV cache interval: for every predicted row of both sets, the [low, high] the solver's corners
give (solver/cost/intervals.py on the section the fit would ship for the row's GPU; vllm_fit.
kv_interval), widened by the family's held-out reservation error (the section's fit_error), whether
the logged KV lies inside, why not, and the coverage per set (reported, never gating). The shared
held-out rows' own errors set that width, so their coverage is not an independent test; the
extra set's (never fitted) is.

For each runtime in the raw files: fit the activation model (tokens_linear_v1) and the prefill
time model (with and without the unsharded HBM-pass term) with the same hold-out as
scripts/build_published_profiles.sh, and print predicted vs measured for every held-out row,
then max / mean relative error. Rows outside a fit's selection (1-layer HF stages, plain-MLP
native layers) are shown against that fit too, labelled, since they say where it stops holding.
Exit 1 if any held-out max error exceeds --threshold (default 0.10).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibrate.memory import fit as mem_fit  # noqa: E402
from calibrate.memory.profile import DEFAULT_HOLDOUT  # noqa: E402

GIB = 2**30
PEAK_FLOPS, HBM_BYTES_PER_S = 989e12, 3350e9  # H100 SXM datasheet (design.md section 3)


def _label(r: dict) -> str:
    return f"b={r['batch']:<3}s={r['seq']:<5}h={r['hidden']:<5}f={r['ffn']:<6}t={r['tp']} L={r['layers']}"


def bench_memory(rows: list[dict], runtime: str, holdout: list[dict]) -> float:
    min_layers = 2 if runtime.startswith("transformers") else 1
    sel = [r for r in rows if r["runtime"] == runtime and r["layers"] >= min_layers and r["gated_mlp"]]
    fit = mem_fit.fit_activation(sel, holdout)
    print(f"\n== activation peak minus KV, {runtime} (gated MLP, layers >= {min_layers}); fit on "
          f"{len(fit.fit_rows)}, held out {len(fit.held_rows)}")
    print("   coef: " + ", ".join(f"{k}={v:.6g}" for k, v in fit.coef.items()))
    print(f"   {'point':<44}{'measured GiB':>13}{'predicted GiB':>14}{'error':>8}")
    for r, e in zip(fit.held_rows, fit.held_err):
        print(f"   {_label(r):<44}{mem_fit.activation_target(r) / GIB:>13.4f}"
              f"{mem_fit.predict_activation(fit.coef, r) / GIB:>14.4f}{e:>+8.1%}")
    held, infit = mem_fit.error_summary(fit.held_err), mem_fit.error_summary(fit.fit_err)
    print(f"   held-out: max {held['max_rel']:.1%} mean {held['mean_rel']:.1%}   "
          f"(in-fit: max {infit['max_rel']:.1%} mean {infit['mean_rel']:.1%})")
    other = [r for r in rows if r["runtime"] == runtime and r not in sel]
    if other:
        errs = [mem_fit.predict_activation(fit.coef, r) / mem_fit.activation_target(r) - 1 for r in other]
        what = "1-layer stages" if runtime.startswith("transformers") else "plain-MLP layers"
        print(f"   outside the selection ({what}, n={len(other)}): error {min(errs):+.1%} .. {max(errs):+.1%}")
    return held["max_rel"] or 0.0


def bench_prefill(rows: list[dict], runtime: str, holdout: list[dict], elementwise: bool) -> float:
    # HF 1-layer timings are one wall-clock call dominated by host overhead (shared README)
    min_layers = 2 if runtime.startswith("transformers") else 1
    sel = [r for r in rows if r["runtime"] == runtime and r["phase"] == "prefill" and r["layers"] >= min_layers]
    fit = mem_fit.fit_prefill(sel, holdout, PEAK_FLOPS, HBM_BYTES_PER_S, elementwise=elementwise)
    kind = ("eff(x) + unsharded passes" if elementwise else "eff(x) alone") + f", layers >= {min_layers}"
    print(f"\n== prefill time, {runtime}, {kind}: eff_max={fit.eff_max:.4f} x_half={fit.x_half_gflop:.3g} GFLOP "
          f"passes={fit.passes:.3g}; fit on {len(fit.fit_rows)}, held out {len(fit.held_rows)}")
    print(f"   {'point':<44}{'measured ms':>12}{'predicted ms':>13}{'error':>8}")
    for r, e in zip(fit.held_rows, fit.held_err):
        print(f"   {_label(r):<44}{r['time_ms']:>12.3f}{r['time_ms'] * (1 + e):>13.3f}{e:>+8.1%}")
    held, infit = mem_fit.error_summary(fit.held_err), mem_fit.error_summary(fit.fit_err)
    print(f"   held-out: max {held['max_rel']:.1%} mean {held['mean_rel']:.1%}   "
          f"(in-fit: max {infit['max_rel']:.1%} mean {infit['mean_rel']:.1%})")
    return held["max_rel"] or 0.0


def bench_phases(rows: list[dict], runtime: str, holdout: list[dict]) -> float:
    """The same rows under phases_max_v1 (calibrate/memory/phases.py): max over MLP and norm."""
    from calibrate.memory.phases import fit_rows
    min_layers = 2 if runtime.startswith("transformers") else 1
    sel = [r for r in rows if r["runtime"] == runtime and r["layers"] >= min_layers and r["gated_mlp"]]
    fit, fit_r, held_r = fit_rows(sel, holdout)
    print(f"\n== activation peak minus KV, {runtime}, phases_max_v1: " +
          "; ".join(f"{n}: " + " ".join(f"{k}={v:.4g}" for k, v in c.items()) for n, c in fit.phases.items()))
    for r, e in zip(held_r, fit.held_err):
        print(f"   {_label(r):<44}{mem_fit.activation_target(r) / GIB:>13.4f}"
              f"{mem_fit.activation_target(r) * (1 + e) / GIB:>14.4f}{e:>+8.1%}")
    held, infit = mem_fit.error_summary(fit.held_err), mem_fit.error_summary(fit.fit_err)
    print(f"   held-out: max {held['max_rel']:.1%} mean {held['mean_rel']:.1%}   "
          f"(in-fit: max {infit['max_rel']:.1%} mean {infit['mean_rel']:.1%})")
    return held["max_rel"] or 0.0


def bench_vllm_kv(points: list[str], holdout_spec: str, fitted: tuple | None = None) -> dict:
    """KV cache GiB per GPU, predicted vs printed; returns {"fit": errors, "held": errors}.
    ``fitted``: ``vllm_fit.fit_points(points, holdout_spec)`` when the caller has it."""
    from calibrate.memory import vllm_fit
    fits, skipped = fitted or vllm_fit.fit_points(points, holdout_spec)
    errs: dict = {"fit": [], "held": []}
    print(f"\n== vLLM KV cache per GPU (GiB), {', '.join(points)}; held out: {holdout_spec}")
    print(f"   {'line':<5}{'set':<6}{'vLLM':<10}{'GPU':<11}{'model':<33}{'TP':>3}{'tokens':>7}{'phase':>8}"
          f"{'weights':>8}{'nt':>6}{'act':>6}{'logged':>8}{'pred':>8}{'error':>8}")
    for fam, ff in sorted(fits.items()):
        for tag, cases in (("fit", ff.fit_cases), ("held", ff.held_cases)):
            for c in cases:
                p, meas = vllm_fit.predict_case(c, ff), c.kv_measured_gib()
                e = vllm_fit.kv_error(c, ff)
                if e is None:
                    continue
                errs[tag].append(e)
                print(f"   {c.row['line']:<5}{tag:<6}{'%d.%d' % c.version:<10}{c.row['gpu'][:10]:<11}"
                      f"{c.row['model'][:32]:<33}{c.tp:>3}{c.tokens:>7}{p['phase']:>8}{p['weights_gib']:>8.2f}"
                      f"{p['non_torch_gib']:>6.2f}{p['activation_peak_gib']:>6.2f}{meas:>8.2f}"
                      f"{p['kv_cache_gib']:>8.2f}{e:>+8.1%}")
        print(f"   {fam}: phases {ff.phases}; non-torch {ff.non_torch}")
    for tag in ("fit", "held"):
        a = [abs(e) for e in errs[tag]]
        if a:
            print(f"   {tag}: n={len(a)} mean {sum(a) / len(a):.1%} max {max(a):.1%}")
    print(f"   not predicted ({len(skipped)}): " + "; ".join(f"line {r['line']} {r['model'][:28]}: {r['why']}"
                                                          for r in skipped))
    return errs


def extra_cases(fits: dict, extra: list[str]):
    """(row, case, family fit, KV GiB logged, why not predicted) of every row of the ``extra`` CSVs."""
    from calibrate.memory import vllm_fit
    for path in extra:
        for r in vllm_fit.read_points(path):
            c, why = vllm_fit.resolve(r)
            if c is not None and c.pp > 1:
                c, why = None, "PP > 1 (the fit's weights and KV are per TP rank of one stage)"
            ff = fits.get(c.family) if c is not None else None
            if c is not None and ff is None:
                why = f"no {c.family} fit in the points"
            meas = c.kv_measured_gib() if ff is not None else None
            ok = meas is not None and meas > 0
            yield r, c if ok else None, ff, meas, "" if ok else why or "no KV figure"


def bench_vllm_extra(points: list[str], holdout_spec: str, extra: list[str], fits: dict | None = None) -> list[float]:
    """KV GiB per GPU of every extra row, predicted from a fit on ``points`` alone (``fits``:
    that fit, when the caller has it)."""
    from calibrate.memory import vllm_fit
    fits = fits or vllm_fit.fit_points(points, holdout_spec)[0]
    errs, skipped = [], []
    print(f"\n== vLLM KV cache per GPU (GiB), fully held out: {', '.join(extra)}; fitted on {', '.join(points)} only")
    print(f"   {'line':<5}{'vLLM':<9}{'GPU':<11}{'model':<33}{'TP':>3}{'tokens':>7}{'logged':>8}{'from':>7}"
          f"{'pred':>8}{'error':>8}")
    for r, c, ff, meas, why in extra_cases(fits, extra):
        if c is None:
            skipped.append((r, why))
            continue
        p = vllm_fit.predict_case(c, ff)
        e = p["kv_cache_gib"] / meas - 1
        errs.append(e)
        src = "tokens" if r.get("kv_tokens") is not None else "blocks" if r.get("gpu_blocks") is not None else "GiB"
        print(f"   {r['line']:<5}{'%d.%d' % c.version:<9}{r['gpu'][:10]:<11}{r['model'][:32]:<33}{c.tp:>3}"
              f"{c.tokens:>7}{meas:>8.2f}{src:>7}{p['kv_cache_gib']:>8.2f}{e:>+8.1%}")
    a = [abs(e) for e in errs]
    if a:
        print(f"   extra held-out: n={len(a)} mean {sum(a) / len(a):.1%} max {max(a):.1%}")
    print(f"   not predicted ({len(skipped)}):")
    for r, why in skipped:
        par = f"TP{int(r['tp'] or 1)}" + (f" PP{int(r['pp'])}" if (r.get("pp") or 1) > 1 else "")
        print(f"     line {r['line']} {r['vllm_version'][:12]} {r['gpu']} {r['model'][:40]} {par}: {why}")
    return errs


# Engine settings a log may leave unstated: the prediction takes vLLM's default for them, a
# known value (engine_settings), as the solver does for a user who leaves them at default.
SETTINGS = ("gpu_memory_utilization", "max_num_batched_tokens", "max_num_seqs", "max_model_len")


def kv_interval_row(c, ff, fits: dict, holdout_spec: str) -> dict:
    """One row's KV interval (vllm_fit.kv_interval), whether the logged KV lies inside it (to
    the logged figure's resolution, Case.kv_resolution_gib) and, if not, why."""
    from calibrate.memory import vllm_fit
    iv, meas = vllm_fit.kv_interval(c, ff, fits, holdout_spec), c.kv_measured_gib()
    below, above = c.kv_resolution_gib()
    inside = iv["low"] - below <= meas <= iv["high"] + above
    why = ""
    if not inside:
        end = iv["low"] if meas < iv["low"] else iv["high"]
        why = (f"logged {'below low' if meas < iv['low'] else 'above high'} by {meas / end - 1:+.1%}; "
               + ("no default widens it (the GPU's own non-torch fit; settings, total, graphs and sampler "
                  "known)" if not iv["defaults"] else "outside what the default ranges span")
               + f", only the family's held-out reservation error +/- {iv['fit_error_gib']:.3f} GiB")
        unstated = [k for k in SETTINGS if c.row.get(k) in (None, "")]
        why += f"; unstated in the log (vLLM's default taken): {', '.join(unstated)}" if unstated else ""
    return {**iv, "logged": meas, "inside": inside, "why": why}


def bench_vllm_kv_interval(points: list[str], holdout_spec: str, extra: list[str], fits: dict | None = None) -> dict:
    """KV GiB per GPU: the [low, high] each row's prediction implies over the solver's corners
    (solver/cost/intervals.py) against the logged figure; returns set -> [inside, rows]."""
    from calibrate.memory import vllm_fit
    fits = fits or vllm_fit.fit_points(points, holdout_spec)[0]
    rows = [(tag, c, ff) for ff in fits.values() for tag, cases in (("fit", ff.fit_cases), ("held", ff.held_cases))
            for c in cases if (c.kv_measured_gib() or 0) > 0]
    rows += [("extra", c, ff) for _r, c, ff, _m, _w in extra_cases(fits, extra) if c is not None]
    print(f"\n== vLLM KV cache interval per GPU (GiB): the solver's corners (defaults at their plausible ends, "
          f"FlashInfer where unlogged) on the fit's prediction; held out: {holdout_spec}")
    print(f"   {'line':<5}{'set':<6}{'vLLM':<6}{'GPU':<11}{'TP':>3}{'logged':>8}{'low':>8}{'exp':>8}{'high':>8}  "
          f"{'in':<4}widened by / why outside")
    cover: dict = {}
    for tag, c, ff in rows:
        k = kv_interval_row(c, ff, fits, holdout_spec)
        cover.setdefault(tag, [0, 0])[0] += k["inside"]
        cover[tag][1] += 1
        print(f"   {c.row['line']:<5}{tag:<6}{'%d.%d' % c.version:<6}{c.row['gpu'][:10]:<11}{c.tp:>3}"
              f"{k['logged']:>8.2f}{k['low']:>8.2f}{k['expected']:>8.2f}{k['high']:>8.2f}  {'yes' if k['inside'] else 'NO':<4}"
              + (k["why"] or ", ".join(k["defaults"] + [f"fit error +/- {k['fit_error_gib']:.3f} GiB"])))
    for tag, (n_in, n) in cover.items():
        print(f"   {tag}: {n_in}/{n} logged KV inside [low, high]")
    return cover


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw", nargs="*", default=["profiles/raw/h100_native.csv", "profiles/raw/h100_transformers.csv"])
    p.add_argument("--holdout", default=DEFAULT_HOLDOUT)
    p.add_argument("--threshold", type=float, default=0.10)
    shared = Path(__file__).resolve().parents[2] / "shared/data/vllm_memory/logs.csv"
    p.add_argument("--vllm", nargs="*", default=[str(shared)] if shared.exists() else [],
                   help="vLLM start-up point CSVs (default: the shared logs.csv when present)")
    p.add_argument("--vllm-holdout", default=None, help="held-out rows of the points (default: fit-memory --vllm's)")
    extra = Path(__file__).resolve().parents[1] / "data/vllm_memory_extra/logs.csv"
    p.add_argument("--vllm-extra", nargs="*", default=[str(extra)] if extra.exists() else [],
                   help="start-up points judged fully held out: never fitted on (default: data/vllm_memory_extra/logs.csv)")
    args = p.parse_args(argv)
    rows = [r for path in args.raw for r in mem_fit.read_raw(path)]
    holdout = mem_fit.parse_holdout(args.holdout)
    worst = {}
    for runtime in sorted({r["runtime"] for r in rows}):
        worst[f"memory {runtime}"] = bench_memory(rows, runtime, holdout)
        worst[f"memory {runtime} (phases)"] = bench_phases(rows, runtime, holdout)
        worst[f"prefill {runtime} (+passes)"] = bench_prefill(rows, runtime, holdout, True)
        worst[f"prefill {runtime} (curve only)"] = bench_prefill(rows, runtime, holdout, False)
    if args.vllm:
        from calibrate.memory import vllm_fit
        from calibrate.memory.vllm_cli import VLLM_DEFAULT_HOLDOUT
        spec = args.vllm_holdout or VLLM_DEFAULT_HOLDOUT
        fitted = vllm_fit.fit_points(args.vllm, spec)  # one fit, judged three ways below
        kv = bench_vllm_kv(args.vllm, spec, fitted)
        worst["vLLM KV cache per GPU (held-out rows)"] = max((abs(e) for e in kv["held"]), default=0.0)
        if args.vllm_extra:
            extra_errs = bench_vllm_extra(args.vllm, spec, args.vllm_extra, fitted[0])
            worst["vLLM KV cache per GPU (extra set, never fitted)"] = max((abs(e) for e in extra_errs), default=0.0)
        cover = bench_vllm_kv_interval(args.vllm, spec, args.vllm_extra, fitted[0])
    print("\n== summary: held-out max relative error")
    for k, v in worst.items():
        print(f"   {k:<52}{v:>7.1%}  {'ok' if v <= args.threshold else 'ABOVE ' + format(args.threshold, '.0%')}")
    for tag, (n_in, n) in (cover.items() if args.vllm else ()):
        print(f"   vLLM KV cache interval coverage, {tag + ' rows':<30}{n_in:>3}/{n}  (reported, not gated)")
    shipped = ("memory transformers-5.17-sdpa (phases)", "prefill native-sdpa (+passes)")
    return 1 if any(worst.get(k, 0) > args.threshold for k in shipped) else 0


if __name__ == "__main__":
    sys.exit(main())
