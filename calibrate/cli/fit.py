"""``calibrate fit``: refit collectives from raw CSVs (no hardware needed) into a profile."""

from __future__ import annotations


from calibrate.nccl.profile import entry, fit_points, nominal_gbps, provenance, write_collectives
from calibrate.profile_io import command_line, read_profile_dict
from calibrate.nccl.raw import read_raw


def register(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit raw collective CSVs (profiles/raw/*.csv) into a profile",
        description="Fit t(S) = alpha + factor(n)*S/busbw per (collective, ranks, scope) from raw points "
                    "(alpha in us, busbw in GB/s = 1e9 B/s per direction, S the nccl-tests size in bytes). "
                    "Held-out error: every other size left out, reported over 4 KiB - 1 GiB. Per group the model "
                    "(one line, the measured points as a table linear in S, or the lower envelope of 2-3 lines) "
                    "is chosen by leave-one-out over the fitted sizes only.")
    p.add_argument("raw", nargs="+", help="raw CSVs written by scripts/profile_nccl.py or import-nccl-tests")
    p.add_argument("--out", required=True, help="profile JSON to create or merge into (other sections kept)")
    p.add_argument("--gpu", help="the profile's GPU (needed to create a missing profile)")
    p.add_argument("--nominal-gbps", type=float, help="nominal link GB/s per direction for `efficiency` "
                                                      "(default: the profile's gpu.intra_node_gbps, intra_node only)")
    p.add_argument("--line-only", action="store_true",
                   help="fit the single alpha-beta line only (no table, no envelope)")
    p.set_defaults(func=run)


def run(args) -> int:
    command = command_line()
    base = read_profile_dict(args.out)
    points, entries = [], []
    for path in args.raw:
        pts = read_raw(path)
        for fit, gpts in fit_points(pts, path, table_if=None if args.line_only else 0.10):
            nom, _ = nominal_gbps(fit.scope, base, args.gpu or gpts[0].gpu, args.nominal_gbps)
            ref = "; ".join(sorted({p.ref for p in gpts if p.ref})) or path
            entries.append(entry(fit, gpts, ref=ref, nominal=nom))
            print(f"{path}: {fit.collective} n={fit.ranks} {fit.scope}: alpha {fit.alpha_us:.2f} us, "
                  f"busbw {fit.busbw_gbps:.1f} GB/s, {fit.method}, held-out max err {fit.max_rel_err:.1%}")
        points += pts
    prov = provenance(points, command, list(args.raw), "collectives refitted from raw CSVs")
    write_collectives(args.out, entries, prov, gpu=args.gpu, command=command)
    print(f"wrote {args.out} ({len(entries)} collective fit(s))")
    return 0
