#!/usr/bin/env bash
# One prepared check for a machine with one CUDA GPU, done in under 8 minutes:
#
#   scripts/gpu_check.sh OUTDIR              # on the GPU machine
#   scripts/gpu_check.sh OUTDIR --dry-run    # on CPU: the same steps, tiny and synthetic
#
# Steps (each under its own time limit; one failing does not stop the others):
#   env          GPU name, driver, torch, CUDA, NCCL, host, commit -> OUTDIR/env.json
#   ops          scripts/profile_ops.py (the op sweep), when that script exists; ops_fit: its raw
#                CSV through `calibrate fit-ops` into OUTDIR/ops_profile.json (a copy of the shipped one)
#   mem_native   scripts/profile_memory.py --runtime native, quick grid (TP-sharded llama3-8b layers)
#   mem_hf       scripts/profile_memory.py --runtime transformers (HF Llama layers), quick grid
#   nccl         scripts/profile_nccl.py under torchrun at world size 1: the NCCL/CUDA path end to end
#   report       python -m calibrate.gpu_check: measurements vs the shipped profile of this GPU
# Raw files land in OUTDIR/raw (never overwritten: OUTDIR must be new or empty), the memory
# fits in OUTDIR/mem_<runtime>.json (copies of the shipped profile with measured sections);
# refit any raw file with `calibrate fit-memory` / `calibrate fit`. Exit 0 when every step
# that ran succeeded, 1 when one failed (see OUTDIR/steps.tsv and OUTDIR/<step>.log), 2 on
# bad usage. PYTHON picks the interpreter (default: the repo's .venv, else python3);
# PROFILE_OPS_ARGS adds flags to profile_ops.py; GPU_CHECK_ONLY="nccl report" runs only the
# steps named (the test suite's quick dry run).
set -u

usage() { echo "usage: scripts/gpu_check.sh OUTDIR [--dry-run]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
OUT=$1
DRY=0
if [ $# -eq 2 ]; then [ "$2" = "--dry-run" ] && DRY=1 || usage; fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
    echo "gpu_check.sh: error: $OUT: exists and is not empty; results are never overwritten" >&2
    exit 2
fi
mkdir -p "$OUT/raw" 2>/dev/null || { echo "gpu_check.sh: error: $OUT: cannot create folder" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
STEPS="$OUT/steps.tsv"
: > "$STEPS"
FAILED=0

wanted() { [ -z "${GPU_CHECK_ONLY:-}" ] || [[ " $GPU_CHECK_ONLY " == *" $1 "* ]]; }

step() {  # step NAME LIMIT_S CMD...: run, log, record exit code and seconds
    local name=$1 limit=$2 t0 rc
    shift 2
    if ! wanted "$name"; then
        printf '%s\tnot run (GPU_CHECK_ONLY)\t0\n' "$name" >> "$STEPS"
        return
    fi
    t0=$(date +%s)
    echo "== $name (limit ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$STEPS"
    tail -n 2 "$OUT/$name.log" | sed 's/^/   /'
    echo "   exit $rc ($(( $(date +%s) - t0 )) s), log $OUT/$name.log"
    [ "$rc" -eq 0 ] || FAILED=1
}

# --- env: what this machine is -------------------------------------------------------
"$PYTHON" - "$OUT/env.json" "$DRY" <<'EOF' || { echo "gpu_check.sh: error: env step failed (torch installed?)" >&2; exit 2; }
import datetime, json, socket, subprocess, sys
out, dry = sys.argv[1], sys.argv[2] == "1"
try:
    import torch
except ImportError:
    print("gpu_check.sh: error: needs torch (pip install '.[calibrate]')", file=sys.stderr)
    sys.exit(2)
if not dry and not torch.cuda.is_available():
    print("gpu_check.sh: error: no CUDA GPU here; use --dry-run for the CPU plumbing check", file=sys.stderr)
    sys.exit(2)
def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
env = {"gpu": "cpu (dry run)" if dry else torch.cuda.get_device_name(0),
       "driver": "" if dry else run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
       "torch": torch.__version__, "cuda": torch.version.cuda or "",
       "nccl": "" if dry else ".".join(map(str, torch.cuda.nccl.version())),
       "host": socket.gethostname(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
       "commit": run(["git", "rev-parse", "--short", "HEAD"]), "mode": "dry run (CPU, synthetic)" if dry else "GPU"}
if not dry:
    props = torch.cuda.get_device_properties(0)
    env.update(memory_gib=round(props.total_memory / 2**30, 2), capability=f"{props.major}.{props.minor}",
               sms=props.multi_processor_count)
json.dump(env, open(out, "w"), indent=2)
print(json.dumps(env))
EOF
GPU="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["gpu"])' "$OUT/env.json")"
if [ "$DRY" -eq 1 ]; then
    SHIPPED="$ROOT/profiles/h100.json"  # CPU numbers against a real profile: plumbing only
else
    SHIPPED="$("$PYTHON" -c 'import sys; from calibrate.gpu_check import shipped_profile; print(shipped_profile(sys.argv[1], sys.argv[2]) or "")' "$GPU" "$ROOT/profiles")"
fi
echo "GPU: $GPU; shipped profile: ${SHIPPED:-none}"
TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 1)

# --- ops: the op sweep (scripts/profile_ops.py, when present), then fitted into a copy ---
if [ -f scripts/profile_ops.py ] || ! wanted ops; then
    if [ "$DRY" -eq 1 ]; then
        step ops 200 "$PYTHON" scripts/profile_ops.py --dry-run --out-dir "$OUT/raw" ${PROFILE_OPS_ARGS:-}
    else
        step ops 200 "$PYTHON" scripts/profile_ops.py --out-dir "$OUT/raw" ${PROFILE_OPS_ARGS:---iters 10}
    fi
    OPS_RAW="$(ls "$OUT"/raw/ops_*.csv 2>/dev/null | head -n 1)"
    if [ -n "$OPS_RAW" ]; then
        NEWGPU=(--gpu H100)  # dry run: a new datasheet profile holds the synthetic tables
        if [ "$DRY" -eq 0 ]; then
            NEWGPU=(--gpu "$GPU")
            if [ -n "$SHIPPED" ]; then cp "$SHIPPED" "$OUT/ops_profile.json"; NEWGPU=(); fi
        fi
        step ops_fit 20 "$PYTHON" -m calibrate.cli fit-ops "$OPS_RAW" --out "$OUT/ops_profile.json" \
            ${NEWGPU[@]+"${NEWGPU[@]}"} --runtime native
    fi
else
    printf 'ops\tskipped: scripts/profile_ops.py not present\t0\n' >> "$STEPS"
    echo "== ops: skipped (scripts/profile_ops.py not present)"
fi

# --- memory profiler: native and HF Llama layers, TP-sharded shapes on this one GPU ------
for rt in native transformers; do
    name=mem_native; [ "$rt" = transformers ] && name=mem_hf
    prof="$OUT/mem_$rt.json"
    if [ "$DRY" -eq 1 ]; then
        step "$name" 80 "$PYTHON" scripts/profile_memory.py --dry-run --runtime "$rt" --out "$prof"
    else
        [ -n "$SHIPPED" ] && cp "$SHIPPED" "$prof"  # measured sections merge into a copy of the shipped one
        step "$name" 80 "${TORCHRUN[@]}" scripts/profile_memory.py --runtime "$rt" --grid quick --out "$prof"
    fi
done

# --- NCCL at world size 1: the CUDA path of the collective sweep end to end --------------
BACKEND=nccl MAXB=64M
[ "$DRY" -eq 1 ] && BACKEND=gloo MAXB=1M
step nccl 45 "${TORCHRUN[@]}" scripts/profile_nccl.py --backend "$BACKEND" --out "$OUT/nccl_check.json" \
    --raw-out "$OUT/raw/nccl_world1.csv" --min-bytes 1K --max-bytes "$MAXB" --iters 10 --warmup 3 --timeout 60

# --- report -------------------------------------------------------------------------------
step report 15 "$PYTHON" -m calibrate.gpu_check "$OUT" ${SHIPPED:+--profile "$SHIPPED"}
echo "report: $OUT/report.md; raw files: $OUT/raw"
exit "$FAILED"
