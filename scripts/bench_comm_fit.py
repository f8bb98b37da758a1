"""Held-out error of the collective fits on real nccl-tests logs.

    python scripts/bench_comm_fit.py [LOG_DIR or logs ...] [--threshold 0.10]

For each log: alpha (us), busbw (GB/s), the model kept (line, line+table, or a 2-3 line
envelope, chosen by leave-one-out on the fitted sizes only), and the max / mean relative error at the sizes left out of the fit (every
other size, both halves) within 4 KiB - 1 GiB, plus each held-out size beyond the threshold.
Points the outlier rule flags (calibrate/nccl/outliers.py: flagged on each fold's training
half and left out of its fit; flagged on the whole log and left out of the error) are all
listed with the reason; ``max_err`` is over held-out points not flagged.
Exit status 1 when any log's max held-out error exceeds --fail-above (default: never).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibrate.nccl.fit import fit_group  # noqa: E402
from calibrate.importers.nccl_tests import parse_file  # noqa: E402
from solver.units import fmt_bytes  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nccl"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("logs", nargs="*", default=[str(DEFAULT_DIR)])
    p.add_argument("--threshold", type=float, default=0.10, help="list held-out sizes above this error")
    p.add_argument("--fail-above", type=float, default=None, help="exit 1 if a max error exceeds this")
    args = p.parse_args(argv)
    files = []
    for a in args.logs:
        files += sorted(Path(a).glob("*.log")) if Path(a).is_dir() else [Path(a)]
    print(f"{'log':<56}{'collective':<15}{'n':>3} {'scope':<11}{'alpha_us':>9}{'busbw_GB/s':>11}"
          f"{'model':>11}{'line_max':>9}{'max_err':>8}{'mean_err':>9}{'flagged':>8}")
    worst, bad, flagged = 0.0, [], []
    for f in files:
        log = parse_file(f)
        scope = "inter_node" if (log.nodes or 1) > 1 else "intra_node"
        fit = fit_group(log.collective, log.ranks, scope, log.sizes, log.time_us)
        worst = max(worst, fit.max_rel_err)
        print(f"{f.name[:55]:<56}{fit.collective:<15}{fit.ranks:>3} {scope:<11}{fit.alpha_us:>9.2f}"
              f"{fit.busbw_gbps:>11.1f}{fit.method:>11}{fit.line_max_rel_err:>9.1%}{fit.max_rel_err:>8.1%}"
              f"{fit.mean_rel_err:>9.1%}{len(fit.flagged):>8}")
        flagged += [(f.name, s, why) for s, why in sorted(fit.flagged.items())]
        bad += [(f.name, s, p_ / m - 1) for s, m, p_ in fit.held_out if abs(p_ / m - 1) > args.threshold]
    if bad:
        print(f"\nheld-out sizes with error above {args.threshold:.0%} (predicted/measured - 1):")
        for name, s, e in bad:
            print(f"  {name[:55]:<56}{fmt_bytes(s):>10} {e:+.1%}")
    print(f"\nflagged as anomalous (not fitted, not in max_err): {len(flagged) or 'none'}")
    for name, s, why in flagged:
        print(f"  {name[:55]:<56}{fmt_bytes(s):>10} {why}")
    print(f"\nworst held-out error over points not flagged: {worst:.1%}")
    return 1 if args.fail_above is not None and worst > args.fail_above else 0


if __name__ == "__main__":
    sys.exit(main())
