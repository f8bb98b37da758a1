"""Torch side of the collective sweep: which groups, which ops, how each point is timed.

Imported only under torchrun (torch is imported lazily by the caller). Conventions are
nccl-tests' (design.md section 4): S is the size nccl-tests prints --

- all_reduce, broadcast: one buffer of S bytes;
- all_gather: S = the gathered output, each rank contributes S/n;
- reduce_scatter: S = the full input, each rank keeps S/n;
- send_recv: 2 ranks, each sends S bytes to the other and receives S at the same time
  (nccl-tests sendrecv_perf on 2 ranks), busbw factor 1.

Timing per point: ``warmup`` untimed runs, then ``iters`` runs each preceded by a group
barrier and bracketed by ``torch.cuda.synchronize`` (CUDA) on a monotonic clock; a rank
keeps the median and the min/max over iterations; the point's value is the max over the
group's ranks (all_reduce MAX), so a straggler rank counts, unlike nccl-tests' averaged mean.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass

DTYPES = {"bf16": ("bfloat16", 2), "fp16": ("float16", 2), "fp32": ("float32", 4)}


@dataclass(frozen=True)
class GroupSpec:
    collective: str
    ranks: tuple[int, ...]  # global ranks, ranks[0] is the root / reporter
    scope: str

    @property
    def n(self) -> int:
        return len(self.ranks)


def plan_groups(collectives: list[str], world: int, local_world: int) -> list[GroupSpec]:
    """Groups TP can use inside a node (2, 4, 8, ... <= GPUs per node, on node 0) and, with
    several nodes, the whole world across nodes; send_recv between ranks 0-1 (intra) and
    rank 0 - first rank of node 1 (inter). World size 1: a one-rank group per collective
    but send_recv (a check of the code path; nothing to fit).

    >>> [(g.collective, g.ranks, g.scope) for g in plan_groups(["all_reduce", "send_recv"], 4, 2)]
    [('all_reduce', (0, 1), 'intra_node'), ('all_reduce', (0, 1, 2, 3), 'inter_node'), ('send_recv', (0, 1), 'intra_node'), ('send_recv', (0, 2), 'inter_node')]
    """
    nnodes = world // local_world
    if world == 1:  # one GPU: one-rank groups run the code path (no send_recv, no fit)
        return [GroupSpec(c, (0,), "intra_node") for c in collectives if c != "send_recv"]
    sizes, g = [], 2
    while g <= local_world:
        sizes.append(g)
        g *= 2
    out = []
    for coll in collectives:
        if coll == "send_recv":
            if local_world >= 2:
                out.append(GroupSpec(coll, (0, 1), "intra_node"))
            if nnodes > 1:
                out.append(GroupSpec(coll, (0, local_world), "inter_node"))
            continue
        out += [GroupSpec(coll, tuple(range(g)), "intra_node") for g in sizes]
        if nnodes > 1:
            out.append(GroupSpec(coll, tuple(range(world)), "inter_node"))
    return out


def sizes_pow2(min_bytes: int, max_bytes: int) -> list[int]:
    """Powers of two from ``min_bytes`` (rounded up) to ``max_bytes``.

    >>> sizes_pow2(1000, 8192)
    [1024, 2048, 4096, 8192]
    """
    s = 1
    while s < min_bytes:
        s *= 2
    out = []
    while s <= max_bytes:
        out.append(s)
        s *= 2
    return out


# Off-power-of-two sizes are rounded to this many bytes so every rank of a group of up to 64
# gets a whole number of 4-byte elements (all_gather / reduce_scatter split the buffer).
SIZE_QUANTUM_BYTES = 256


def sizes_geometric(min_bytes: int, max_bytes: int, per_doubling: int = 1) -> list[int]:
    """``per_doubling`` sizes per factor of two (1: the powers of two, as nccl-tests ``-f 2``).
    Denser sweeps resolve NCCL's protocol/algorithm switches, which fall between powers of
    two; sizes between powers of two are rounded to ``SIZE_QUANTUM_BYTES``.

    >>> sizes_geometric(1024, 4096, 2)
    [1024, 1536, 2048, 2816, 4096]
    """
    if per_doubling < 1:
        raise ValueError(f"per_doubling must be >= 1, got {per_doubling}")
    out = []
    for p in sizes_pow2(min_bytes, max_bytes):
        out.append(p)
        for j in range(1, per_doubling):
            s = round(p * 2 ** (j / per_doubling) / SIZE_QUANTUM_BYTES) * SIZE_QUANTUM_BYTES
            if p < s < 2 * p and s <= max_bytes:
                out.append(s)
    return sorted(set(out))


class Runner:
    """Builds the buffers and the op of one group on this rank."""

    def __init__(self, torch, dist, device, dtype: str):
        self.torch, self.dist, self.device = torch, dist, device
        self.dtype = getattr(torch, DTYPES[dtype][0])
        self.elt = DTYPES[dtype][1]
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def op(self, spec: GroupSpec, pg, size: int, rank: int):
        """A zero-argument callable running the collective once, or None if ``size`` is too
        small for ``spec`` (below n elements: nccl-tests prints size 0 there)."""
        t, d = self.torch, self.dist
        n = spec.n
        count = size // self.elt
        if count < (n if spec.collective in ("all_gather", "reduce_scatter") else 1):
            return None
        mk = lambda c: t.ones(c, dtype=self.dtype, device=self.device)  # noqa: E731
        if spec.collective == "all_reduce":
            buf = mk(count)
            return lambda: d.all_reduce(buf, group=pg)
        if spec.collective == "broadcast":
            buf = mk(count)
            return lambda: d.broadcast(buf, src=spec.ranks[0], group=pg)
        if spec.collective == "all_gather":
            inp, out = mk(count // n), mk(count // n * n)
            return lambda: d.all_gather_into_tensor(out, inp, group=pg)
        if spec.collective == "reduce_scatter":
            inp, out = mk(count // n * n), mk(count // n)
            return lambda: d.reduce_scatter_tensor(out, inp, group=pg)
        peer = spec.ranks[1] if rank == spec.ranks[0] else spec.ranks[0]
        sbuf, rbuf = mk(count), mk(count)

        def p2p():
            ops = [d.P2POp(d.isend, sbuf, peer, group=pg), d.P2POp(d.irecv, rbuf, peer, group=pg)]
            for req in d.batch_isend_irecv(ops):
                req.wait()
        return p2p

    def time_point(self, fn, pg, iters: int, warmup: int) -> tuple[float, float, float]:
        """(median, min, max) microseconds over ``iters`` timed runs, max over the group's ranks."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            for _ in range(warmup):
                fn()
            self.sync()
            times = []
            for _ in range(iters):
                self.dist.barrier(group=pg)
                self.sync()
                t0 = time.perf_counter()
                fn()
                self.sync()
                times.append((time.perf_counter() - t0) * 1e6)
        stats = self.torch.tensor([statistics.median(times), min(times), max(times)],
                                  dtype=self.torch.float64, device=self.device)
        self.dist.all_reduce(stats, op=self.dist.ReduceOp.MAX, group=pg)
        med, lo, hi = (float(v) for v in stats.cpu())
        return med, lo, hi
