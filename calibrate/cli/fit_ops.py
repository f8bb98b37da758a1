"""``calibrate fit-ops``: raw op sweeps (scripts/profile_ops.py) -> the profile's op tables."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from calibrate.defaults import skeleton
from calibrate.ops.tables import build_ops
from calibrate.profile_io import command_line, merge_sections, read_profile_dict, write_profile
from calibrate.profile_rules import check_proxy, check_synthetic
from calibrate.ops.sweep import COLUMNS
from solver.errors import InputError
from solver.inputs.fields import load_json, read_text


def register(sub) -> None:
    p = sub.add_parser(
        "fit-ops", help="build op tables (GEMM, attention, elementwise) from scripts/profile_ops.py raw data",
        description="Read the raw CSV of scripts/profile_ops.py (and its .meta.json), build full grids (points "
                    "the sweep skipped are filled by log-log extrapolation and counted in each table's note) "
                    "and write them as ops.<runtime> of the profile (schema 2). The source is the raw data's: "
                    "measured on a GPU, synthetic from --dry-run.")
    p.add_argument("csv", help="raw CSV written by scripts/profile_ops.py")
    p.add_argument("--out", required=True, help="profile JSON to merge into (created with --gpu if missing)")
    p.add_argument("--gpu", default=None, help="GPU of a new profile (datasheet name or alias)")
    p.add_argument("--runtime", default="native", help="runtime key of the tables (default native: torch kernels)")
    p.add_argument("--proxy-reason", help="required when the raw data's GPU (its .meta.json) differs from the "
                                          "profile's: why its op times stand for this GPU (goes into ref)")
    p.set_defaults(func=run)


def run(args) -> int:
    reader = csv.DictReader(io.StringIO(read_text(args.csv, newline="")))
    missing = [c for c in ("op", "time_us", "source") if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(args.csv, missing[0], f"required column is missing (columns: {', '.join(COLUMNS)})")
    rows = list(reader)
    for i, r in enumerate(rows, start=1):
        try:
            if not float(r["time_us"]) > 0:
                raise ValueError
        except ValueError:
            raise InputError(args.csv, f"row {i}, time_us", f"must be a number > 0, got {r['time_us']!r}") from None
    sources = {r["source"] for r in rows}
    if len(sources) != 1 or not sources <= {"measured", "synthetic"}:
        raise InputError(args.csv, "source", f"one of measured/synthetic for every row, got {sorted(sources)}")
    source = sources.pop()
    meta_path = Path(args.csv + ".meta.json")
    meta = load_json(meta_path) if meta_path.exists() else {}
    ref = (f"scripts/profile_ops.py raw data {Path(args.csv).name} ({meta.get('gpu', '?')}, torch "
           f"{meta.get('torch', '-')}, CUDA {meta.get('cuda', '-')}, driver {meta.get('driver', '-')}, "
           f"{meta.get('created', '')})")
    synthetic = source == "synthetic"
    base = read_profile_dict(args.out)
    if base is None:
        if not args.gpu:
            raise InputError(args.out, "", "does not exist; pass --gpu to create it")
        base = skeleton(args.gpu, command=command_line(), synthetic=synthetic)
    else:
        check_synthetic(base, synthetic, args.out, "synthetic op times (scripts/profile_ops.py --dry-run)")
    if not base.get("provenance", {}).get("synthetic"):
        proxy = check_proxy(meta.get("gpu", ""), base["gpu"]["name"], args.proxy_reason, args.csv)
        ref = f"{ref}; {proxy}" if proxy else ref
    ops = build_ops(rows, source, ref, args.runtime)
    update = {"ops": {args.runtime: ops}, "provenance": {"command": command_line(), "raw": [args.csv],
                                                         "summary": ref}}
    data = merge_sections(base, update, ("ops",))
    data["schema_version"] = max(2, int(data.get("schema_version", 2)))
    write_profile(Path(args.out), data)
    counts = ", ".join(f"{len(v)} {k}" for k, v in ops.items() if isinstance(v, list))
    print(f"wrote ops.{args.runtime} of {args.out} ({counts}; {source})")
    return 0
