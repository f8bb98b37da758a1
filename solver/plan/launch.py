"""What a runtime can launch: the rule every replica layout the planner proposes obeys.

vLLM (``--distributed-executor-backend ray``) runs a replica as one
``--tensor-parallel-size T --pipeline-parallel-size P`` engine: the same T in every stage,
rank r in stage r // T, and ``VLLM_PP_LAYER_PARTITION`` (any P positive layer counts that
sum to the model's layers) for an uneven split. Ranks are handed to Ray workers sorted by
``(not on the driver node, workers on the node, node IP)`` (vllm/executor/ray_utils.py and
ray_distributed_executor.py, ``sort_by_driver_then_worker_ip``). So, for the GPUs a replica
uses on each node (its *chunks*, each a whole number of stages):

1. one TP degree for the whole replica, TP groups inside one node;
2. the first stage's chunk is on the node where ``vllm serve`` runs (the head, any size);
3. the other chunks follow in order of increasing GPU count; chunks with equal counts are
   ordered by IP, which the planner does not know, so equal counts must be interchangeable:
   the same node group (identical hardware and links);
4. a node holds at most one chunk of a replica (its ranks are consecutive).

The planner's enumeration (``solver.plan.space``) builds only layouts that pass; the
independent validator re-checks placed plans with its own code.
"""

from __future__ import annotations

RUNTIMES = ("vllm", "megatron")


def vllm_order_ok(chunks: list[tuple[int, int]]) -> bool:
    """``chunks``: (group, GPUs) per node in pipeline order. True when vLLM's rank order
    (rules 2-3 above) is this order."""
    rest = chunks[1:]
    for (ga, za), (gb, zb) in zip(rest, rest[1:]):
        if zb < za or (zb == za and ga != gb):
            return False
    return True
