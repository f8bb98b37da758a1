"""Options and output helpers shared by ``solver`` subcommands."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from solver.cost.warn import CalibrationWarning
from solver.errors import InputError
from solver.inputs.workload import KV_DTYPES, WEIGHT_DTYPES, Workload


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """argparse ``type=``: a whole number >= 1 (counts: ranks, nodes, tokens, GPUs)."""
    try:
        v = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse ``type=``: a finite number > 0 (bandwidths, time limits)."""
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def nonneg_float(text: str) -> float:
    """argparse ``type=``: a finite number >= 0 (throughput floors, tolerances)."""
    v = _number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def fraction(text: str) -> float:
    """argparse ``type=``: a finite number in (0, 1] (memory utilization, efficiencies)."""
    v = _number(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return v


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="preset name (llama3-8b, llama3-70b, llama3.1-405b, qwen2.5-72b, mixtral-8x7b, deepseek-r1, "
                        "qwen3-235b-a22b, gpt-oss-120b, ...) "
                        "or a path to a Hugging Face config.json")


def add_workload_args(p: argparse.ArgumentParser, batch_default: int = 1) -> None:
    g = p.add_argument_group("workload")
    g.add_argument("--batch", type=int, default=batch_default,
                   help=f"sequences in the offline batch (default {batch_default})")
    g.add_argument("--prompt-len", type=int, default=1024, help="prompt tokens per sequence (default 1024)")
    g.add_argument("--output-len", type=positive_int, default=128,
                   help="generated tokens per sequence, >= 1: vLLM generates at least one (default 128)")
    g.add_argument("--dtype", default="auto", choices=("auto",) + WEIGHT_DTYPES,
                   help="weight scheme: auto = the checkpoint's (its quantization_config / hf_quant_config.json), "
                        "else bf16; fp8 on a 16-bit checkpoint is vLLM's on-the-fly fp8 (default auto)")
    g.add_argument("--enable-expert-parallel", action="store_true",
                   help="MoE models: vLLM expert parallelism (E/t whole experts per GPU, all-to-all "
                        "dispatch and combine, timed from the profile's all_to_all fits)")
    g.add_argument("--kv-dtype", default="", choices=("",) + KV_DTYPES,
                   help="KV-cache dtype (default: the activation dtype, fp8 weights -> bf16)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    p.add_argument("--strict", action="store_true",
                   help="refuse (exit 2) instead of warning when a prediction leaves the profile's calibrated range")


def workload_from(args, model=None) -> Workload:
    """The workload of the flags; ``--dtype auto`` takes ``model``'s checkpoint scheme (its
    unquantized modules included), else bf16. An explicit ``--dtype`` naming the
    checkpoint's own scheme keeps the checkpoint's details too; another scheme than a
    quantized checkpoint's is refused (vLLM would load the checkpoint's, so the plan and
    the launch command would disagree). A 16-bit checkpoint takes any scheme."""
    fmt = getattr(model, "weight_format", None)
    dtype = args.dtype
    if dtype == "auto":
        dtype = fmt.name if fmt is not None else "bf16"
    if fmt is not None and fmt.name != dtype:
        if {fmt.name, dtype} != {"fp8", "fp8-block"}:
            raise InputError("", "--dtype", f"{dtype}: {getattr(model, 'name', 'the model')}'s checkpoint is "
                                            f"{fmt.name} (its quantization config) and vLLM loads it as such; "
                                            "use --dtype auto, or a checkpoint in the scheme you want")
        fmt = None
    ep = bool(getattr(args, "enable_expert_parallel", False))
    if ep and model is not None and not model.is_moe:
        raise InputError("", "--enable-expert-parallel", f"{model.name} has no MoE layers")
    return Workload(batch=args.batch, prompt_len=args.prompt_len, output_len=args.output_len,
                    dtype=dtype, kv_dtype=args.kv_dtype, fmt=fmt, expert_parallel=ep)


@contextmanager
def collect_warnings(strict: bool):
    """Collect CalibrationWarnings (deduplicated, in order) into the yielded list."""
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        yield seen
        for w in caught:
            if issubclass(w.category, CalibrationWarning) and str(w.message) not in seen:
                seen.append(str(w.message))
    if strict and seen:
        raise InputError("--strict", "", seen[0])


def emit(payload: dict, as_json: bool, human: str, warns: list[str]) -> None:
    if as_json:
        payload = dict(payload, warnings=warns)
        print(json.dumps(payload, indent=2))
        return
    print(human)
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)


# Mode of written files: mkstemp creates 0600; profiles and plans are shared artifacts.
FILE_MODE = 0o644


def check_writable_path(path: str | Path) -> None:
    """``path`` can be written as a file: not a folder, its parent not a file. InputError otherwise."""
    p = Path(path)
    if p.is_dir():
        raise InputError(str(p), "", "is a folder; give a file path")
    parent = next((a for a in p.parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(str(p), "", f"{parent} is a file, not a folder")


def check_out_arg(path: str | None) -> None:
    """``--out FILE``: writable as a file and its folder exists (checked before any work)."""
    if not path:
        return
    check_writable_path(path)
    if not Path(path).resolve().parent.is_dir():
        raise InputError("", "--out", f"folder of {path} does not exist")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, chmod 0644, then rename over ``path``.
    A folder at ``path`` (or an unwritable folder) is a one-line InputError; nothing is left."""
    p = Path(path)
    check_writable_path(p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise InputError(str(p), "", f"cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """vLLM engine settings (solver/cost/engine_settings.py); None: vLLM's default for the version."""
    g = p.add_argument_group("serving engine (vLLM flags; default: the profile's serving section, else "
                             "vLLM's own default for --vllm-version, the GPU and --entry-point)")
    g.add_argument("--gpu-memory-utilization", type=fraction, default=None,
                   help="fraction of GPU memory the engine may use; the KV cache gets what weights, non-torch "
                        "memory and the profile run's activation peak leave (vLLM default 0.9; 0.92 from 0.20)")
    g.add_argument("--max-model-len", type=int, default=None,
                   help="longest sequence the engine admits, tokens (default: prompt + output)")
    g.add_argument("--max-num-batched-tokens", type=int, default=None,
                   help="tokens per engine step and in the start-up profile run (vLLM default by version: "
                        "V1 16384 offline / 8192 serve on >= 70 GiB non-A100 GPUs (16384 both on >= 160 GiB from "
                        "0.28), else 8192 / 2048; "
                        "without chunked prefill max(max_model_len, 2048))")
    g.add_argument("--max-num-seqs", type=int, default=None,
                   help="most sequences scheduled at once (vLLM V1 default: 1024 on GPUs of >= 70 GiB, "
                        "not A100 from 0.9; else 256)")
    g.add_argument("--enable-chunked-prefill", action=argparse.BooleanOptionalAction, default=None,
                   help="chunked prefill (vLLM V1 default on, and forced on in 0.8-0.11; V0 only when max_model_len > 32K)")
    g.add_argument("--entry-point", choices=("llm", "serve"), default="llm",
                   help="offline LLM class or `vllm serve`: vLLM picks different defaults (default llm)")
    g.add_argument("--vllm-version", default=None,
                   help="vLLM version whose defaults and memory rule apply, 0.6-0.34 (default: the profile's "
                        "serving runtime, else 0.10)")
    g.add_argument("--enforce-eager", action="store_true", default=False,
                   help="run vLLM without CUDA graphs: none captured, none in the KV budget (from 0.20 vLLM "
                        "subtracts its graph-memory estimate before sizing the KV cache)")


def engine_settings_from(args):
    from solver.cost.engine_settings import EngineSettings
    for name in ("max_model_len", "max_num_batched_tokens", "max_num_seqs"):
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise InputError("", f"--{name.replace('_', '-')}", f"must be >= 1, got {v}")
    return EngineSettings(gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len,
                          max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs,
                          enable_chunked_prefill=args.enable_chunked_prefill, entry_point=args.entry_point,
                          version=args.vllm_version, enforce_eager=getattr(args, "enforce_eager", False))
