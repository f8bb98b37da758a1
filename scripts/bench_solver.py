"""Benchmark of ``solver plan`` on generated pools (a table, not a timed test).

Rows: 44 GPUs / 4 types / 11 nodes, 128 GPUs / 5 types, 512 GPUs / 6 types, each with
llama3-70b and llama3.1-405b at batch 32, prompt 2048, output 512; then a random suite of
small pools (<= 12 GPUs) checked against exhaustive search. Profiles: the shipped
profiles/*.json plus `calibrate init` (published + defaults) ones written to a temp folder
for types the repo has none of. ``--quick``: the 44-GPU pool and 10 small pools.

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
            subprocess.run([str(ROOT / ".venv/bin/calibrate"), "init", "--gpu", gpu, "--out", str(out)],
                           check=True, capture_output=True)
            have.append(load_profile(out))
    return have


def big_rows(profs, names, solver, time_limit):
    rows = []
    # fp16, not bf16: the pools include V100s, which have no bf16 tensor cores (design.md section 3)
    wl = Workload(batch=32, prompt_len=2048, output_len=512, dtype="fp16")
    for pool_name in names:
        c = cluster(POOLS[pool_name])
        for model_name in MODELS:
            model = load_model(model_name)
            t0 = time.perf_counter()
            try:
                r = plan(model, wl, c, profs, time_limit_s=time_limit, solver=solver)
            except InfeasibleError as e:
                rows.append([pool_name, model_name, "infeasible", str(e)[:40], "", "", "", "", ""])
                continue
            wall = time.perf_counter() - t0
            hom, gr = r.baselines["homogeneous"], r.baselines["greedy"]
            ratio = lambda b: f"{r.plan.throughput_tok_s / b.throughput_tok_s:.2f}x" if b else "n/a"  # noqa: E731
            rows.append([pool_name, model_name, r.status, f"{r.gap * 100:.3f}%", f"{wall:.1f}", f"{r.solve_s:.2f}",
                         r.columns, r.heuristic_splits, r.plan.throughput_tok_s, f"{ratio(hom)} / {ratio(gr)}"])
    return render(["pool", "model", "status", "gap", "total_s", "milp_s", "shapes", "heuristic_splits", "tokens_per_s",
                   "vs homogeneous / greedy"], rows, "generated pools (batch 32, prompt 2048, output 512)")


def small_suite(n: int, seed: int = 7):
    """Random pools of <= 12 GPUs of synthetic GPU variants, a 4-layer model: MILP vs brute force."""
    from plan_helpers import TINY, WORKLOAD, pool, syn_profile
    types = [syn_profile("BIG", 80, 1000), syn_profile("MID", 3.0, 800, 600),
             syn_profile("SMALL", 2.2, 500, 400), syn_profile("TINYG", 1.8, 300, 300)]
    rng, equal, rows = random.Random(seed), 0, []
    for i in range(n):
        groups, total = [], 0
        for j in range(rng.randint(1, 3)):
            p, k = rng.choice(types), rng.choice([1, 2, 4])
            c = min(rng.randint(1, 3), (12 - total) // k)
            if c < 1:
                break
            total += c * k
            groups.append((f"g{j}", c, p.gpu_name, k, rng.choice([0.01, 1.0, 25.0]), rng.choice([0.5, 1.0, 2.0])))
        c = pool(*groups)
        try:
            mine = plan(TINY, WORKLOAD, c, types).plan.throughput_tok_s
        except InfeasibleError:
            mine = 0.0
        ref = Exhaustive(TINY, WORKLOAD, c, types).best()[0]
        ok = abs(mine - ref) <= 1e-9 * max(ref, 1.0)
        equal += ok
        if not ok:
            rows.append([i, total, mine, ref])
    out = f"random suite: {equal}/{n} pools of <= 12 GPUs equal to exhaustive search"
    if rows:
        out += "\n" + render(["pool", "gpus", "milp_tok_s", "exhaustive_tok_s"], rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 44-GPU pool and 10 small pools only")
    ap.add_argument("--solver", choices=("cbc", "highs"), default="cbc")
    ap.add_argument("--time-limit", type=float, default=60.0, help="MILP time limit, s (default 60)")
    ap.add_argument("--suite", type=int, default=None, help="small pools in the random suite (default 50)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        profs = profiles(Path(tmp))
        names = list(POOLS)[:1] if args.quick else list(POOLS)
        print(big_rows(profs, names, args.solver, args.time_limit))
    print()
    print(small_suite(args.suite or (10 if args.quick else 50)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
