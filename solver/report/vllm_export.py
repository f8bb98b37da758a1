"""vLLM launch commands for planned replicas.

vLLM runs one replica as ``--tensor-parallel-size T --pipeline-parallel-size P`` with the
same T in every stage; uneven layer splits go in ``VLLM_PP_LAYER_PARTITION`` (comma list,
vllm/distributed/utils.py ``get_pp_indices``). Without it vLLM gives every stage
L // P layers and the remainder, one each, to the stages just before the last one.
A replica spanning several nodes needs a Ray cluster over them (vLLM's multi-node docs).

Each command pins what the serving model assumed (``solver.cost.serving``): the dtypes,
``--max-model-len``, ``--gpu-memory-utilization``, ``--max-num-seqs``,
``--max-num-batched-tokens``, chunked prefill and ``--enforce-eager``, as resolved for the vLLM
version, and from 0.34 ``--no-enable-extensible-kv-cache`` (the estimate-based sizing the
prediction models; solver/cost/engine_settings.py RULES["extensible_kv_cache"]) (so a
``vllm serve`` launch, whose own defaults differ from the offline ``LLM`` class's, runs the
engine the prediction sized). GPUs of a node are numbered in plan
order, so replicas sharing a node get disjoint ``CUDA_VISIBLE_DEVICES`` and distinct
``--port`` values (from ``BASE_PORT`` up, per head node).
"""

from __future__ import annotations

from collections import Counter

from solver.cost.engine_settings import extensible_kv_cache_default

# vLLM's OpenAI server default port; replicas whose first stage shares a node count up from it.
BASE_PORT = 8000
_TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}


def vllm_dtype_flags(workload) -> str:
    """``--dtype`` (activations) and, for a 16-bit checkpoint quantized on the fly (fp8),
    ``--quantization``; a quantized checkpoint (``workload.fmt``) is detected by vLLM
    from its own config, so no ``--quantization`` is passed for it."""
    flags = [f"--dtype {_TORCH_DTYPE[workload.act_dtype]}"]
    if workload.fmt is None and workload.weight_bytes.scheme.vllm_quantization:
        flags.append(f"--quantization {workload.weight_bytes.scheme.vllm_quantization}")
    return " ".join(flags)


def vllm_default_partition(num_layers: int, pp: int) -> list[int]:
    """vLLM's split without VLLM_PP_LAYER_PARTITION (get_pp_indices)."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


def device_assignment(replicas) -> list[tuple[dict[str, list[int]], int]]:
    """Per replica: (node id -> its GPU indices on that node, API port). GPUs of a node are
    handed out in plan order; the port counts replicas whose first stage is on the same node."""
    next_gpu: Counter = Counter()
    heads: Counter = Counter()
    out = []
    for rep in replicas:
        devices: dict[str, list[int]] = {}
        for s in rep.stages:
            start = next_gpu[s.node_id]
            devices.setdefault(s.node_id, []).extend(range(start, start + s.tp))
            next_gpu[s.node_id] += s.tp
        head = rep.stages[0].node_id if rep.stages else ""
        out.append((devices, BASE_PORT + heads[head]))
        heads[head] += 1
    return out


def _engine_flags(workload, serving) -> str:
    flags = [vllm_dtype_flags(workload)]
    if workload.kv_dtype == "fp8":
        flags.append("--kv-cache-dtype fp8")
    if workload.expert_parallel:
        flags.append("--enable-expert-parallel")
    if serving is None:
        flags.append(f"--max-model-len {workload.max_len}")
        return " ".join(flags)
    # exactly the engine settings the prediction assumed (solver.cost.serving.ServingConfig.resolved)
    eng = serving.resolved(workload)
    flags.append(f"--max-model-len {eng['max_model_len']}")
    flags.append(f"--gpu-memory-utilization {eng['gpu_memory_utilization']:g}")
    flags.append(f"--max-num-seqs {eng['max_num_seqs']}")
    flags.append(f"--max-num-batched-tokens {eng['max_num_batched_tokens']}")
    flags.append("--enable-chunked-prefill" if eng["enable_chunked_prefill"] else "--no-enable-chunked-prefill")
    if eng.get("enforce_eager"):
        flags.append("--enforce-eager")
    if extensible_kv_cache_default(serving.version):
        # 0.34 sizes the KV cache after warm-up by default; the prediction used the estimate rule
        flags.append("--no-enable-extensible-kv-cache")
    return " ".join(flags)


def vllm_launch(replica, model_ref: str, num_layers: int, workload=None, serving=None,
                devices: dict[str, list[int]] | None = None, port: int = BASE_PORT) -> dict:
    """{"ok", "command", "nodes", "cuda_visible_devices", "port", "reason", "vllm_version"} for one replica;
    ``workload``/``serving`` add the engine flags, ``devices`` the GPUs per node."""
    tps = sorted({s.tp for s in replica.stages})
    nodes = list(dict.fromkeys(s.node_id for s in replica.stages))
    gpus = sorted({s.gpu for s in replica.stages})
    visible = {n: ",".join(map(str, d)) for n, d in (devices or {}).items()}
    base = {"nodes": nodes, "cuda_visible_devices": visible, "port": port,
            # the vLLM release whose rules the prediction (and these flags) follow
            "vllm_version": "%d.%d" % serving.version if serving is not None else None}
    if len(tps) > 1:
        return dict(base, ok=False, command="",
                    reason=f"not launchable with vLLM as planned: stages use TP {' and '.join(map(str, tps))}; "
                           "vLLM needs one --tensor-parallel-size for every stage")
    pp = len(replica.stages)
    split = [s.n_layers for s in replica.stages]
    env = []
    if len(nodes) == 1 and visible:
        env.append(f"CUDA_VISIBLE_DEVICES={visible[nodes[0]]}")
    if pp > 1 and len(set(split)) > 1:
        env.append(f"VLLM_PP_LAYER_PARTITION={','.join(map(str, split))}")
    cmd = " ".join(env + [f"vllm serve {model_ref} --tensor-parallel-size {tps[0]} --pipeline-parallel-size {pp}"])
    if workload is not None:
        cmd += " " + _engine_flags(workload, serving)
    cmd += f" --port {port}" + (" --distributed-executor-backend ray" if len(nodes) > 1 else "")
    notes = []
    if len(nodes) > 1:
        pinned = "".join(f", CUDA_VISIBLE_DEVICES={visible[n]} on {n}" for n in nodes if n in visible)
        notes.append(f"start a Ray cluster over {', '.join(nodes)} first, stages in that order{pinned}")
    if len(gpus) > 1:
        notes.append(f"mixes GPU types ({', '.join(gpus)}): vLLM sizes the KV cache by the smallest stage")
    return dict(base, ok=True, command=cmd, reason="; ".join(notes))
