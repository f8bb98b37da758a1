"""Online serving model vs real `vllm bench serve` runs (data/online/, sources per row).

Prints, per metric (TTFT / TPOT percentiles, output tokens/s), the mean and max error on
the rows marked ``fit`` and on the ``held-out`` rows, twice:
1. with the profile as given (datasheet numbers + documented defaults: nothing fitted);
2. after fitting one physics constant on the ``fit`` rows only -- the fraction of HBM
   bandwidth a decode step reaches (``compute.decode_efficiency``), by golden-section search
   on the mean |log(predicted / measured)| of their TPOT.
Held-out rows never enter the fit. The fitted value is printed, not written: profiles are
written by ``calibrate`` only.

    python scripts/bench_online.py [--csv data/online/a100_vllm019_online.csv]
                                   [--profile data/online/profiles/a100_pcie.json]
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solver.cost.warn import CalibrationWarning  # noqa: E402
from solver.inputs.online_csv import read_online  # noqa: E402
from solver.inputs.profile import Curve, load_profile  # noqa: E402
from solver.report.online_report import summary_table  # noqa: E402
from solver.report.online_rows import predict_online_row  # noqa: E402

FIT_METRIC = "tpot_p99_ms"
GOLDEN = (math.sqrt(5) - 1) / 2


def predict_all(rows, profile):
    return [predict_online_row(r, [profile], profile_override=profile) for r in rows]


def fit_loss(rows, profile) -> float:
    fit = [r for r in rows if r.split == "fit" and FIT_METRIC in r.measured]
    res = predict_all(fit, profile)
    return sum(abs(math.log(x.predicted[FIT_METRIC] / x.row.measured[FIT_METRIC])) for x in res) / len(res)


def with_decode_eff(profile, eff: float):
    curve = Curve("constant", "bytes", {"value": eff}, "published",
                  ref=f"fitted by scripts/bench_online.py on the fit rows' {FIT_METRIC}")
    return replace(profile, decode_efficiency=curve)


def golden_section(f, lo: float, hi: float, tol: float = 1e-3) -> float:
    a, b = lo, hi
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(d)
    return 0.5 * (a + b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", default=str(ROOT / "data/online/a100_vllm019_online.csv"))
    ap.add_argument("--profile", default=str(ROOT / "data/online/profiles/a100_pcie.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore", CalibrationWarning)
    rows = read_online(args.csv)
    profile = load_profile(args.profile)
    print(f"{len(rows)} rows ({sum(r.split == 'fit' for r in rows)} fit), profile {args.profile}\n")
    print("1. profile as given (decode_efficiency "
          f"{profile.decode_efficiency.at(1.0):g}, {profile.decode_efficiency.source})")
    print(summary_table(predict_all(rows, profile)))
    eff = golden_section(lambda e: fit_loss(rows, with_decode_eff(profile, e)), 0.3, 1.0)
    fitted = with_decode_eff(profile, eff)
    print(f"\n2. decode_efficiency fitted on the fit rows' {FIT_METRIC}: {eff:.3f}")
    print(summary_table(predict_all(rows, fitted)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
