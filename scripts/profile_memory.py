"""Measure activation memory and prefill/decode time of TP-sharded decoder stages, fit them,
and merge the ``memory`` and ``compute`` sections into a profile.

    torchrun --standalone --nproc-per-node 1 scripts/profile_memory.py --out profiles/h100.json \\
        [--runtime transformers|native] [--grid default|quick] [--dtype bf16]
    python scripts/profile_memory.py --dry-run --out /tmp/p.json      # CPU, tiny grid, synthetic

Raw rows go to ``--raw`` (refused if it exists, unless ``--force``; default
``<profile folder>/raw/<gpu>_<runtime>_<content hash>.csv``, never overwritten) with a ``.meta.json``
beside it (versions, command, the snapshot summary at the largest peak), so the profile can be
refitted without hardware: ``calibrate fit-memory RAW --out PROFILE``. Under torchrun an NCCL
group of one rank is created and used once first, so the non-torch memory measured
(mem_get_info) includes NCCL's buffers. ``--dry-run`` runs on CPU, writes ``synthetic`` rows
and never a ``measured`` record; it refuses to overwrite a profile holding measured fits.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibrate.memory import fit as mem_fit  # noqa: E402
from calibrate.memory.profile import DEFAULT_HOLDOUT, fit_into_profile  # noqa: E402
from calibrate.memory.layers import BUILDERS  # noqa: E402
from calibrate.memory.probe import (GRIDS, grid_points, measure_decode, measure_prefill,  # noqa: E402
                                    non_torch_steps, shape_columns)
from calibrate.profile_io import atomic_write_text, check_writable_path, read_profile_dict  # noqa: E402
from calibrate.raw_store import refuse_existing, store  # noqa: E402
from solver.errors import InputError  # noqa: E402

DTYPES = {"bf16": ("bfloat16", 2), "fp16": ("float16", 2), "fp32": ("float32", 4)}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="profile to create or update (memory + compute sections only)")
    p.add_argument("--raw", default=None, help="raw CSV path, refused if it exists (default: <profile folder>/raw/"
                                              "<gpu>_<runtime>_<content hash>.csv)")
    p.add_argument("--force", action="store_true", help="replace an existing --raw file")
    p.add_argument("--runtime", choices=sorted(BUILDERS), default="native", help="stage implementation (default native)")
    p.add_argument("--grid", choices=sorted(GRIDS), default=None, help="default|quick on GPU; tiny (default) in --dry-run")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="weights and activations (default bf16; fp32 in --dry-run: CPU bf16 matmuls are slow)")
    p.add_argument("--gpu", default=None, help="profile GPU name for a new profile (default: the CUDA device name)")
    p.add_argument("--holdout", default=DEFAULT_HOLDOUT, help=f"rows kept out of the fit (default {DEFAULT_HOLDOUT!r})")
    p.add_argument("--min-layers", type=int, default=2,
                   help="fit memory on stages of >= N layers (default 2: a stage's peak minus KV is flat in L from 2)")
    p.add_argument("--iters", type=int, default=None, help="timed repetitions per point (default 5; 1 in --dry-run)")
    p.add_argument("--no-snapshot", action="store_true", help="skip _record_memory_history (faster)")
    p.add_argument("--dry-run", action="store_true", help="CPU, synthetic rows: checks shapes, files and the fit")
    return p.parse_args(argv)


def _init_dist(cuda: bool):
    """torchrun: one NCCL rank, one all-reduce, so NCCL's buffers exist when mem_get_info runs."""
    import torch
    if "WORLD_SIZE" not in os.environ or not cuda:
        return 0
    import torch.distributed as dist
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl")
    dist.all_reduce(torch.ones(1, device="cuda"))
    torch.cuda.synchronize()
    return dist.get_rank()


def _dry_rates(rows: list[dict]) -> tuple[float, float]:
    """Dry run only: CPU times say nothing about a GPU, so efficiencies are taken against
    1000x the best FLOP rate seen in the rows, so that noisy CPU timings on a loaded machine
    still fit an efficiency well inside (0, 1]; HBM is unused (no decode fit)."""
    best = max(r["flops"] / (r["time_ms"] * 1e-3) for r in rows if r["phase"] == "prefill")
    return 1000 * best / 1e12, 1.0


def run_grid(args, device: str, dtype, dtype_name: str, p: int):
    import torch
    rows, best = [], (None, -1)
    build = BUILDERS[args.runtime]
    source = "synthetic" if args.dry_run else "measured"
    devname = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu (dry run)"
    for shape, tp, layers, tokens in grid_points(args.grid):
        stage = build(shape, tp, layers, dtype, device)
        for batch, seq in tokens:
            cols = shape_columns(shape, tp, layers, dtype_name, p)
            common = {**cols, "runtime": stage.runtime, "device": devname, "weights_bytes": stage.weights_bytes,
                      "source": source, "ref": f"scripts/profile_memory.py --runtime {args.runtime} --grid {args.grid}"}
            try:
                pre, summary, kv = measure_prefill(stage, batch, seq, device, not args.no_snapshot, args.iters)
                pre["flops"] = mem_fit.prefill_flops({**common, **pre})
                dec = measure_decode(stage, kv, batch, seq, device, args.iters)
                del kv
            except torch.OutOfMemoryError:
                print(f"  OOM {shape.name} t={tp} L={layers} b={batch} s={seq}: skipped", flush=True)
                torch.cuda.empty_cache()
                continue
            rows += [{**common, **pre}, {**common, **dec}]
            if summary is not None and pre["peak_bytes"] > best[1]:
                best = ({"point": {**cols, "batch": batch, "seq": seq}, **summary}, pre["peak_bytes"])
            print(f"  {shape.name} t={tp} L={layers} b={batch} s={seq}: peak {pre['peak_bytes'] / 2**30:.3f} GiB "
                  f"kv {pre['kv_bytes'] / 2**30:.3f} GiB prefill {pre['time_ms']:.2f} ms "
                  f"decode {dec['time_ms']:.2f} ms", flush=True)
        del stage
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows, best[0]


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = argv
    try:
        import torch
    except ImportError:
        print("profile_memory: error: needs torch (pip install '.[calibrate]')", file=sys.stderr)
        return 2
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("profile_memory: error: no CUDA device; use --dry-run for the CPU plumbing check", file=sys.stderr)
        return 2
    args.grid = args.grid or ("tiny" if args.dry_run else "default")
    args.dtype = args.dtype or ("fp32" if args.dry_run else "bf16")
    args.iters = args.iters or (1 if args.dry_run else 5)
    threads = torch.get_num_threads()
    if args.dry_run:
        torch.set_num_threads(1)  # tiny matmuls: threads only add contention on a shared CPU
    try:
        return _run(args, torch, cuda)
    finally:
        torch.set_num_threads(threads)


def _run(args, torch, cuda) -> int:
    argv = args.argv
    try:
        if args.raw:
            refuse_existing(args.raw, args.force)
            check_writable_path(args.raw)
        existing = read_profile_dict(args.out)
        act = (existing or {}).get("memory", {}).get("activation_peak", {})
        if args.dry_run and act.get("source", "synthetic") != "synthetic":
            raise InputError(args.out, "memory.activation_peak", "holds a non-synthetic fit; --dry-run will not overwrite it")
        ranks: list = []  # non-torch memory after the CUDA context, then after the NCCL communicator
        steps = non_torch_steps("cuda" if cuda else "cpu", lambda: ranks.append(_init_dist(cuda)))
        rank = ranks[0] if ranks else _init_dist(cuda)
        dtype_name, p = DTYPES[args.dtype]
        device = "cuda" if cuda else "cpu"
        rows, snap = run_grid(args, device, getattr(torch, dtype_name), args.dtype, p)
        if rank != 0:
            return 0
        if not rows:
            raise InputError(args.out, "", "no grid point fitted in memory")
        gpu = args.gpu or (torch.cuda.get_device_name() if cuda else "H100")
        runtime = rows[0]["runtime"]
        text = mem_fit.raw_text(rows)
        if args.raw:
            raw = args.raw
            atomic_write_text(raw, text)
        else:  # beside the profile, named by content: never overwrites, never lands elsewhere
            device = gpu if cuda else "cpu_dry_run"
            stem = re.sub(r"[^a-z0-9.]+", "_", f"{device}_{runtime}".lower()).strip("_")
            raw = str(store(Path(args.out).parent / "raw", stem, text))
        meta = {"created": _dt.date.today().isoformat(), "command": "scripts/profile_memory.py " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
                "device": rows[0]["device"], "torch": torch.__version__, "cuda": torch.version.cuda,
                "nccl": ".".join(map(str, torch.cuda.nccl.version())) if cuda else None,
                "runtime": runtime, "source": rows[0]["source"], "grid": args.grid, "dtype": args.dtype,
                "data": f"{raw} (scripts/profile_memory.py)", "snapshot_at_largest_peak": snap,
                "non_torch_steps_bytes": steps}
        atomic_write_text(raw + ".meta.json", json.dumps(meta, indent=2) + "\n")
        out = fit_into_profile(rows, [meta], args.out, gpu=gpu, holdout=args.holdout, min_layers=args.min_layers,
                               raw_paths=[raw], rates=None if cuda else _dry_rates(rows))
    except InputError as e:
        print(f"profile_memory: error: {e.line()}", file=sys.stderr)
        return 2
    fe = out["memory"]["activation_peak"]["fit_error"]
    print(f"wrote {raw} ({len(rows)} rows) and {args.out} (activation held-out max {fe['max_rel']}, "
          f"source {out['memory']['activation_peak']['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
