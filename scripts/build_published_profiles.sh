#!/usr/bin/env bash
# Rebuild the `published` parts of the shipped profiles from public data, reproducibly.
# Each section is owned by one command; sections not rebuilt here are left untouched.
# Run from the repository root:  bash scripts/build_published_profiles.sh [collectives|serving|memory|ops|vllm-memory]
# The `ops` step (and the L40S serving fit, which runs on its op tables) needs aiconfigurator-core
# 0.12.0 and pyarrow: pip install -e '.[import]' aiconfigurator-core==0.12.0
set -euo pipefail
cd "$(dirname "$0")/.."
CAL="${CALIBRATE:-calibrate}"
LOGS="${NCCL_LOGS:-../shared/data/nccl}"
what="${1:-all}"

# ---------------------------------------------------------------- collectives
# Public nccl-tests logs (see $LOGS/README.md; each log cites its source URL in '# source:').
# Raw points land in profiles/raw/nccl_<log>_<content hash>.csv (never overwritten); fits merge into `collectives` only.
if [[ "$what" == all || "$what" == collectives ]]; then
  A100_PROXY="A100-SXM4-40GB and A100-SXM4-80GB SXM boards share the NVLink3/NVSwitch fabric (12 links x 25 GB/s per direction, DGX-A100-type node); collective speed does not depend on HBM size"
  # 8x A100-40GB SXM, one node (OCI BM.GPU4.8): all_reduce n=8 intra_node
  "$CAL" import-nccl-tests "$LOGS/a100_sxm4_40gb_8gpu_1node_allreduce_oci_bm_gpu4.log" \
      --gpu A100-80GB --out profiles/a100.json --source published \
      --collective all_reduce --ranks 8 --nodes 1 --log-gpu "NVIDIA A100-SXM4-40GB" \
      --proxy-reason "$A100_PROXY"
  # 2 nodes x 8 A100-40GB (ALCF Sophia): all_reduce / all_gather n=16 inter_node.
  # The inter-node fabric is not named in the logs, so no nominal/efficiency is claimed and
  # network.inter_node_alpha_us / nic_efficiency keep their defaults.
  for c in allreduce:all_reduce allgather:all_gather; do
    "$CAL" import-nccl-tests "$LOGS/a100_sxm4_40gb_2node_16gpu_${c%%:*}_alcf_sophia.log" \
        --gpu A100-80GB --out profiles/a100.json --source published \
        --collective "${c##*:}" --ranks 16 --nodes 2 --log-gpu "NVIDIA A100-SXM4-40GB" --nccl 2.22.3 \
        --proxy-reason "$A100_PROXY; inter-node fabric of ALCF Sophia (not named in the log)"
  done
  # 4x H100, one node (SURF Snellius gpu_h100), NCCL 2.22.3: n=4 intra_node
  for c in allreduce:all_reduce allgather:all_gather reducescatter:reduce_scatter; do
    "$CAL" import-nccl-tests "$LOGS/h100_4gpu_1node_${c%%:*}_snellius.log" \
        --gpu H100 --out profiles/h100.json --source published \
        --collective "${c##*:}" --ranks 4 --nodes 1 --log-gpu "NVIDIA H100" --nccl 2.22.3 \
        --proxy-reason "the log prints the device only as 'NVIDIA H100' (form factor and memory not stated); busbw of ~324 GB/s at 128 MiB on 4 ranks is above any PCIe rate, so the GPUs are NVLink-connected like H100 SXM"
  done
  # 8x V100-SXM2-16GB, one node, NVLink hybrid cube-mesh (no NVSwitch): all_reduce n=8 intra_node
  "$CAL" import-nccl-tests "$LOGS/v100_sxm2_16gb_8gpu_allreduce_konnase.log" \
      --gpu V100 --out profiles/v100.json --source published \
      --collective all_reduce --ranks 8 --nodes 1 --log-gpu "Tesla V100-SXM2-16GB"
fi

# ---------------------------------------------------------------- serving (L40S, A10G)
# Datasheet profiles for the PCIe GPUs (calibrate/published.py), then the serving-engine
# constants of the L40S fitted on public vLLM 0.10.0 runs (../shared/data/vllm/README.md).
# Fit on the single-node deployments only; every two-node deployment is held out (never
# enters the fit) and its error is recorded in fit_error.held_out_*. Rows with a blank
# num_requests (source our_experiment_perfdb) are excluded: their batch is unknown.
# The A10G has no measurements: its serving section stays absent (vLLM defaults apply).
if [[ "$what" == all || "$what" == serving ]]; then
  VLLM="${VLLM_DATA:-../shared/data/vllm}"
  "$CAL" init --gpu L40S --out profiles/l40s.json --force
  "$CAL" init --gpu A10G --out profiles/a10g.json --force
  # the serving constants are fitted on top of the L40S op tables (same model as every prediction)
  "$CAL" import-aiconfigurator --system l40s --backend vllm --out profiles/l40s.json
  "$CAL" fit-serving "$VLLM/l40s_llama70b_offline.csv" --profile profiles/l40s.json \
      --fit-rows "source=our_experiment,nodes=1" --held-out "source=our_experiment" \
      --gpu-memory-utilization 0.85 --runtime "vllm 0.10.0" \
      --ref "Tandemn-Labs/LLM_placement_solver llm_advisor/data (vLLM 0.10.0 offline LLM.generate, DeepSeek-R1-Distill-Llama-70B fp16 on AWS g6e L40S), as collected in ../shared/data/vllm"
fi

# ---------------------------------------------------------------- memory + compute (H100, measured)
# Real H100 80GB measurements (../shared/data/h100/README.md; torch 2.11.0+cu130, the probes in
# probes/). Imported into the raw format scripts/profile_memory.py writes, then fitted; only the
# `memory` and `compute` sections of profiles/h100.json change. Memory: the HF transformers rows
# (stages of >= 2 layers); compute: the native layer (CUDA-event timings). Held out of both fits:
# every tp=2 row and the (b=8, s=2048) / (b=1, s=8192) shapes; errors in fit_error.
# No GPU was used to produce this: runtime_overhead_gib / fragmentation_frac / decode_efficiency
# keep their defaults (the shared data has no mem_get_info, reserved or usable decode columns).
if [[ "$what" == all || "$what" == memory ]]; then
  H100_DATA="${H100_DATA:-../shared/data/h100}"
  "$CAL" import-h100-shared "$H100_DATA" --out-dir profiles/raw --prefix h100
  "$CAL" fit-memory profiles/raw/h100_transformers.csv profiles/raw/h100_native.csv --out profiles/h100.json \
      --memory-runtime transformers-5.17-sdpa --compute-runtime native-sdpa --min-layers 2 \
      --holdout "tp=2;batch=8,seq=2048;batch=1,seq=8192"
fi

# ---------------------------------------------------------------- ops (A100, H100, H200 op tables)
# NVIDIA AIConfigurator's measured per-op database (aiconfigurator-core 0.12.0, Apache-2.0,
# systems/data/<system>/{gemm,attention,comm}/...): GEMM, prefill/decode attention, vLLM custom
# and NCCL all-reduce, subset to the shapes of the model zoo (calibrate/importers/aiconfigurator.py).
# The L40S tables are imported in the serving step above. H200 has no other section: datasheet + defaults.
if [[ "$what" == all || "$what" == ops ]]; then
  "$CAL" import-aiconfigurator --system a100_sxm --backend vllm --out profiles/a100.json
  # the engine's per-step overhead on top of the A100 tables, fitted on the split=fit rows of
  # public vLLM benchmark_latency runs (data/step_times/README.md); held-out error in fit_error
  "$CAL" fit-step-overhead data/step_times/a100_vllm_latency.csv --profile profiles/a100.json \
      --ref "vLLM issues #16300 (QwQ-32B, vLLM 0.7.2, 8x A100 80GB) and #12315 (Llama-3.3-70B, vLLM 0.6.6, 4x A100): benchmark_latency.py results quoted in the issue bodies"
  "$CAL" import-aiconfigurator --system h100_sxm --backend vllm --out profiles/h100.json
  [[ -f profiles/h200.json ]] || "$CAL" init --gpu H200 --out profiles/h200.json
  "$CAL" import-aiconfigurator --system h200_sxm --backend vllm --out profiles/h200.json
fi

# ---------------------------------------------------------------- memory.vllm (public vLLM start-up logs)
# vLLM's own accounting (docs/vllm_memory.md) fitted on ../shared/data/vllm_memory/logs.csv (rows of the since-init rule, 0.10+,
# for version 0.10); the held-out rows are fit-memory --vllm's default. A profile whose GPU has rows
# gets `published` non-torch figures; the others get `default` ones with plausible ranges.
if [[ "$what" == all || "$what" == vllm-memory ]]; then
  VLLM_MEMORY="${VLLM_MEMORY:-../shared/data/vllm_memory/logs.csv}"
  for g in a100 h100 h200 l40s a10g v100; do
    "$CAL" fit-memory --vllm "$VLLM_MEMORY" --out "profiles/$g.json" --vllm-version 0.10
  done
fi
