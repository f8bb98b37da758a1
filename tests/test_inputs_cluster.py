"""Cluster YAML: strict keys, safe loader, units converted once."""

import pytest

from solver.errors import InputError
from solver.inputs.cluster import load_cluster

GOOD = """
name: mixed-pool
node_groups:
  - name: a100
    count: 2
    gpu: A100-80GB
    gpus_per_node: 8
    interconnect: nvlink
    nic_gbps: 25
    usd_per_gpu_hour: 1.1
  - name: l40s
    count: 1
    gpu: L40S
    gpus_per_node: 4
    interconnect: pcie
    nic_gbits: 100
inter_group_gbps: 5
"""


def test_good_cluster(write):
    c = load_cluster(write("c.yaml", GOOD))
    assert c.num_gpus == 20 and len(c.nodes()) == 3
    a100, l40s = c.node_groups
    assert l40s.nic_gbps == 12.5  # 100 Gb/s / 8, converted once at input
    assert c.link_gbps(a100, a100) == 25  # same group: the NIC
    assert c.link_gbps(a100, l40s) == 5  # capped between groups


@pytest.mark.parametrize("text, field, reason", [
    (GOOD.replace("node_groups:", "nodegroups:"), "nodegroups", "did you mean 'node_groups'"),
    (GOOD.replace("count: 2", "count: 0"), "node_groups[0].count", "must be >= 1"),
    (GOOD.replace("count: 2", "count: two"), "node_groups[0].count", "must be an integer"),
    (GOOD.replace("interconnect: nvlink", "interconnect: nvlnk"), "node_groups[0].interconnect",
     "did you mean 'nvlink'"),
    (GOOD.replace("name: l40s", "name: a100"), "node_groups[1].name", "duplicate"),
    (GOOD.replace("gpus_per_node: 4", "gpu_per_node: 4"), "node_groups[1].gpu_per_node",
     "did you mean 'gpus_per_node'"),
    (GOOD.replace("    gpu: L40S\n", ""), "node_groups[1].gpu", "required"),
    ("node_groups: []", "node_groups", "at least one"),
    ("- 1\n- 2", "(top level)", "must be a mapping"),
])
def test_bad_cluster(write, text, field, reason):
    p = write("c.yaml", text)
    with pytest.raises(InputError) as e:
        load_cluster(p)
    assert e.value.field == field
    assert reason in e.value.reason
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_python_tag_is_rejected_not_executed(write, tmp_path):
    marker = tmp_path / "pwned"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\nnode_groups: []\n"
    with pytest.raises(InputError, match="invalid YAML"):
        load_cluster(write("c.yaml", text))
    assert not marker.exists()


def test_missing_file():
    with pytest.raises(InputError, match="cannot read"):
        load_cluster("/nonexistent/cluster.yaml")
