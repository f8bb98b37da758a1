"""``calibrate import-aiconfigurator``: AIConfigurator's per-op tables -> a profile's ``ops``."""

from __future__ import annotations

import json
from pathlib import Path

from calibrate.defaults import skeleton
from calibrate.importers.aiconfigurator import build_ops, data_root
from calibrate.profile_io import command_line, merge_sections, read_profile_dict, write_profile
from solver.errors import InputError


def register(sub) -> None:
    p = sub.add_parser(
        "import-aiconfigurator", help="import AIConfigurator's measured per-op tables (GEMM, attention, all-reduce)",
        description="Read the per-op latency tables that ship in the aiconfigurator-core package "
                    "(systems/data/<system>/<op>/<framework>/<version>/*.parquet, NVIDIA, Apache-2.0), keep the "
                    "subset the model zoo needs (docs/profile.md, 'Op tables') and write them as the profile's "
                    "ops.<backend>-<version> entry, source `published`, citing package version and file. Other "
                    "sections are kept. Needs pyarrow: pip install -e '.[import]'.")
    p.add_argument("--system", required=True, help="AIConfigurator system, e.g. a100_sxm, h100_sxm, h200_sxm, l40s")
    p.add_argument("--backend", default="vllm", help="framework tables to read (default vllm)")
    p.add_argument("--version", default=None,
                   help="framework version folder (default: the newest that has each table)")
    p.add_argument("--out", required=True, help="profile JSON to merge into (created with --gpu if missing)")
    p.add_argument("--gpu", default=None, help="GPU of a new profile (datasheet name or alias), e.g. H200")
    p.add_argument("--data-dir", default=None,
                   help="a copy of the package's systems/ folder instead of the installed package")
    p.add_argument("--package-version", default="", help="package version to cite with --data-dir")
    p.add_argument("--dry-run", action="store_true", help="print what would be written, write nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    root, pkg_version = data_root(args.data_dir)
    pkg_version = args.package_version or pkg_version
    if not (root / "data" / args.system).is_dir():
        have = sorted(p.name for p in (root / "data").iterdir()) if (root / "data").is_dir() else []
        raise InputError(str(root / "data"), "--system", f"no system {args.system!r}; have: {', '.join(have) or 'none'}")
    base = read_profile_dict(args.out)
    if base is None:
        if not args.gpu:
            raise InputError(args.out, "", "does not exist; pass --gpu to create it")
        base = skeleton(args.gpu, command=command_line())
    interconnect = base.get("gpu", {}).get("interconnect", "nvlink")
    key, ops, files = build_ops(root, pkg_version, args.system, args.backend, args.version, interconnect)
    counts = {k: len(v) for k, v in ops.items() if isinstance(v, list)}
    print(f"{args.system} {args.backend}: ops.{key} with " + ", ".join(f"{n} {k} tables" for k, n in counts.items()))
    for f in files:
        print(f"  read {f}")
    if args.dry_run:
        print(json.dumps({key: {k: v for k, v in ops.items() if not isinstance(v, list)}}, indent=2))
        return 0
    update = {"ops": {key: ops}, "provenance": {"command": command_line(), "files": files,
                                                "summary": f"op tables imported from {files[0].split(':')[0]}"}}
    data = merge_sections(base, update, ("ops",))
    data["schema_version"] = max(2, int(data.get("schema_version", 2)))
    write_profile(Path(args.out), data)
    print(f"wrote ops.{key} of {args.out}")
    return 0
