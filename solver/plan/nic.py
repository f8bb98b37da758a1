"""NIC demand of a layout's node chunks: the numbers behind the MILP's NIC rows.

A replica moving tokens/s through its pipeline sends every token's activations across each
inter-node link once (prompt tokens in prefill, generated tokens in decode), so the bytes/s
a link carries is

    demand_bytes_per_s = tokens_per_s x activation_bytes(model, 1 token)

(``solver.cost.stage.activation_bytes``: the one formula for inter-stage bytes). A node chunk
(consecutive stages on one node) sends on its link to the next chunk and receives on its link
from the previous one; its share of its node's NIC per direction is demand / (nic_gbps x GB),
rounded up to a step of 1 / ``milp.NIC_STEPS`` (sound: the rounded sum never admits more
than the NIC sends). It is a time average over the whole run; the per-phase peak is what the
plan report's ``nic_busy_share`` shows.

A group's row cannot bind when even its fullest node -- as many crossing chunks as its GPUs
hold, each at the largest demand -- stays within its NIC: then its chunks carry no steps and
the MILP is unchanged (the usual case: activations are KB per token, NICs GB/s).
"""

from __future__ import annotations

import dataclasses
import math

from solver.cost.stage import activation_bytes
from solver.plan.candidates import CostTable
from solver.plan.milp import NIC_STEPS, Column
from solver.units import GB


def link_bytes_per_s(table: CostTable, tok_s: float) -> float:
    """Bytes/s on each inter-node link of a replica running at ``tok_s`` tokens/s."""
    return tok_s * activation_bytes(table.model, 1, table.workload, table.runtime)


def chunk_demands(table: CostTable, chunks: list[tuple[int, int]], tok_s: float) -> list[tuple[float, float]]:
    """(send, receive) bytes/s of each node chunk of a layout (``chunks`` in pipeline order):
    every chunk but the last sends to the next one, every chunk but the first receives."""
    d, n = link_bytes_per_s(table, tok_s), len(chunks)
    return [(d if i < n - 1 else 0.0, d if i > 0 else 0.0) for i in range(n)]


def nic_steps(table: CostTable, chunk_lists: list[list[tuple[int, int]]], rates: list[float]) -> list[tuple]:
    """Per layout, (send, receive) NIC steps per chunk, () when no group's row can bind.
    ``rates``: the most tokens/s each layout runs at (a bound is sound: more demand)."""
    demands = [chunk_demands(table, ch, r) for ch, r in zip(chunk_lists, rates)]
    binding = set()
    for g in table.groups:
        cap = g.spec.nic_gbps * GB
        crossing = [(z, max(d)) for ch, dm in zip(chunk_lists, demands) for (gg, z), d in zip(ch, dm)
                    if gg == g.index and max(d) > 0]
        if crossing and (g.gpus_per_node // min(z for z, _ in crossing)) * max(d for _, d in crossing) > cap:
            binding.add(g.index)
    out = []
    for ch, dm in zip(chunk_lists, demands):
        steps = tuple((_steps(s, table.groups[g].spec.nic_gbps), _steps(r, table.groups[g].spec.nic_gbps))
                      if g in binding else (0, 0) for (g, _), (s, r) in zip(ch, dm))
        out.append(steps if any(any(st) for st in steps) else ())
    return out


def _steps(bytes_per_s: float, nic_gbps: float) -> int:
    """ceil(NIC_STEPS x demand / NIC bytes/s); a NIC of 0 GB/s takes no crossing at all."""
    if bytes_per_s <= 0:
        return 0
    if nic_gbps <= 0:
        return NIC_STEPS + 1
    return math.ceil(NIC_STEPS * bytes_per_s / (nic_gbps * GB))


def with_nic_steps(table: CostTable, columns: list[Column], rates: list[float]) -> list[Column]:
    """``columns`` with their chunks' NIC steps at ``rates`` tokens/s (one per column)."""
    steps = nic_steps(table, [list(c.chunks) for c in columns], rates)
    return [dataclasses.replace(c, nic_steps=st) for c, st in zip(columns, steps)]
