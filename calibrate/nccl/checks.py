"""Flags and pre-sweep checks of ``scripts/profile_nccl.py`` (calibrate/nccl/run.py).

Everything the sweep needs is checked before it measures: the flags (every rank, before
torch), the backend against CUDA (every rank), and on rank 0 the output profile, the GPU
name and the raw path. A bad one is an :class:`InputError`: one line, exit 2.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
from pathlib import Path

from solver.inputs.profile import COLLECTIVES
from solver.units import parse_size


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _per_doubling(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 16:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 16, got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    if not text.strip().lstrip("+").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.strip().lstrip("+").isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def _collectives(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in COLLECTIVES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown collective(s) {bad}; choose from {','.join(COLLECTIVES)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    from solver.clikit import OneLineParser
    p = OneLineParser(
        prog="profile_nccl.py",
        description="Run under torchrun. Sweeps collectives over powers-of-two sizes (bytes, nccl-tests "
                    "S) for every TP group size inside a node (2, 4, 8) and across nodes; times each point "
                    "(median over --iters, max over ranks, microseconds); writes raw points to CSV and fits "
                    "alpha (us) and busbw (GB/s = 1e9 B/s per direction) into the profile.")
    p.add_argument("--out", required=True, help="profile JSON to create or merge into (other sections kept)")
    p.add_argument("--gpu", help="profile GPU name when --out does not exist yet (default: the CUDA device name)")
    p.add_argument("--raw-out", help="raw CSV, refused if it exists unless --force "
                                     "(default: <profile folder>/raw/nccl_<gpu>_<N>gpu_<time>.csv)")
    p.add_argument("--force", action="store_true", help="replace an existing --raw-out")
    p.add_argument("--collectives", type=_collectives, default=list(COLLECTIVES),
                   help=f"comma-separated (default: {','.join(COLLECTIVES)})")
    p.add_argument("--min-bytes", type=_size, default=1024, help="smallest size, e.g. 1K (default 1K)")
    p.add_argument("--max-bytes", type=_size, default=2**30, help="largest size, e.g. 1G (default 1G)")
    p.add_argument("--sizes-per-doubling", type=_per_doubling, default=1,
                   help="sizes per factor of two (default 1: powers of two); 2-4 resolve NCCL's protocol "
                        "switches so held-out sizes are predicted well")
    p.add_argument("--iters", type=_positive_int, default=20, help="timed iterations per point (default 20)")
    p.add_argument("--warmup", type=_count, default=5, help="untimed warm-up iterations per point (default 5)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="element type (default bf16)")
    p.add_argument("--timeout", type=_positive_float, default=300.0,
                   help="seconds a collective may wait for the other ranks before the run fails (default 300)")
    p.add_argument("--backend", choices=("auto", "nccl", "gloo"), default="auto",
                   help="auto: nccl with CUDA, else gloo (gloo is for tests: written as synthetic)")
    p.add_argument("--init-method", default="env://", help="torch.distributed init (default env:// from torchrun)")
    p.add_argument("--nominal-gbps", type=_positive_float, help="nominal link GB/s per direction for `efficiency`")
    return p


def env_int(name: str, default: int | None = None) -> int:
    from solver.errors import InputError
    v = os.environ.get(name)
    if v is None:
        if default is None:
            raise InputError("", name, "is not set: run under torchrun")
        return default
    if not v.isdigit():
        raise InputError("", name, f"must be a whole number, got {v!r}")
    return int(v)


def check_args(args) -> None:
    """Checks on the flags alone (every rank, before torch)."""
    from solver.errors import InputError
    if args.min_bytes < 1 or args.min_bytes > args.max_bytes:
        raise InputError("", "--min-bytes", f"must be >= 1 B and <= --max-bytes ({args.max_bytes} B), "
                                            f"got {args.min_bytes} B")


def pick_backend(args, torch) -> str:
    """The backend this rank will use; nccl without CUDA is one line, not a traceback."""
    from solver.errors import InputError
    cuda = torch.cuda.is_available()
    if args.backend == "nccl" and not cuda:
        raise InputError("", "--backend", "nccl needs a CUDA GPU and this machine has none "
                                          "(torch.cuda.is_available() is False); --backend gloo is for tests")
    return args.backend if args.backend != "auto" else ("nccl" if cuda else "gloo")


def preflight(args, backend: str, gpu: str, world: int) -> tuple[str, dict | None]:
    """Rank 0, before the sweep: the output profile, the GPU name and the raw path are all
    usable. Returns (raw path, the profile as it is now or None)."""
    from calibrate import published
    from calibrate.nccl.profile import published_match
    from calibrate.profile_io import check_writable_path, read_profile_dict
    from calibrate.raw_store import refuse_existing
    from solver.errors import InputError
    from solver.inputs.profile import parse_profile

    base = read_profile_dict(args.out)
    if base is not None:
        parse_profile(base, args.out)  # loadable now, so the merge later can only add fits
    synthetic = bool((base or {}).get("provenance", {}).get("synthetic"))
    if backend == "gloo":
        if base is not None and not synthetic:
            raise InputError(args.out, "provenance.synthetic",
                             "gloo timings are CPU test numbers: they only go into a profile created as "
                             "synthetic (calibrate init --synthetic, or a new --out)")
        if base is None and not args.gpu and world > 1:
            raise InputError(args.out, "--gpu", "does not exist; pass --gpu to create it (as a synthetic profile)")
    elif world > 1:  # at world size 1 the profile is never written
        if synthetic:
            raise InputError(args.out, "provenance.synthetic", "is a synthetic test profile; write GPU "
                                                               "measurements into a real one")
        name = args.gpu or gpu
        if base is None and published.find(name) is None:
            raise InputError(args.out, "--gpu", f"does not exist and {name!r} has no datasheet entry to start it "
                                                f"from; pass --gpu with one of {', '.join(published.GPUS)}")
        if base is not None and not published_match(base, name):
            raise InputError(args.out, "gpu.name", f"profile is for {base['gpu']['name']!r}, "
                                                   f"this run measures {name!r}")
    if args.raw_out:
        refuse_existing(args.raw_out, args.force)
        raw_out = args.raw_out
    else:
        slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        raw_out = str(Path(args.out).parent / "raw" / f"nccl_{slug}_{world}gpu_{stamp}.csv")
        refuse_existing(raw_out, False)
    check_writable_path(raw_out)
    return raw_out, base
