"""Fuzzing the CLIs (issue #10): hypothesis draws flag values and mutates valid YAML / JSON /
CSV / nccl-tests inputs; every run must end with exit 0, or exit 2 and exactly one line on
stderr -- never a traceback -- and a refused run leaves its output file as it was, with no
temp file beside it.

Bounded and reproducible: ``derandomize=True`` (a fixed sequence of examples, no example
database), a few dozen examples per input kind; the whole file runs in well under a minute
on one core. ``FUZZ_SCALE=10`` (environment) multiplies the examples and draws them at random:
a longer exploratory run, not for CI. Any other exception escaping ``main`` fails the test with its traceback: that is
a crash found.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from calibrate.cli import main as calibrate_main  # noqa: E402
from solver.cli import main as solver_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SYN = str(FIXTURES / "synthetic_profile.json")
NCCL_LOG = FIXTURES / "nccl" / "all_reduce_new_layout_8gpu.log"
CLUSTER = {"name": "tiny", "node_groups": [{"name": "a", "count": 1, "gpu": "A100-80GB", "gpus_per_node": 2,
                                            "interconnect": "nvlink", "nic_gbits": 200, "usd_per_gpu_hour": 1.8}]}
VALIDATION = ("model,gpu,nodes,gpus_used_per_node,interconnect,nic_gbps,tp,pp,input_len,output_len,"
              "num_requests,measured_tok_s,source\n"
              "llama3-8b,SYN,1,2,nvlink,,2,1,1000,100,8,5000,lab\n"
              "llama3-8b,SYN,1,1,nvlink,,1,1,500,50,4,3000,lab\n")

SCALE = int(os.environ.get("FUZZ_SCALE", "1"))


def budget(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, database=None, derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


FUZZ = budget(30)

# Flag values: numbers of every sign and size, non-numbers, sizes, odd text.
WORDS = st.sampled_from(["", "0", "-1", "-4", "1", "2", "3", "8", "1e309", "nan", "-inf", "inf", "1.5", "1K",
                         "2G", "-5", "abc", "0x10", " 3 ", "1_000", "999999999999", "all_reduce", "first",
                         "only", "cost", "throughput", "fp8", "bf16", "H100", "A100-80GB", "x" * 300])
VALUE = st.one_of(WORDS, st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True).map(repr),
                  st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6))
# Values put into files: scalars of every type, lists, maps.
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 40), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=6), WORDS)
JSONISH = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(st.text(max_size=4), SCALAR, max_size=2))


def check(main, argv: list[str], capsys, outputs: tuple[Path, ...] = ()) -> int:
    """Run ``main(argv)``: exit 0, or 2 with one stderr line; a refusal changes no output."""
    before = {p: p.read_bytes() if p.exists() else None for p in outputs}
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc in (0, 2), (argv, rc, err)
    assert "Traceback" not in err, (argv, err)
    if rc == 2:
        assert len(err.strip().splitlines()) == 1, (argv, err)
        for p, old in before.items():
            assert (p.read_bytes() if p.exists() else None) == old, (argv, p)
    for p in outputs:
        if p.parent.exists():
            assert not [q for q in p.parent.iterdir() if q.name.endswith(".tmp")], argv
    return rc


def flags(names: list[str]):
    """A few of ``names``, each with a fuzzed value, as argv."""
    return st.lists(st.tuples(st.sampled_from(names), VALUE), max_size=4).map(
        lambda pairs: [tok for name, v in pairs for tok in (name, v)])


@FUZZ
@given(flags(["--tp", "--pp", "--layers", "--stage", "--batch", "--prompt-len", "--output-len", "--gpus-per-node",
              "--nic-gbps", "--gpu-memory-utilization", "--max-num-seqs", "--dtype", "--kv-dtype"]))
def test_estimate_flags(capsys, argv):
    check(solver_main, ["estimate", "--profile", SYN, "--model", "llama3-8b", *argv], capsys)


@FUZZ
@given(argv=flags(["--collective", "--ranks", "--scope", "--bytes"]))
def test_predict_flags(capsys, argv):
    check(calibrate_main, ["predict", str(ROOT / "profiles" / "a100.json"), "--collective", "all_reduce",
                           "--ranks", "8", "--bytes", "1M", *argv], capsys)


@budget(15)
@given(argv=flags(["--ranks", "--nodes", "--nominal-gbps", "--collective", "--source", "--gpu", "--log-gpu"]))
def test_import_flags(tmp_path_factory, capsys, argv):
    d = tmp_path_factory.mktemp("imp")
    out = d / "p.json"
    check(calibrate_main, ["import-nccl-tests", str(NCCL_LOG), "--out", str(out), "--gpu", "A100-80GB", *argv],
          capsys, (out,))


@budget(10)
@given(argv=flags(["--batch", "--prompt-len", "--output-len", "--objective", "--min-throughput", "--max-replicas",
                   "--time-limit", "--dtype"]))
def test_plan_flags(tmp_path_factory, capsys, argv):
    d = tmp_path_factory.mktemp("plan")
    (d / "c.yaml").write_text(yaml.safe_dump(CLUSTER))
    out = d / "plan.json"
    check(solver_main, ["plan", "--profile", str(ROOT / "profiles"), "--model", "llama3-8b", "--cluster",
                        str(d / "c.yaml"), "--out", str(out), *argv], capsys, (out,))


def _paths(node, prefix=()):
    """Every (path) into a JSON-like tree."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def mutate(tree, data, n_max: int = 3):
    """``tree`` with 1-3 nodes replaced by a fuzzed value or deleted."""
    tree = json.loads(json.dumps(tree))
    for _ in range(data.draw(st.integers(1, n_max))):
        paths = [p for p in _paths(tree) if p]
        path = data.draw(st.sampled_from(paths))
        parent = tree
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSONISH)
        if not isinstance(tree, dict) or not tree:
            break
    return tree


@budget(20)
@given(data=st.data())
def test_cluster_yaml(tmp_path_factory, capsys, data):
    d = tmp_path_factory.mktemp("yaml")
    text = yaml.safe_dump(mutate(CLUSTER, data)) if data.draw(st.integers(0, 4)) else data.draw(st.text(max_size=40))
    (d / "c.yaml").write_text(text)
    check(solver_main, ["plan", "--profile", str(ROOT / "profiles"), "--model", "llama3-8b", "--cluster",
                        str(d / "c.yaml"), "--batch", "4", "--time-limit", "5"], capsys)


@budget(40)
@given(data=st.data())
def test_profile_json(tmp_path_factory, capsys, data):
    d = tmp_path_factory.mktemp("json")
    prof = mutate(json.loads(Path(SYN).read_text()), data)
    text = json.dumps(prof) if data.draw(st.integers(0, 5)) else data.draw(st.text(max_size=30))
    (d / "p.json").write_text(text)
    p = str(d / "p.json")
    check(solver_main, ["estimate", "--profile", p, "--model", "llama3-8b", "--tp", "2"], capsys)
    check(calibrate_main, ["report", p, "--no-png"], capsys)
    check(calibrate_main, ["predict", p, "--collective", "all_reduce", "--ranks", "2", "--bytes", "1M"], capsys)


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _mutate_cells(rows: list[list[str]], data) -> str:
    rows = [list(r) for r in rows]
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(rows) - 1))
        if not rows[i]:
            continue
        j = data.draw(st.integers(0, len(rows[i]) - 1))
        choice = data.draw(st.integers(0, 5))
        if choice == 0:
            del rows[i][j]  # ragged row
        elif choice == 1 and i > 0:
            del rows[i]  # fewer rows
        else:
            rows[i][j] = data.draw(VALUE)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


@pytest.fixture(scope="module")
def raw_csv(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("raw")
    assert calibrate_main(["import-nccl-tests", str(NCCL_LOG), "--out", str(d / "p.json"), "--gpu", "A100-80GB"]) == 0
    (raw,) = (d / "raw").glob("*.csv")
    return raw.read_text()


@budget(15)
@given(data=st.data())
def test_raw_collective_csv(tmp_path_factory, capsys, raw_csv, data):
    d = tmp_path_factory.mktemp("rawfit")
    (d / "r.csv").write_text(_mutate_cells(_csv_rows(raw_csv), data))
    out = d / "q.json"
    check(calibrate_main, ["fit", str(d / "r.csv"), "--out", str(out), "--gpu", "A100-80GB"], capsys, (out,))


@budget(25)
@given(data=st.data())
def test_validation_csv(tmp_path_factory, capsys, data):
    d = tmp_path_factory.mktemp("val")
    (d / "m.csv").write_text(_mutate_cells(_csv_rows(VALIDATION), data))
    check(solver_main, ["validate", str(d / "m.csv"), "--profile", SYN], capsys)


@budget(20)
@given(data=st.data())
def test_memory_csv(tmp_path_factory, capsys, data):
    d = tmp_path_factory.mktemp("mem")
    src = FIXTURES / "h100_shared_sample"
    shutil.copytree(src, d / "in")
    name = data.draw(st.sampled_from(sorted(p.name for p in src.glob("*.csv"))))
    (d / "in" / name).write_text(_mutate_cells(_csv_rows((src / name).read_text()), data))
    check(calibrate_main, ["import-h100-shared", str(d / "in"), "--out-dir", str(d / "raw")], capsys)


@budget(12)
@given(data=st.data())
def test_nccl_log_text(tmp_path_factory, capsys, data):
    """Table tokens replaced, rows dropped or cut short, header lines changed."""
    d = tmp_path_factory.mktemp("log")
    lines = NCCL_LOG.read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        toks = lines[i].split()
        if toks and data.draw(st.booleans()):
            toks[data.draw(st.integers(0, len(toks) - 1))] = data.draw(VALUE)
            lines[i] = "  ".join(toks)
        else:
            del lines[i]
    (d / "all_reduce_perf.log").write_text("\n".join(lines) + "\n")
    out = d / "p.json"
    check(calibrate_main, ["import-nccl-tests", str(d / "all_reduce_perf.log"), "--out", str(out),
                           "--gpu", "A100-80GB"], capsys, (out,))


@budget(20)
@given(data=st.data())
def test_memory_raw_csv(tmp_path_factory, capsys, data):
    """calibrate fit-memory on the shipped H100 native rows with cells, columns or rows broken."""
    d = tmp_path_factory.mktemp("memfit")
    src = ROOT / "profiles" / "raw" / "h100_native.csv"
    (d / "r.csv").write_text(_mutate_cells(_csv_rows(src.read_text()), data))
    out = d / "p.json"
    check(calibrate_main, ["fit-memory", str(d / "r.csv"), "--out", str(out), "--gpu", "H100"], capsys, (out,))


@budget(20)
@given(argv=flags(["--gpu", "--holdout", "--min-layers", "--compute-min-layers", "--mlp", "--memory-runtime"]))
def test_fit_memory_flags(tmp_path_factory, capsys, argv):
    d = tmp_path_factory.mktemp("memflags")
    out = d / "p.json"
    check(calibrate_main, ["fit-memory", str(ROOT / "profiles" / "raw" / "h100_native.csv"), "--out", str(out),
                           "--gpu", "H100", *argv], capsys, (out,))
