"""``torchrun ... scripts/profile_nccl.py``: sweep collectives on this cluster, keep the raw
points, fit, and merge the fits into a profile.

Before anything is measured every input is checked (numbers on every rank; torch, the
backend and CUDA on every rank; the output profile, the GPU name and the raw path on rank 0,
whose verdict every rank then follows): a bad one is one line and exit 2, not a failure
after a long sweep. Every rank runs the sweep; rank 0 shows a progress bar per (collective,
ranks, size) with an ETA on stderr, writes the raw CSV after every point (so a failed run
keeps what it measured) and, only if every point finished, fits and writes the profile
atomically. A rank that fails, or a collective that waits longer than ``--timeout``
seconds, ends the run with one clear line and no profile. The NCCL backend measures
(``source: measured``); gloo on CPU is for tests only: its numbers are ``synthetic`` and
go only into a profile created as synthetic (``calibrate init --synthetic``, or a new
``--out``). At world size 1 each collective runs on a one-rank group: the CUDA/NCCL path end
to end (``scripts/gpu_check.sh``); the raw points are kept, nothing is fitted (a fit needs
>= 2 ranks) and the profile is not touched.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import socket
import subprocess
import sys
import threading
import time

from calibrate.nccl.checks import build_parser, check_args, env_int, pick_backend, preflight
from solver.units import fmt_bytes

FAULT_ENV = "CALIBRATE_NCCL_TEST_FAULT"  # tests only: "<rank>:<kill|hang>:<after_points>"


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


def _error(e) -> int:
    print(f"profile_nccl.py: error: {e.line()}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    from solver.errors import InputError
    try:
        args = build_parser().parse_args(argv)
        check_args(args)
        try:
            import torch
            import torch.distributed as dist
        except ImportError:
            raise InputError("", "torch", "scripts/profile_nccl.py needs torch: pip install '.[calibrate]'") from None
        rank, world = env_int("RANK"), env_int("WORLD_SIZE")
        local_rank, local_world = env_int("LOCAL_RANK", rank), env_int("LOCAL_WORLD_SIZE", world)
        backend = pick_backend(args, torch)
    except InputError as e:
        return _error(e)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, init_method=args.init_method, rank=rank, world_size=world,
                            timeout=_dt.timedelta(seconds=args.timeout))
    gpu = torch.cuda.get_device_name(device) if backend == "nccl" else "cpu (gloo test backend)"
    verdict: list = [None]
    if rank == 0:
        try:
            verdict = [preflight(args, backend, gpu, world)]
        except InputError as e:
            verdict = [e.line()]
    dist.broadcast_object_list(verdict, src=0)
    if isinstance(verdict[0], str):
        if rank == 0:
            print(f"profile_nccl.py: error: {verdict[0]}; nothing measured", file=sys.stderr, flush=True)
        dist.destroy_process_group()
        return 2
    raw_out = verdict[0][0] if rank == 0 else None

    from calibrate.nccl.raw import RawPoint, write_raw
    from calibrate.nccl.sweep import Runner, plan_groups, sizes_geometric

    specs = plan_groups(args.collectives, world, local_world)
    timeout = _dt.timedelta(seconds=args.timeout)
    # every rank creates every group, in the same order; each group gets --timeout too
    groups = [dist.new_group(list(s.ranks), timeout=timeout) for s in specs]
    hosts = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    synthetic = backend == "gloo"
    prov = dict(gpu=gpu, hosts=" ".join(sorted(set(hosts))), driver=_driver() if backend == "nccl" else "",
                cuda=torch.version.cuda or "", torch=torch.__version__,
                nccl=".".join(map(str, torch.cuda.nccl.version())) if backend == "nccl" else "")
    runtime = (f"torch {torch.__version__} eager, nccl {prov['nccl']}" if backend == "nccl"
               else f"torch {torch.__version__} gloo on CPU (test only, not GPU data)")
    if rank == 0 and synthetic:
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
    bar = _progress(rank, sum(len(sizes) for s in specs if rank in s.ranks))
    done = 0
    for i, (spec, pg) in enumerate(zip(specs, groups), start=1):
        if rank not in spec.ranks:
            continue
        t_start = time.monotonic()
        for size in sizes:
            what = f"{spec.collective} n={spec.n} {spec.scope} at {fmt_bytes(size)}"
            bar.set_description_str(what)
            try:
                _fault(rank, done)
                fn = runner.op(spec, pg, size, rank)
                if fn is None:
                    bar.update()
                    continue
                med, lo, hi = runner.time_point(fn, pg, args.iters, args.warmup)
            except Exception as e:  # noqa: BLE001 -- any failure ends the run cleanly
                _fail(rank, what, e, raw_out, len(points))
            done += 1
            bar.update()
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
            bar.write(f"[{i}/{len(specs)}] {spec.collective} n={spec.n} {spec.scope}: {len(sizes)} sizes "
                      f"{fmt_bytes(sizes[0])}..{fmt_bytes(sizes[-1])}{bw} ({time.monotonic() - t_start:.1f} s)",
                      file=sys.stdout)
            sys.stdout.flush()
    bar.close()
    try:
        dist.barrier()
    except Exception as e:  # noqa: BLE001
        _fail(rank, "the final barrier", e, raw_out, len(points))
    rc = 0
    if rank == 0:
        rc = _write_profile(args, points, raw_out, gpu) if world > 1 else _check_only(points, raw_out)
    dist.destroy_process_group()
    return rc


class _NoBar:
    def set_description_str(self, _): pass
    def update(self, n: int = 1): pass
    def close(self): pass
    def write(self, text: str, file=None): print(text, file=file, flush=True)


def _progress(rank: int, total: int):
    """tqdm bar on stderr (rank 0): one step per (collective, ranks, size), with ETA."""
    if rank != 0:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="pt", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def _check_only(points, raw_out: str) -> int:
    """World size 1: the collectives ran on one-rank groups (local copies through NCCL): the
    path works; there is nothing to fit."""
    print(f"world size 1: {len(points)} one-rank points in {raw_out} (the code path end to end; a fit "
          "needs >= 2 ranks, profile not touched)", flush=True)
    return 0


def _write_profile(args, points, raw_out: str, gpu: str) -> int:
    from calibrate.nccl.profile import entry, fit_points, flagged_lines, nominal_gbps, provenance, write_collectives
    from calibrate.nccl.raw import write_raw
    from calibrate.profile_io import read_profile_dict
    from solver.errors import InputError

    command = "torchrun ... scripts/profile_nccl.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        base = read_profile_dict(args.out)
        entries = []
        fits = fit_points(points, raw_out)
        if any(p.flag for p in points):  # the same run's file, now with the outlier flags
            write_raw(raw_out, points)
            for line in flagged_lines(points, raw_out):
                print(line, flush=True)
        for fit, pts in fits:
            gloo = pts[0].backend == "gloo"
            nom = None if gloo else nominal_gbps(fit.scope, base, args.gpu or gpu, args.nominal_gbps)[0]
            note = "gloo on CPU: test numbers, not GPU data" if gloo else ""
            entries.append(entry(fit, pts, ref=pts[0].ref + f"; raw {raw_out}", nominal=nom, note=note))
        prov = provenance(points, command, [raw_out], f"scripts/profile_nccl.py sweep, {len(points)} points")
        gloo = points[0].backend == "gloo"
        write_collectives(args.out, entries, prov, gpu=args.gpu or (None if gloo else gpu), command=command,
                          synthetic=gloo)
    except InputError as e:
        print(f"profile_nccl.py: error: {e.line()}; no profile written; raw points kept in {raw_out}",
              file=sys.stderr, flush=True)
        return 2
    print(f"wrote {args.out} ({len(entries)} collective fits); raw points in {raw_out}", flush=True)
    return 0
