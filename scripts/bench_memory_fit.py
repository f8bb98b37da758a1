"""Held-out error of the activation-peak and prefill-time fits, per runtime, on raw CSVs.

    python scripts/bench_memory_fit.py [profiles/raw/h100_native.csv profiles/raw/h100_transformers.csv]

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw", nargs="*", default=["profiles/raw/h100_native.csv", "profiles/raw/h100_transformers.csv"])
    p.add_argument("--holdout", default=DEFAULT_HOLDOUT)
    p.add_argument("--threshold", type=float, default=0.10)
    args = p.parse_args(argv)
    rows = [r for path in args.raw for r in mem_fit.read_raw(path)]
    holdout = mem_fit.parse_holdout(args.holdout)
    worst = {}
    for runtime in sorted({r["runtime"] for r in rows}):
        worst[f"memory {runtime}"] = bench_memory(rows, runtime, holdout)
        worst[f"prefill {runtime} (+passes)"] = bench_prefill(rows, runtime, holdout, True)
        worst[f"prefill {runtime} (curve only)"] = bench_prefill(rows, runtime, holdout, False)
    print("\n== summary: held-out max relative error")
    for k, v in worst.items():
        print(f"   {k:<52}{v:>7.1%}  {'ok' if v <= args.threshold else 'ABOVE ' + format(args.threshold, '.0%')}")
    shipped = ("memory transformers-5.17-sdpa", "prefill native-sdpa (+passes)")
    return 1 if any(worst.get(k, 0) > args.threshold for k in shipped) else 0


if __name__ == "__main__":
    sys.exit(main())
