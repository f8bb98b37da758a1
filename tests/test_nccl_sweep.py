"""scripts/profile_nccl.py end to end on real multi-process gloo groups (CPU, test only).

Three 2-rank runs start together with file:// rendezvous: a full sweep, a run whose rank 1
dies (os._exit, like a kill) after 3 points, and one whose rank 1 stalls so rank 0 hits
--timeout 3. Ranks are forked from a forkserver (torch imported there once) instead of
six fresh interpreters, which keeps the test near 10 s on 2 cores. Timings are never
checked, only the sweep, the files and the failure behaviour.
"""

import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")


def _rank(env: dict, argv: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = os.fdopen(fd, "w", buffering=1)  # pytest replaced the originals
    os.environ.update(env)
    from calibrate.nccl.run import main
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def _launch(tmp: Path, name: str, extra: list[str], fault: str | None) -> list:
    # forkserver, not fork: earlier tests in this process may have started torch/OpenMP
    # thread pools, and a child forked from a threaded parent can deadlock. The server is a
    # fresh single-threaded process that imports torch once, then forks the ranks cheaply.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "calibrate.nccl.run"])
    procs = []
    for rank in (0, 1):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
               "OMP_NUM_THREADS": "1", "CALIBRATE_NCCL_TEST_FAULT": fault or ""}
        argv = ["--backend", "gloo", "--init-method", f"file://{tmp}/{name}.init",
                "--out", str(tmp / f"{name}.json"), "--raw-out", str(tmp / f"{name}.csv"),
                "--min-bytes", "1K", "--max-bytes", "2M", "--iters", "3", "--warmup", "1", "--dtype", "fp32", *extra]
        p = ctx.Process(target=_rank, args=(env, argv, str(tmp / f"{name}.rank{rank}.log")))
        p.start()
        procs.append(p)
    return procs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    from calibrate.cli import main as calibrate
    for name in ("ok", "kill", "hang"):
        assert calibrate(["init", "--gpu", "A100-80GB", "--synthetic", "--out", str(tmp / f"{name}.json")]) == 0
    before = (tmp / "kill.json").read_text()
    started = {"ok": _launch(tmp, "ok", [], None),
               "kill": _launch(tmp, "kill", [], "1:kill:3"),
               "hang": _launch(tmp, "hang", ["--timeout", "3"], "1:hang:2")}
    out = {}
    for name, procs in started.items():
        res = []
        for i, p in enumerate(procs):
            p.join(timeout=0.5 if (name == "hang" and i == 1) else 60)
            if p.is_alive():
                p.kill()  # the stalled rank we started: it sleeps until killed
                p.join()
            text = (tmp / f"{name}.rank{i}.log").read_text()
            res.append((p.exitcode, text, text))
        out[name] = res
    return tmp, out, before


def test_sweep_writes_raw_and_synthetic_profile(runs):
    tmp, out, _ = runs
    (rc0, o0, e0), (rc1, _, e1) = out["ok"]
    assert rc0 == 0 and rc1 == 0, e0 + e1
    assert "[5/5] send_recv n=2 intra_node" in o0 and "gloo backend" in o0
    assert "60/60" in o0  # progress bar: one step per (collective, ranks, size), 5 x 12
    import csv
    rows = list(csv.DictReader((tmp / "ok.csv").open()))
    assert len(rows) == 5 * 12  # 5 collectives x 1 KiB..2 MiB
    assert {r["collective"] for r in rows} == {"all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv"}
    assert all(r["source"] == "synthetic" and r["backend"] == "gloo" and r["torch"] for r in rows)
    assert all(float(r["time_min_us"]) <= float(r["time_us"]) <= float(r["time_max_us"]) for r in rows)
    prof = json.loads((tmp / "ok.json").read_text())
    assert len(prof["collectives"]) == 5 and all(c["source"] == "synthetic" for c in prof["collectives"])
    assert "memory" in prof and "compute" in prof  # other sections untouched
    from solver.inputs.profile import load_profile
    assert load_profile(tmp / "ok.json").collectives[0].ranks == 2


def test_killed_rank_clean_error_no_profile(runs):
    tmp, out, before = runs
    (rc0, _, e0), (rc1, _, _) = out["kill"]
    assert rc0 == 1 and rc1 == 9
    assert "rank 0: failed during" in e0 and "No profile written" in e0 and "Traceback" not in e0
    assert (tmp / "kill.json").read_text() == before
    assert len((tmp / "kill.csv").read_text().splitlines()) == 1 + 3  # header + the 3 points measured


def test_timeout_clean_error_no_profile(runs):
    tmp, out, _ = runs
    (rc0, _, e0), _ = out["hang"]
    assert rc0 == 1 and "timed out" in e0.lower() and "No profile written" in e0
    assert json.loads((tmp / "hang.json").read_text())["collectives"] == []
