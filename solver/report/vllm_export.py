"""vLLM launch commands for planned replicas.

vLLM runs one replica as ``--tensor-parallel-size T --pipeline-parallel-size P`` with the
same T in every stage; uneven layer splits go in ``VLLM_PP_LAYER_PARTITION`` (comma list,
vllm/distributed/utils.py ``get_pp_indices``). Without it vLLM gives every stage
L // P layers and the remainder, one each, to the stages just before the last one.
A replica spanning several nodes needs a Ray cluster over them (vLLM's multi-node docs).
"""

from __future__ import annotations


def vllm_default_partition(num_layers: int, pp: int) -> list[int]:
    """vLLM's split without VLLM_PP_LAYER_PARTITION (get_pp_indices)."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


def vllm_launch(replica, model_ref: str, num_layers: int) -> dict:
    """{"ok": bool, "command": str, "nodes": [...], "reason": str} for one replica."""
    tps = sorted({s.tp for s in replica.stages})
    nodes = list(dict.fromkeys(s.node_id for s in replica.stages))
    gpus = sorted({s.gpu for s in replica.stages})
    if len(tps) > 1:
        return {"ok": False, "command": "", "nodes": nodes,
                "reason": f"not launchable with vLLM as planned: stages use TP {' and '.join(map(str, tps))}; "
                          "vLLM needs one --tensor-parallel-size for every stage"}
    pp = len(replica.stages)
    split = [s.n_layers for s in replica.stages]
    env = ""
    if pp > 1 and split != vllm_default_partition(num_layers, pp):
        env = f"VLLM_PP_LAYER_PARTITION={','.join(map(str, split))} "
    cmd = (f"{env}vllm serve {model_ref} --tensor-parallel-size {tps[0]} --pipeline-parallel-size {pp}"
           + (" --distributed-executor-backend ray" if len(nodes) > 1 else ""))
    notes = []
    if len(nodes) > 1:
        notes.append(f"start a Ray cluster over {', '.join(nodes)} first, stages in that order")
    if len(gpus) > 1:
        notes.append(f"mixes GPU types ({', '.join(gpus)}): vLLM sizes the KV cache by the smallest stage")
    return {"ok": True, "command": cmd, "nodes": nodes, "reason": "; ".join(notes)}
