"""Cluster description: groups of identical nodes. Bandwidths in GB/s per direction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from solver.inputs.fields import Fields, load_yaml

INTERCONNECTS = ("nvlink", "pcie")

_GROUP_KEYS = ("name", "count", "gpu", "gpus_per_node", "interconnect", "nic_gbps",
               "usd_per_gpu_hour", "nic_gbits")
_TOP_KEYS = ("name", "node_groups", "inter_group_gbps", "description")


@dataclass(frozen=True)
class NodeGroup:
    name: str
    count: int
    gpu: str
    gpus_per_node: int
    interconnect: str
    nic_gbps: float  # GB/s per direction per node
    usd_per_gpu_hour: float | None = None

    @property
    def num_gpus(self) -> int:
        return self.count * self.gpus_per_node


@dataclass(frozen=True)
class Node:
    """One physical node; ``index`` is its position inside its group."""
    group: NodeGroup
    index: int

    @property
    def node_id(self) -> str:
        return f"{self.group.name}/{self.index}"


@dataclass(frozen=True)
class Cluster:
    name: str
    node_groups: tuple[NodeGroup, ...]
    inter_group_gbps: float | None = None
    where: str = ""

    def nodes(self) -> list[Node]:
        return [Node(g, i) for g in self.node_groups for i in range(g.count)]

    @property
    def num_gpus(self) -> int:
        return sum(g.num_gpus for g in self.node_groups)

    def gpu_types(self) -> list[str]:
        return sorted({g.gpu for g in self.node_groups})

    def link_gbps(self, a: NodeGroup, b: NodeGroup) -> float:
        """Nominal bandwidth between two distinct nodes: the slower NIC, capped by
        ``inter_group_gbps`` when the nodes are in different groups."""
        bw = min(a.nic_gbps, b.nic_gbps)
        if a.name != b.name and self.inter_group_gbps is not None:
            bw = min(bw, self.inter_group_gbps)
        return bw


def parse_cluster(data: object, where: str) -> Cluster:
    top = Fields(data, where, "", _TOP_KEYS)
    groups_raw = top.get("node_groups", list)
    if not groups_raw:
        raise top.error("node_groups", "must list at least one node group")
    groups, seen = [], set()
    for i, raw in enumerate(groups_raw):
        f = Fields(raw, where, f"node_groups[{i}]", _GROUP_KEYS)
        name = f.get("name", str)
        if name in seen:
            raise f.error("name", f"duplicate node group name {name!r}")
        seen.add(name)
        if "nic_gbps" in f.data and "nic_gbits" in f.data:
            raise f.error("nic_gbits", "give nic_gbps (GB/s) or nic_gbits (Gb/s), not both")
        if "nic_gbits" in f.data:
            nic = f.get("nic_gbits", float, min_value=0) / 8.0  # bits -> bytes, once, at input
        else:
            nic = f.get("nic_gbps", float, 0.0, min_value=0)
        groups.append(NodeGroup(
            name=name,
            count=f.get("count", int, min_value=1),
            gpu=f.get("gpu", str),
            gpus_per_node=f.get("gpus_per_node", int, min_value=1, max_value=64),
            interconnect=f.get("interconnect", str, choices=INTERCONNECTS),
            nic_gbps=nic,
            usd_per_gpu_hour=f.get("usd_per_gpu_hour", float, None, min_value=0),
        ))
    return Cluster(
        name=top.get("name", str, Path(where).stem),
        node_groups=tuple(groups),
        inter_group_gbps=top.get("inter_group_gbps", float, None, min_value=0),
        where=where,
    )


def load_cluster(path: str | Path) -> Cluster:
    return parse_cluster(load_yaml(path), str(path))
