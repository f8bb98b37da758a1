"""``calibrate import-vllm-log``: a pasted vLLM start-up log -> one raw memory point (CSV row)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from calibrate.importers.vllm_log import LOG_COLUMNS, engine_format, parse_log, sampler_path
from calibrate.profile_io import atomic_write_text
from solver.errors import InputError
from solver.inputs.fields import read_text


def register(sub) -> None:
    p = sub.add_parser("import-vllm-log", help="turn a vLLM start-up log into a raw memory point (CSV row)",
                       description="Read the memory lines of a vLLM start-up log (V0 and V1 formats: weights, "
                                   "non-torch, activation peak, KV cache GiB/tokens/blocks, CUDA graphs) and "
                                   "append one row to --out in the columns of shared/data/vllm_memory/logs.csv; "
                                   "`calibrate fit-memory --vllm` fits them.")
    p.add_argument("log", help="the log text file ('-' for stdin)")
    p.add_argument("--out", required=True, help="points CSV to append to (created with a header)")
    p.add_argument("--model", required=True, help="Hugging Face model id the engine served")
    p.add_argument("--gpu", required=True, help="GPU name, e.g. 'A100 80GB'")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline-parallel size (default 1)")
    p.add_argument("--vllm-version", required=True, help="vLLM version that wrote the log, e.g. 0.10.1")
    for flag in ("gpu-memory-utilization", "max-model-len", "max-num-batched-tokens", "max-num-seqs"):
        p.add_argument(f"--{flag}", default="", help="the engine setting, when the log does not print it")
    p.add_argument("--source-url", default="", help="where the log is published (provenance)")
    p.add_argument("--notes", default="", help="free text")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    text = sys.stdin.read() if args.log == "-" else read_text(args.log)
    got = parse_log(text)
    if not got:
        raise InputError(args.log, "", "no vLLM memory line found (weights, KV cache, GPU blocks, ...)")
    row = {c: "" for c in LOG_COLUMNS}
    row.update({"source_url": args.source_url, "vllm_version": args.vllm_version, "gpu": args.gpu,
                "model": args.model, "tp": args.tp, "pp": args.pp, "notes": args.notes or
                f"imported by calibrate import-vllm-log ({engine_format(text) or 'unknown'} log format)"})
    for flag in ("gpu_memory_utilization", "max_model_len", "max_num_batched_tokens", "max_num_seqs"):
        if getattr(args, flag):
            row[flag] = getattr(args, flag)
    row.update({k: v for k, v in got.items() if k in LOG_COLUMNS})
    if sampler_path(text):
        row["notes"] += f"; sampler={sampler_path(text)} (from the log)"
    if not row.get("kv_tokens") and got.get("max_concurrency") and got.get("max_model_len"):
        row["kv_tokens"] = int(got["max_concurrency"] * got["max_model_len"])
        row["notes"] += "; kv_tokens derived from 'Maximum concurrency' (rounded)"
    out = Path(args.out)
    old = read_text(out) if out.exists() else ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    if not old:
        w.writeheader()
    w.writerow(row)
    atomic_write_text(out, old + buf.getvalue())
    shown = ", ".join(f"{k}={v}" for k, v in got.items())
    print(f"appended to {out}: {shown}")
    return 0
