"""``calibrate fit-memory`` and ``calibrate import-h100-shared``.

``fit-memory`` reads raw CSVs (``scripts/profile_memory.py`` output, or the shared H100 data
after ``import-h100-shared``) and fits them into a profile (calibrate/memory/profile.py).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from calibrate.memory import fit as mem_fit
from calibrate.memory.profile import DEFAULT_HOLDOUT, fit_into_profile, load_rows
from calibrate.profile_io import atomic_write_text, command_line
from calibrate.raw_store import refuse_existing

def register(sub) -> None:
    p = sub.add_parser("fit-memory", help="fit activation peak + prefill efficiency from raw CSVs into a profile",
                       description="Fit memory.activation_peak (tokens_linear_v1), memory overheads (when "
                                   "measured) and compute.prefill_efficiency from raw rows; merge them into "
                                   "PROFILE (other sections kept).")
    p.add_argument("raw", nargs="+", help="raw CSV(s) (calibrate/memory/fit.py RAW_COLUMNS); a RAW.meta.json "
                                          "beside each supplies provenance")
    p.add_argument("--out", required=True, help="profile to update (created from datasheet defaults with --gpu)")
    p.add_argument("--gpu", default=None, help="GPU name for a new profile (default: refuse if --out is missing)")
    p.add_argument("--memory-runtime", default=None, help="runtime whose rows fit memory (default: the only one)")
    p.add_argument("--compute-runtime", default=None, help="runtime whose rows fit compute (default: memory's)")
    p.add_argument("--holdout", default=DEFAULT_HOLDOUT,
                   help=f"rows kept out of the fit, KEY=V[,KEY=V][;...] (default {DEFAULT_HOLDOUT!r})")
    p.add_argument("--min-layers", type=int, default=1, help="fit memory on stages of >= N layers (default 1)")
    p.add_argument("--compute-min-layers", type=int, default=1, help="fit compute on stages of >= N layers (default 1)")
    p.add_argument("--mlp", choices=("gated", "plain"), default="gated",
                   help="MLP type the activation model is fitted for (default gated: every preset)")
    p.add_argument("--attn-term", action="store_true", help="fit c_attn_t (eager attention holding s x s scores)")
    p.add_argument("--act-model", choices=("phases_max_v1", "tokens_linear_v1"), default="phases_max_v1",
                   help="activation model: max over phases (MLP, fp32 norm temporaries; default) or one "
                        "linear sum (tokens_linear_v1)")
    p.add_argument("--no-elementwise", action="store_true",
                   help="prefill time = FLOPs/(peak x eff) only; no unsharded HBM-pass term")
    p.add_argument("--vllm", action="store_true",
                   help="RAW are vLLM start-up points (shared/data/vllm_memory/logs.csv columns, or `calibrate "
                        "import-vllm-log` output): fit memory.vllm (calibrate/memory/vllm_fit.py) instead")
    p.add_argument("--vllm-version", default="0.10", help="with --vllm: the engine version the section models "
                                                          "(its family's rows are fitted; default 0.10)")
    p.set_defaults(func=run_fit)

    q = sub.add_parser("import-h100-shared", help="convert shared/data/h100 CSVs into raw CSVs",
                       description="Write RAW CSVs (one per runtime) + .meta.json from the shared H100 data set.")
    q.add_argument("folder", help="the shared data folder, e.g. ../shared/data/h100")
    q.add_argument("--out-dir", default="profiles/raw", help="where to write (default profiles/raw)")
    q.add_argument("--prefix", default="h100", help="file name prefix (default h100)")
    q.add_argument("--force", action="store_true", help="replace raw files that exist with other content")
    q.set_defaults(func=run_import)


def run_import(args) -> int:
    from calibrate.importers.h100_shared import DATASET_REF, DEVICE, import_shared
    by_runtime = import_shared(args.folder)
    paths = {rt: Path(args.out_dir) / f"{args.prefix}_{rt.split('-')[0]}.csv" for rt in by_runtime}
    for rt, path in paths.items():  # all checked before anything is written
        if path.exists() and path.read_text() != mem_fit.raw_text(by_runtime[rt]):
            refuse_existing(path, args.force)
    for runtime, rows in sorted(by_runtime.items()):
        path = paths[runtime]
        mem_fit.write_raw(path, rows)
        meta = {"created": _dt.date.today().isoformat(), "command": command_line(), "data": DATASET_REF,
                "device": DEVICE, "torch": "2.11.0+cu130", "cuda": "13.0", "nccl": "2.28.9",
                "runtime": runtime, "source": "measured",
                "transformers": "5.17.0" if runtime.startswith("transformers") else None}
        atomic_write_text(str(path) + ".meta.json", json.dumps(meta, indent=2) + "\n")
        print(f"wrote {path} ({len(rows)} rows, {runtime})")
    return 0


def run_fit(args) -> int:
    if args.vllm:
        from calibrate.memory.vllm_cli import run_vllm_fit
        return run_vllm_fit(args)
    rows, metas = load_rows(args.raw)
    out = fit_into_profile(rows, metas, args.out, gpu=args.gpu, memory_runtime=args.memory_runtime,
                           compute_runtime=args.compute_runtime, holdout=args.holdout, min_layers=args.min_layers,
                           compute_min_layers=args.compute_min_layers, mlp=args.mlp, attn_term=args.attn_term,
                           elementwise=not args.no_elementwise, raw_paths=args.raw, act_model=args.act_model)
    a = out["memory"]["activation_peak"]["fit_error"]
    c = out["compute"]["prefill_efficiency"]["fit_error"]
    print(f"wrote {args.out}: memory from {out['memory']['activation_peak']['runtime']} (held-out max "
          f"{a['max_rel']}, mean {a['mean_rel']}, n={a['held_out']}), compute from {c['runtime']} (held-out max "
          f"{c['max_rel']}, mean {c['mean_rel']}, n={c['held_out']})")
    return 0
