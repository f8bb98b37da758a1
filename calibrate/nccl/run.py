"""``torchrun ... scripts/profile_nccl.py``: sweep collectives on this cluster, keep the raw
points, fit, and merge the fits into a profile.

Every rank runs this; rank 0 prints progress, writes the raw CSV after every point (so a
failed run keeps what it measured) and, only if every point finished, fits and writes the
profile atomically. A rank that fails, or a collective that waits longer than ``--timeout``
seconds, ends the run with one clear line and no profile. The NCCL backend measures
(``source: measured``); gloo on CPU is accepted for testing only and its numbers are
written as ``synthetic``, never ``measured``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from solver.inputs.profile import COLLECTIVES
from solver.units import fmt_bytes, parse_size

FAULT_ENV = "CALIBRATE_NCCL_TEST_FAULT"  # tests only: "<rank>:<kill|hang>:<after_points>"


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _per_doubling(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 16:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 16, got {text!r}")
    return int(text)


def _collectives(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in COLLECTIVES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown collective(s) {bad}; choose from {','.join(COLLECTIVES)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="profile_nccl.py",
        description="Run under torchrun. Sweeps collectives over powers-of-two sizes (bytes, nccl-tests "
                    "S) for every TP group size inside a node (2, 4, 8) and across nodes; times each point "
                    "(median over --iters, max over ranks, microseconds); writes raw points to CSV and fits "
                    "alpha (us) and busbw (GB/s = 1e9 B/s per direction) into the profile.")
    p.add_argument("--out", required=True, help="profile JSON to create or merge into (other sections kept)")
    p.add_argument("--gpu", help="profile GPU name when --out does not exist yet (default: the CUDA device name)")
    p.add_argument("--raw-out", help="raw CSV (default: <profile folder>/raw/nccl_<gpu>_<N>gpu_<time>.csv)")
    p.add_argument("--collectives", type=_collectives, default=list(COLLECTIVES),
                   help=f"comma-separated (default: {','.join(COLLECTIVES)})")
    p.add_argument("--min-bytes", type=_size, default=1024, help="smallest size, e.g. 1K (default 1K)")
    p.add_argument("--max-bytes", type=_size, default=2**30, help="largest size, e.g. 1G (default 1G)")
    p.add_argument("--sizes-per-doubling", type=_per_doubling, default=1,
                   help="sizes per factor of two (default 1: powers of two); 2-4 resolve NCCL's protocol "
                        "switches so held-out sizes are predicted well")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per point (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up iterations per point (default 5)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="element type (default bf16)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds a collective may wait for the other ranks before the run fails (default 300)")
    p.add_argument("--backend", choices=("auto", "nccl", "gloo"), default="auto",
                   help="auto: nccl with CUDA, else gloo (gloo is for tests: written as synthetic)")
    p.add_argument("--init-method", default="env://", help="torch.distributed init (default env:// from torchrun)")
    p.add_argument("--nominal-gbps", type=float, help="nominal link GB/s per direction for `efficiency`")
    return p


def _env(name: str, default: int | None = None) -> int:
    v = os.environ.get(name)
    if v is None:
        if default is None:
            raise SystemExit(f"profile_nccl.py: {name} is not set: run under torchrun")
        return default
    return int(v)


def _driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else ""
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


def _fault(rank: int, done: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    r, kind, after = spec.split(":")
    if int(r) == rank and done >= int(after):
        if kind == "kill":
            os._exit(9)
        time.sleep(3600)


def _fail(rank: int, what: str, err: BaseException | str, raw: str | None, npts: int) -> None:
    reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
    if "timed out" in reason.lower() or "timeout" in reason.lower():
        reason = f"timed out waiting for other ranks (--timeout): {reason}"
    kept = f"; {npts} raw points kept in {raw}" if raw and npts else ""
    print(f"profile_nccl.py: rank {rank}: failed during {what}: {reason}. No profile written{kept}.",
          file=sys.stderr, flush=True)
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    import torch.distributed as dist

    rank, world = _env("RANK"), _env("WORLD_SIZE")
    local_rank, local_world = _env("LOCAL_RANK", rank), _env("LOCAL_WORLD_SIZE", world)
    backend = args.backend if args.backend != "auto" else ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, init_method=args.init_method, rank=rank, world_size=world,
                            timeout=_dt.timedelta(seconds=args.timeout))
    from calibrate.nccl.sweep import Runner, plan_groups, sizes_geometric
    from calibrate.nccl.raw import RawPoint, write_raw

    specs = plan_groups(args.collectives, world, local_world)
    timeout = _dt.timedelta(seconds=args.timeout)
    # every rank creates every group, in the same order; each group gets --timeout too
    groups = [dist.new_group(list(s.ranks), timeout=timeout) for s in specs]
    hosts = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    gpu = torch.cuda.get_device_name(device) if backend == "nccl" else "cpu (gloo test backend)"
    synthetic = backend == "gloo"
    prov = dict(gpu=gpu, hosts=" ".join(sorted(set(hosts))), driver=_driver() if backend == "nccl" else "",
                cuda=torch.version.cuda or "", torch=torch.__version__,
                nccl=".".join(map(str, torch.cuda.nccl.version())) if backend == "nccl" else "")
    runtime = (f"torch {torch.__version__} eager, nccl {prov['nccl']}" if backend == "nccl"
               else f"torch {torch.__version__} gloo on CPU (test only, not GPU data)")
    raw_out = None
    if rank == 0:
        slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        raw_out = args.raw_out or str(Path(args.out).parent / "raw" / f"nccl_{slug}_{world}gpu_{stamp}.csv")
        if synthetic:
            print("profile_nccl.py: gloo backend: CPU test numbers, written as source 'synthetic'", flush=True)
    runner = Runner(torch, dist, device, args.dtype)
    sizes = sizes_geometric(args.min_bytes, args.max_bytes, args.sizes_per_doubling)
    points: list[RawPoint] = []
    last = [time.monotonic()]
    if rank == 0:  # watchdog: a hang outside a collective timeout still ends the run
        def watch():
            while True:
                time.sleep(1.0)
                if time.monotonic() - last[0] > 1.5 * args.timeout + 10:
                    _fail(rank, "the sweep", "timed out: no progress", raw_out, len(points))
        threading.Thread(target=watch, daemon=True).start()
    done = 0
    for i, (spec, pg) in enumerate(zip(specs, groups), start=1):
        if rank not in spec.ranks:
            continue
        t_start = time.monotonic()
        for size in sizes:
            what = f"{spec.collective} n={spec.n} {spec.scope} at {fmt_bytes(size)}"
            try:
                _fault(rank, done)
                fn = runner.op(spec, pg, size, rank)
                if fn is None:
                    continue
                med, lo, hi = runner.time_point(fn, pg, args.iters, args.warmup)
            except Exception as e:  # noqa: BLE001 -- any failure ends the run cleanly
                _fail(rank, what, e, raw_out, len(points))
            done += 1
            last[0] = time.monotonic()
            if rank == 0:
                points.append(RawPoint(
                    collective=spec.collective, ranks=spec.n, nodes=len({hosts[r] for r in spec.ranks}),
                    scope=spec.scope, size_bytes=size, time_us=med, stat="median_max_ranks",
                    time_min_us=lo, time_max_us=hi, dtype=args.dtype, iters=args.iters, warmup=args.warmup,
                    backend=backend, source="synthetic" if synthetic else "measured",
                    ref=f"scripts/profile_nccl.py on {prov['hosts']}", runtime=runtime, **prov))
                write_raw(raw_out, points)
        if rank == 0:
            top = points[-1] if points else None
            bw = f", busbw at {fmt_bytes(top.size_bytes)} {top.busbw_gbps:.1f} GB/s" if top else ""
            print(f"[{i}/{len(specs)}] {spec.collective} n={spec.n} {spec.scope}: {len(sizes)} sizes "
                  f"{fmt_bytes(sizes[0])}..{fmt_bytes(sizes[-1])}{bw} ({time.monotonic() - t_start:.1f} s)",
                  flush=True)
    try:
        dist.barrier()
    except Exception as e:  # noqa: BLE001
        _fail(rank, "the final barrier", e, raw_out, len(points))
    rc = 0
    if rank == 0:
        rc = _write_profile(args, points, raw_out, gpu)
    dist.destroy_process_group()
    return rc


def _write_profile(args, points, raw_out: str, gpu: str) -> int:
    from calibrate.nccl.profile import entry, fit_points, nominal_gbps, provenance, write_collectives
    from calibrate.profile_io import read_profile_dict
    from solver.errors import InputError

    command = "torchrun ... scripts/profile_nccl.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        base = read_profile_dict(args.out)
        entries = []
        for fit, pts in fit_points(points, raw_out):
            gloo = pts[0].backend == "gloo"
            nom = None if gloo else nominal_gbps(fit.scope, base, args.gpu or gpu, args.nominal_gbps)[0]
            note = "gloo on CPU: test numbers, not GPU data" if gloo else ""
            entries.append(entry(fit, pts, ref=pts[0].ref + f"; raw {raw_out}", nominal=nom, note=note))
        prov = provenance(points, command, [raw_out], f"scripts/profile_nccl.py sweep, {len(points)} points")
        write_collectives(args.out, entries, prov, gpu=args.gpu or (None if points[0].backend == "gloo" else gpu),
                          command=command)
    except InputError as e:
        print(f"profile_nccl.py: error: {e.line()}; no profile written; raw points kept in {raw_out}",
              file=sys.stderr, flush=True)
        return 2
    print(f"wrote {args.out} ({len(entries)} collective fits); raw points in {raw_out}", flush=True)
    return 0
