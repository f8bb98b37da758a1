"""Weights per GPU: predicted (``solver.cost.memory.stage_weight_bytes``) vs what real vLLM
engine starts logged ("Model loading took X GiB" / "Loading model weights took X GB").

Rows: every row of ``../shared/data/vllm_memory/logs.csv`` with a ``weights_gib`` figure,
plus the public rows of ``scripts/bench_weights_extra.csv`` (MLA/MoE logs found elsewhere,
each with its URL). A row's model resolves to a preset or to a config file in
``scripts/bench_weights_models/`` (each names its source); models whose architecture the
loader refuses are listed with the refusal, models with no known config as unresolved.
Nothing is fitted: the error is out-of-sample for every row.

    python scripts/bench_weights.py [--logs ../shared/data/vllm_memory/logs.csv] [--markdown]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solver.cost.memory import stage_weight_bytes  # noqa: E402
from solver.errors import InputError  # noqa: E402
from solver.inputs.model import load_model  # noqa: E402
from solver.inputs.quant import weight_format  # noqa: E402
from solver.report.table import render  # noqa: E402
from solver.units import GIB  # noqa: E402

MODELS_DIR = ROOT / "scripts" / "bench_weights_models"
# HF id in the logs -> preset name or config file (same architecture; see each file's _source).
MODELS = {
    "meta-llama/Meta-Llama-3-8B": "llama3-8b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3-8b",  # Llama-3.1-8B: same shapes as Llama-3-8B
    "Qwen/Qwen2-7B-Instruct": MODELS_DIR / "qwen2-7b-instruct.json",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": MODELS_DIR / "deepseek-r1-distill-qwen-14b.json",
    "deepseek-ai/DeepSeek-V2-Lite": MODELS_DIR / "deepseek-v2-lite.json",
    "openai/gpt-oss-20b": "gpt-oss-20b",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "google/gemma-4-26B-A4B": MODELS_DIR / "gemma-4-26b-a4b.json",
}
# Models in the logs whose config is not stored here, with why the planner cannot take them.
NOT_RESOLVED = {
    "meta-llama/Llama-3.2-11B-Vision": "mllama cross-attention layers (loader refuses cross_attention_layers)",
    "Qwen3.8-27B (block-scaled FP8 checkpoint)": "no HF id in the log; qwen3_5_text hybrid linear attention "
                                                 "(loader refuses layer type linear_attention)",
    "Qwen3.8-27B NVFP4 (Inferact build)": "no HF id in the log; hybrid linear attention",
}
_DTYPE = {"": "", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
_QUANT = {"mxfp4": "mxfp4", "fp8": "fp8", "awq": "awq", "gptq": "gptq"}


def _format(model, row: dict):
    """The weight format vLLM loaded: the checkpoint's own scheme when it has one, else the
    row's dtype (blank: the checkpoint dtype, bf16 for every model here)."""
    if model.weight_format is not None:
        return model.weight_format
    quant = (row.get("quantization") or "").strip().lower()
    if quant:
        return weight_format(_QUANT[quant])
    return weight_format(_DTYPE[(row.get("dtype") or "").strip().lower()] or "bf16")


def _kinds(model, fmt) -> list[str]:
    out = ["MLA"] if model.is_mla else []
    out += ["MoE"] if model.is_moe else []
    out += ["quantized"] if fmt.scheme.bits < 16 else []
    return out or ["dense"]


def evaluate(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    done, skipped = [], []
    for r in rows:
        if not (r.get("weights_gib") or "").strip():
            continue
        hf = r["model"].strip()
        base = {"model": hf, "gpu": r["gpu"], "tp": int(r["tp"]), "logged_gib": float(r["weights_gib"]),
                "source": r["source_url"]}
        if hf not in MODELS:
            skipped.append(dict(base, why=NOT_RESOLVED.get(hf, "no config known")))
            continue
        try:
            model = load_model(str(MODELS[hf]))
        except InputError as e:
            skipped.append(dict(base, why=f"refused: {e.field}: {e.reason}"))
            continue
        fmt = _format(model, r)
        pred = stage_weight_bytes(model, base["tp"], model.num_layers, True, True, fmt) / GIB
        done.append(dict(base, scheme=fmt.name, kinds="+".join(_kinds(model, fmt)), predicted_gib=pred,
                         err=(pred - base["logged_gib"]) / base["logged_gib"]))
    return done, skipped


def summary(done: list[dict]) -> list[list]:
    out = []
    for kind in ("dense", "MoE", "MLA", "quantized", "all"):
        sel = [d for d in done if kind == "all" or kind in d["kinds"].split("+")]
        if sel:
            errs = [abs(d["err"]) * 100 for d in sel]
            out.append([kind, len(sel), f"{sum(errs) / len(errs):.1f}%", f"{max(errs):.1f}%"])
    return out


def read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", default=str(ROOT.parent / "shared" / "data" / "vllm_memory" / "logs.csv"))
    ap.add_argument("--extra", default=str(ROOT / "scripts" / "bench_weights_extra.csv"))
    args = ap.parse_args(argv)
    rows = read(Path(args.logs)) + (read(Path(args.extra)) if Path(args.extra).is_file() else [])
    done, skipped = evaluate(rows)
    print(render(["model", "GPU", "TP", "scheme", "kind", "logged GiB", "predicted GiB", "error"],
                 [[d["model"], d["gpu"], d["tp"], d["scheme"], d["kinds"], f"{d['logged_gib']:.2f}",
                   f"{d['predicted_gib']:.2f}", f"{d['err'] * 100:+.1f}%"] for d in done]))
    print()
    print(render(["kind", "rows", "mean |error|", "max |error|"], summary(done)))
    if skipped:
        print()
        print(render(["model (not predicted)", "TP", "logged GiB", "why"],
                     [[s["model"], s["tp"], f"{s['logged_gib']:.2f}", s["why"]] for s in skipped]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
