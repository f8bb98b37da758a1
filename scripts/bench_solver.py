"""Benchmark of ``solver plan`` on generated pools (a table, not a timed test).

Rows: 44 GPUs / 4 types / 11 nodes, 128 GPUs / 5 types, 512 GPUs / 6 types, each with
llama3-70b and llama3.1-405b at batch 32 per replica, prompt 2048, output 512; then a
KV-bound workload (one batch of 512 x 8,192 tokens shared by the pool) on the first two
pools; then random suites of tiny pools checked against brute force, per-replica and shared
batches. Every plan is launchable (one TP per replica, vLLM's rank order) and passed the
independent validator; ratios are per second and per dollar, with the baseline's GPU count
(the homogeneous baseline uses fewer GPUs). Profiles: the shipped profiles/*.json plus
`calibrate init` (published + defaults) ones for types the repo has none of. ``--quick``:
the 44-GPU pool and 20 tiny pools per suite.

    .venv/bin/python scripts/bench_solver.py [--quick] [--solver cbc|highs] [--time-limit 60]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from solver.errors import InfeasibleError  # noqa: E402
from solver.inputs.cluster import parse_cluster  # noqa: E402
from solver.inputs.model import load_model  # noqa: E402
from solver.inputs.profile import load_profile, load_profiles  # noqa: E402
from solver.inputs.workload import Workload  # noqa: E402
from solver.plan.exhaustive import Exhaustive  # noqa: E402
from solver.plan.planner import plan  # noqa: E402
from solver.report.table import render  # noqa: E402

# (group name, nodes, GPU, GPUs per node, NIC Gb/s, $/GPU/h)
POOLS = {
    "44 GPUs, 4 types, 11 nodes": [("a100", 2, "A100-80GB", 8, 200, 1.8), ("h100", 2, "H100", 4, 400, 3.5),
                                   ("l40s", 3, "L40S", 4, 100, 0.9), ("a10g", 4, "A10G", 2, 50, 0.6)],
    "128 GPUs, 5 types": [("a100", 6, "A100-80GB", 8, 200, 1.8), ("h100", 4, "H100", 8, 400, 3.5),
                          ("l40s", 6, "L40S", 4, 100, 0.9), ("a10g", 4, "A10G", 4, 50, 0.6),
                          ("v100", 2, "V100", 4, 100, 0.5)],
    "512 GPUs, 6 types": [("a100", 24, "A100-80GB", 8, 200, 1.8), ("h100", 16, "H100", 8, 400, 3.5),
                          ("l40s", 24, "L40S", 4, 100, 0.9), ("a10g", 12, "A10G", 4, 50, 0.6),
                          ("v100", 8, "V100", 4, 100, 0.5), ("a100-40", 2, "A100-40GB", 8, 200, 1.2)],
}
MODELS = ("llama3-70b", "llama3.1-405b")


def cluster(groups, name="bench"):
    return parse_cluster({"name": name, "inter_group_gbps": 12.5, "node_groups": [
        {"name": n, "count": c, "gpu": g, "gpus_per_node": k, "interconnect": "nvlink" if k >= 8 else "pcie",
         "nic_gbits": nic, "usd_per_gpu_hour": usd} for n, c, g, k, nic, usd in groups]}, name)


def profiles(tmp: Path):
    have = load_profiles([str(ROOT / "profiles")])
    for gpu in ("A100-40GB", "A10G", "V100", "L40S"):
        if not any(p.matches(gpu) for p in have):
            out = tmp / f"{gpu}.json"
            subprocess.run([sys.executable, "-m", "calibrate.cli", "init", "--gpu", gpu, "--out", str(out)], cwd=ROOT,
                           check=True, capture_output=True)
            have.append(load_profile(out))
    return have


def _x(a: float, b) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _per_usd(p) -> float | None:
    return p.throughput_tok_s * 3600 / p.usd_per_hour if p is not None and p.usd_per_hour > 0 else None


def _row(pool_name, model_name, r, wall):
    hom, gr = r.baselines["homogeneous"], r.baselines["greedy"]
    mine, mine_usd = r.plan.throughput_tok_s, _per_usd(r.plan)
    base = []
    for b in (hom, gr):
        base.append("n/a" if b is None else f"{_x(mine, b.throughput_tok_s)} / {_x(mine_usd or 0, _per_usd(b))}"
                    f" ({b.gpus} GPUs)")
    launchable = all(len({s.tp for s in rep.stages}) == 1 for rep in r.plan.replicas)
    return [pool_name, model_name, r.status, f"{(r.gap or 0) * 100:.3f}%", f"{wall:.1f}", f"{r.solve_s:.2f}",
            f"{r.columns} ({r.heuristic_splits})", mine, f"{r.plan.gpus} / {len(r.plan.replicas)}",
            max(len(rep.waves) for rep in r.plan.replicas),
            "yes" if launchable and r.validator == "ok" else "NO", base[0], base[1]]


HEADERS = ["pool", "model", "status", "gap", "total_s", "milp_s", "layouts (heuristic splits)", "tokens_per_s",
           "GPUs / replicas", "max waves", "launchable", "vs homogeneous per s / per $", "vs greedy per s / per $"]


def big_rows(profs, names, solver, time_limit, workload, per_replica, models=MODELS, title=""):
    rows = []
    for pool_name in names:
        c = cluster(POOLS[pool_name])
        for model_name in models:
            model = load_model(model_name)
            t0 = time.perf_counter()
            try:
                r = plan(model, workload, c, profs, time_limit_s=time_limit, solver=solver,
                         batch_per_replica=per_replica)
            except InfeasibleError as e:
                rows.append([pool_name, model_name, "infeasible", str(e)[:40]] + [""] * (len(HEADERS) - 4))
                continue
            rows.append(_row(pool_name, model_name, r, time.perf_counter() - t0))
    return render(HEADERS, rows, title)


def small_suite(n: int, shared: bool, seed: int = 7):
    """Random tiny pools x workloads (tests/test_plan_bruteforce.py's generator): planner vs
    brute force (solver.plan.exhaustive), per-replica batches or a shared batch."""
    import dataclasses
    from test_plan_bruteforce import TINY, TYPES, _case
    rng, equal, rows = random.Random(seed), 0, []
    for i in range(n):
        c, wl = _case(rng)
        if shared:
            wl = dataclasses.replace(wl, batch=rng.choice([1, 2, 3, 5, 8, 12]))
        try:
            mine = plan(TINY, wl, c, TYPES, solver="highs", batch_per_replica=not shared).plan.throughput_tok_s
        except InfeasibleError:
            mine = 0.0
        ex = Exhaustive(TINY, wl, c, TYPES)
        ref = ex.best_shared() if shared else ex.best()[0]
        ok = abs(mine - ref) <= 1e-9 * max(ref, 1.0)
        equal += ok
        if not ok:
            rows.append([i, c.num_gpus, mine, ref])
    mode = "a shared batch" if shared else "a batch per replica"
    out = f"random suite ({mode}): {equal}/{n} pools of <= 6 GPUs equal to brute force"
    if rows:
        out += "\n" + render(["pool", "gpus", "planner_tok_s", "brute_force_tok_s"], rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 44-GPU pool and 20 small pools only")
    ap.add_argument("--solver", choices=("cbc", "highs"), default="cbc")
    ap.add_argument("--time-limit", type=float, default=60.0, help="MILP time limit, s (default 60)")
    ap.add_argument("--suite", type=int, default=None, help="small pools per random suite (default 100)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    names = list(POOLS)[:1] if args.quick else list(POOLS)
    with tempfile.TemporaryDirectory() as tmp:
        profs = profiles(Path(tmp))
        # fp16, not bf16: the pools include V100s, which have no bf16 tensor cores (design.md section 3)
        per = Workload(batch=32, prompt_len=2048, output_len=512, dtype="fp16")
        print(big_rows(profs, names, args.solver, args.time_limit, per, True,
                       title="batch 32 per replica (--batch-per-replica), prompt 2048, output 512"))
        print()
        kv = Workload(batch=512, prompt_len=4096, output_len=4096, dtype="fp16")
        print(big_rows(profs, names[:2], args.solver, args.time_limit, kv, False, models=("llama3-70b",),
                       title="KV-bound: one batch of 512 shared by the pool, prompt 4096, output 4096"))
    print()
    n = args.suite or (20 if args.quick else 100)
    print(small_suite(n, shared=False))
    print(small_suite(n, shared=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
