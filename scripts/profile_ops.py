"""Measure the op tables of one GPU with torch (one GPU, a few minutes): raw CSV + metadata.

    python scripts/profile_ops.py --out-dir profiles/raw [--models llama3-70b,llama3-8b] [--tp 1,2,4,8]
    python scripts/profile_ops.py --dry-run --out-dir /tmp/raw        # CPU: synthetic, labelled
    calibrate fit-ops profiles/raw/ops_<gpu>.csv --out profiles/my_gpu.json --gpu <gpu> --runtime native

Sweeps, each timed with CUDA events (warm-up, then the median of --iters runs):
- GEMM: every m = 2^i up to --max-m against the product of the n and k values the models'
  TP shards use (q/k/v, o, gate/up, down, LM head): torch.nn.functional.linear, --dtype;
- attention: causal SDPA prefill over (batch, seq) and single-query SDPA decode over
  (batch, context), per (heads, kv heads) pair of the shards (torch SDPA, not vLLM's paged
  kernels: record runtime `native`);
- elementwise: an RMSNorm-like pass (read + write) over growing tensors -> GB/s, and the
  time of a tiny kernel -> per-kernel latency;
- launch cost: N tiny kernels eager vs replayed as one CUDA graph -> per-launch overhead of
  each (rows `launch_eager`, `launch_graph`).
Points whose tensors exceed --max-bytes are skipped (the fit fills them along the length).
--dry-run writes the same files from a roofline formula with source `synthetic` so the whole
path (sweep -> CSV -> `calibrate fit-ops` -> profile) is tested on CPU.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibrate.ops.sweep import COLUMNS, sweep_points  # noqa: E402


def synthetic_us(p: dict) -> float:
    """Roofline with round numbers (1 PFLOP/s, 1 TB/s, 5 us floor): dry-run data only."""
    flops, nbytes = 0.0, 0.0
    if p["op"] == "gemm":
        m, n, k = p["m"], p["n"], p["k"]
        flops, nbytes = 2 * m * n * k, 2 * (m * k + k * n + m * n)
    elif p["op"] in ("prefill_attention", "decode_attention"):
        b, s, h, kv, d = p["batch"], p["seq"], p["heads"], p["kv_heads"], p["head_dim"]
        q = s if p["op"] == "prefill_attention" else 1
        flops = 4 * b * q * s * d * h / (2 if q > 1 else 1)
        nbytes = 2 * b * (2 * s * kv * d + 2 * q * h * d)
    elif p["op"] == "elementwise":
        nbytes = p["size_bytes"]
    elif p["op"].startswith("launch"):
        return 4.0 if p["op"] == "launch_eager" else 1.5
    return 5.0 + max(flops / 1e15, nbytes / 1e12) * 1e6


def measure(points: list[dict], dtype: str, iters: int, max_bytes: float, progress):
    import torch
    import torch.nn.functional as F

    dev, tdt = "cuda", {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        return sorted(times)[len(times) // 2]

    for p in progress(points):
        op = p["op"]
        if op == "gemm":
            m, n, k = p["m"], p["n"], p["k"]
            if 2 * (m * k + n * k + m * n) > max_bytes:
                continue
            x, w = torch.randn(m, k, device=dev, dtype=tdt), torch.randn(n, k, device=dev, dtype=tdt)
            p["time_us"] = timed(lambda: F.linear(x, w))
        elif op in ("prefill_attention", "decode_attention"):
            b, s, h, kv, d = p["batch"], p["seq"], p["heads"], p["kv_heads"], p["head_dim"]
            q_len = s if op == "prefill_attention" else 1
            if 2 * b * d * (q_len * h + 2 * s * h) > max_bytes:
                continue
            q = torch.randn(b, h, q_len, d, device=dev, dtype=tdt)
            kk = torch.randn(b, kv, s, d, device=dev, dtype=tdt).repeat_interleave(h // kv, dim=1)
            v = torch.randn_like(kk)
            p["time_us"] = timed(lambda: F.scaled_dot_product_attention(q, kk, v, is_causal=q_len > 1))
        elif op == "elementwise":
            x = torch.randn(int(p["size_bytes"]) // 4, device=dev, dtype=tdt)
            wgt = torch.ones(x.shape[-1:], device=dev, dtype=tdt)
            p["time_us"] = timed(lambda: x * torch.rsqrt(x.float().pow(2).mean() + 1e-6).to(tdt) * wgt)
        elif op.startswith("launch"):
            x = torch.zeros(1, device=dev)
            n_k = int(p["kernels"])
            if op == "launch_eager":
                p["time_us"] = timed(lambda: [x.add_(1) for _ in range(n_k)]) / n_k
            else:
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(n_k):
                        x.add_(1)
                p["time_us"] = timed(g.replay) / n_k
    return [p for p in points if "time_us" in p]


def metadata(dry_run: bool, command: str) -> dict:
    meta = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
            "host": platform.node(), "source": "synthetic" if dry_run else "measured"}
    if not dry_run:
        import torch
        props = torch.cuda.get_device_properties(0)
        meta.update(gpu=props.name, torch=torch.__version__, cuda=torch.version.cuda,
                    driver=_driver(), sm=f"{props.major}.{props.minor}")
    else:
        meta.update(gpu="SYN-80", note="--dry-run: roofline formula with round numbers, not a measurement")
    return meta


def _driver() -> str:
    import subprocess
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default="profiles/raw", help="folder for ops_<gpu>.csv and its .meta.json")
    ap.add_argument("--models", default="llama3-8b,llama3-70b", help="presets whose TP-shard shapes to sweep")
    ap.add_argument("--tp", default="1,2,4,8", help="TP degrees of the shards (default 1,2,4,8)")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    ap.add_argument("--max-m", type=int, default=8192, help="largest GEMM m (tokens), a power of two")
    ap.add_argument("--iters", type=int, default=20, help="timed runs per point (median kept)")
    ap.add_argument("--max-bytes", type=float, default=8e9, help="skip points whose tensors exceed this")
    ap.add_argument("--dry-run", action="store_true", help="no GPU: synthetic data, labelled as such")
    args = ap.parse_args(argv)
    try:
        tps = [int(t) for t in args.tp.split(",")]
    except ValueError:
        print(f"error: --tp: integers separated by commas, got {args.tp!r}", file=sys.stderr)
        return 2
    points = sweep_points(args.models.split(","), tps, args.max_m)
    if args.dry_run:
        rows = [dict(p, time_us=round(synthetic_us(p), 4)) for p in points]
    else:
        try:
            import torch
            from tqdm import tqdm
        except ImportError as e:
            print(f"error: needs torch and tqdm ({e}); or --dry-run", file=sys.stderr)
            return 2
        if not torch.cuda.is_available():
            print("error: no CUDA GPU visible; use --dry-run to test the path on CPU", file=sys.stderr)
            return 2
        rows = measure(points, args.dtype, args.iters, args.max_bytes, lambda x: tqdm(x, file=sys.stderr))
    meta = metadata(args.dry_run, " ".join(sys.argv))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "ops_" + "".join(c if c.isalnum() else "_" for c in meta["gpu"].lower())
    tmp = out / f".{stem}.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**{c: "" for c in COLUMNS}, **r, "dtype": args.dtype, "source": meta["source"]})
    tmp.replace(out / f"{stem}.csv")
    (out / f"{stem}.csv.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out / (stem + '.csv')} ({len(rows)} points, {meta['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
