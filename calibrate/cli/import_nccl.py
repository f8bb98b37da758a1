"""``calibrate import-nccl-tests``: nccl-tests ``*_perf`` logs -> raw CSV -> fits -> profile."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from calibrate.importers.nccl_tests import parse_file, to_raw
from calibrate.nccl.profile import (check_proxy, group_ranks, entry, fit_points, flagged_lines, nominal_gbps, provenance,
                                    write_collectives)
from calibrate.nccl.raw import to_csv_text
from calibrate.profile_io import command_line, read_profile_dict
from calibrate.raw_store import content_path, store
from solver.cli_common import positive_float, positive_int
from solver.inputs.profile import COLLECTIVES


def register(sub) -> None:
    p = sub.add_parser(
        "import-nccl-tests", help="import nccl-tests *_perf logs: raw CSV + fitted collectives",
        description="Parse nccl-tests output tables (new layout with a root column, or the old one "
                    "without), keep the out-of-place time (us, nccl-tests' mean over iterations), write "
                    "the raw points to CSV and merge one fit per (collective, ranks, scope) into the "
                    "profile's `collectives` (alpha in us, busbw in GB/s = 1e9 B/s per direction). "
                    "Ranks, nodes and GPU come from the log's device lines unless given as flags.")
    p.add_argument("logs", nargs="+", help="nccl-tests output files")
    p.add_argument("--out", required=True, help="profile JSON to create or merge into (other sections kept)")
    p.add_argument("--gpu", help="the profile's GPU (needed to create a missing profile; checked against an existing one)")
    p.add_argument("--raw-dir", help="folder for raw CSVs (default: <profile folder>/raw); files are named "
                                     "<log name>_<content hash>.csv and never overwritten")
    p.add_argument("--collective", choices=COLLECTIVES, help="collective measured (default: from the log or file name)")
    p.add_argument("--ranks", type=group_ranks, help="total ranks (GPUs) of the run, >= 2, if the log has no device lines")
    p.add_argument("--nodes", type=positive_int,
                   help="nodes of the run (>1 means scope inter_node); default from the log, else 1")
    p.add_argument("--log-gpu", help="GPU the log was measured on, if the log does not name it")
    p.add_argument("--nccl", help="NCCL version, if the log does not print it")
    p.add_argument("--source", choices=("measured", "published"),
                   help="measured = your own run; published = a public log (default: published if the log "
                        "cites a '# source:' URL or --ref is given, else measured)")
    p.add_argument("--ref", help="citation for the log (default: its '# source:' URL, else the file path)")
    p.add_argument("--proxy-reason", help="required when the log's GPU differs from the profile's: why its "
                                          "collectives stand for this GPU (goes into ref)")
    p.add_argument("--nominal-gbps", type=positive_float, help="nominal link GB/s per direction for `efficiency` "
                                                      "(default: the profile's gpu.intra_node_gbps, intra_node only)")
    p.set_defaults(func=run)


def _stem(path: str) -> str:
    return "nccl_" + re.sub(r"[^a-z0-9]+", "_", Path(path).stem.lower()).strip("_")


def run(args) -> int:
    command = command_line()
    base = read_profile_dict(args.out)
    profile_gpu = args.gpu or (base or {}).get("gpu", {}).get("name")
    raw_dir = Path(args.raw_dir) if args.raw_dir else Path(args.out).parent / "raw"
    all_entries, all_points, raw_paths, staged = [], [], [], []
    for log_path in args.logs:
        log = parse_file(log_path)
        source = args.source or ("published" if (log.source_url or args.ref) else "measured")
        pts = to_raw(log, collective=args.collective, ranks=args.ranks, nodes=args.nodes,
                     gpu=args.log_gpu, source=source, ref=args.ref, nccl=args.nccl)
        if log.truncation():
            print(f"warning: {log.truncation()}", file=sys.stderr)
        proxy = check_proxy(pts[0].gpu, profile_gpu, args.proxy_reason, log_path)
        ref = "; ".join(x for x in (pts[0].ref, f"{pts[0].ranks}x {pts[0].gpu or 'GPU not named'}, "
                                                 f"{pts[0].nodes} node(s), nccl-tests", proxy) if x)
        for fit, gpts in fit_points(pts, log_path):
            nom, _ = nominal_gbps(fit.scope, base, profile_gpu or pts[0].gpu, args.nominal_gbps)
            all_entries.append(entry(fit, gpts, ref=ref, nominal=nom))
            print(f"{log_path}: {fit.collective} n={fit.ranks} {fit.scope}: alpha {fit.alpha_us:.2f} us, "
                  f"busbw {fit.busbw_gbps:.1f} GB/s, {fit.method}, held-out max err {fit.max_rel_err:.1%}")
        for line in flagged_lines(pts, log_path):
            print(line)
        text = to_csv_text(pts)  # with the flags the fit set
        raw_path = content_path(raw_dir, _stem(log_path), text)
        staged.append((_stem(log_path), text))
        raw_paths.append(str(raw_path))
        all_points += pts
    prov = provenance(all_points, command, raw_paths, f"nccl-tests logs imported ({', '.join(args.logs)})")
    for stem, text in staged:  # only after every log parsed and fitted; never overwrites
        store(raw_dir, stem, text)
    write_collectives(args.out, all_entries, prov, gpu=args.gpu, command=command)
    print(f"wrote {args.out} ({len(all_entries)} collective fit(s)); raw points in {', '.join(raw_paths)}")
    return 0
