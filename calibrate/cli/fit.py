"""``calibrate fit``: refit collectives from raw CSVs (no hardware needed) into a profile."""

from __future__ import annotations

from calibrate.nccl.profile import (check_proxy, entry, fit_points, flagged_lines, nominal_gbps, provenance,
                                    write_collectives)
from calibrate.nccl.raw import read_raw
from calibrate.profile_io import command_line, read_profile_dict
from solver.cli_common import positive_float


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
    p.add_argument("--nominal-gbps", type=positive_float, help="nominal link GB/s per direction for `efficiency` "
                                                      "(default: the profile's gpu.intra_node_gbps, intra_node only)")
    p.add_argument("--proxy-reason", help="required when a raw file's GPU differs from the profile's: why its "
                                          "collectives stand for this GPU (goes into ref), as for import-nccl-tests")
    p.add_argument("--line-only", action="store_true",
                   help="fit the single alpha-beta line only (no table, no envelope)")
    p.set_defaults(func=run)


def run(args) -> int:
    command = command_line()
    base = read_profile_dict(args.out)
    profile_gpu = args.gpu or (base or {}).get("gpu", {}).get("name")
    synthetic = bool((base or {}).get("provenance", {}).get("synthetic"))
    points, entries = [], []
    for path in args.raw:
        pts = read_raw(path)
        proxies = {} if synthetic else {g: check_proxy(g, profile_gpu, args.proxy_reason, path)
                                        for g in sorted({p.gpu for p in pts})}
        for fit, gpts in fit_points(pts, path, table_if=None if args.line_only else 0.10):
            nom, _ = nominal_gbps(fit.scope, base, args.gpu or gpts[0].gpu, args.nominal_gbps)
            refs = sorted({p.ref for p in gpts if p.ref}) + sorted({proxies.get(p.gpu) for p in gpts} - {None, ""})
            entries.append(entry(fit, gpts, ref="; ".join(refs) or path, nominal=nom))
            print(f"{path}: {fit.collective} n={fit.ranks} {fit.scope}: alpha {fit.alpha_us:.2f} us, "
                  f"busbw {fit.busbw_gbps:.1f} GB/s, {fit.method}, held-out max err {fit.max_rel_err:.1%}")
        for line in flagged_lines(pts, path):
            print(line)
        points += pts
    prov = provenance(points, command, list(args.raw), "collectives refitted from raw CSVs")
    write_collectives(args.out, entries, prov, gpu=args.gpu, command=command)
    print(f"wrote {args.out} ({len(entries)} collective fit(s))")
    return 0
