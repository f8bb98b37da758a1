"""``calibrate init``: start a profile from datasheet numbers and documented defaults."""

from __future__ import annotations

from pathlib import Path

from calibrate.defaults import skeleton
from calibrate.profile_io import command_line, write_profile
from solver.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("init", help="write a published/default profile for a known GPU",
                       description="Write a complete profile from the datasheet table "
                                   "(calibrate/published.py) with `default` network, memory and "
                                   "compute assumptions, ready to be refined by measurements.")
    p.add_argument("--gpu", required=True, help="GPU name or alias, e.g. A100-80GB, H100, L40S")
    p.add_argument("--out", required=True, help="profile path to write (refuses to overwrite without --force)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--synthetic", action="store_true",
                   help="mark it a synthetic test profile (provenance.synthetic): the only kind that takes "
                        "gloo/CPU test timings from scripts/profile_nccl.py")
    p.set_defaults(func=run)


def run(args) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(str(out), "", "exists; pass --force to overwrite")
    data = skeleton(args.gpu, command=command_line(), synthetic=args.synthetic)
    write_profile(out, data)
    print(f"wrote {out} ({data['gpu']['name']}, published + defaults{', SYNTHETIC' if args.synthetic else ''})")
    return 0
