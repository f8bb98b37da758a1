"""The report of ``scripts/gpu_check.sh``: this GPU's fresh measurements against the shipped
profile of its type.

    python -m calibrate.gpu_check OUTDIR [--profile profiles/h100.json]

Reads what the script left in OUTDIR (``env.json``, ``steps.tsv``, ``raw/*.csv`` and the
profiles the profilers fitted, ``mem_<runtime>.json``) and writes ``OUTDIR/report.md``:

- the steps and their exit codes;
- per memory raw file: the shipped profile's predictions of the measured rows (prefill time
  from ``compute.prefill_efficiency`` + elementwise passes, decode step time from
  ``compute.decode_efficiency``, the activation peak minus KV where the shipped profile has a
  fitted model of that runtime), error = predicted / measured - 1;
- the constants fitted here next to the shipped ones;
- the world-size-1 collective times (the NCCL code path; one rank: local copies);
- the raw files and the ``calibrate`` commands that refit them.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from calibrate.memory import fit as mem_fit
from calibrate.memory import phases
from calibrate.memory.report import _prefill_pred
from calibrate.profile_io import atomic_write_text
from solver.cost.activation import phase_terms
from solver.errors import InputError
from solver.inputs.fields import load_json
from solver.inputs.profile import load_profiles, profile_for


def shipped_profile(gpu_name: str, folder: str | Path) -> Path | None:
    """The shipped profile file of ``gpu_name`` (by name or alias), or None."""
    try:
        return Path(profile_for(gpu_name, load_profiles([str(folder)])).path)
    except InputError:
        return None


def _stats(errs: list[float]) -> str:
    errs = [e for e in errs if e is not None and math.isfinite(e)]
    if not errs:
        return "-"
    mean = sum(abs(e) for e in errs) / len(errs)
    worst = max(errs, key=abs)
    return f"mean |err| {mean:.1%}, worst {worst:+.1%} (n={len(errs)})"


def _decode_pred_s(prof: dict, r: dict) -> float | None:
    c = prof.get("compute", {}).get("decode_efficiency")
    hbm = prof["gpu"]["hbm_gbps"]["value"] * 1e9
    if not c or not r.get("weights_bytes") or c.get("kind") not in ("constant", "saturating"):
        return None
    x = mem_fit.decode_read_bytes(r)
    eff = c["value"] if c["kind"] == "constant" else c["eff_max"] * x / (x + c["x_half"])
    return r["layers"] * x / (hbm * eff)


def _activation_pred(act: dict, r: dict) -> float:
    """The shipped activation model's peak for a measured row: a max over phases
    (``phases_max_v1``) or the v1 sum of terms (``coef``)."""
    if act.get("model") == "phases_max_v1":
        terms = phase_terms(mem_fit.row_model(r), r["tp"], r["batch"], r["seq"], r["dtype_bytes"])
        return phases.predict(act["phases"], terms)[0]
    return mem_fit.predict_activation(act["coef"], r)


def compare_rows(prof: dict, rows: list[dict]) -> list[str]:
    """Lines: the shipped profile's predictions of measured rows, by quantity."""
    pre = [r for r in rows if r["phase"] == "prefill" and r.get("time_ms")]
    dec = [r for r in rows if r["phase"] == "decode" and r.get("time_ms")]
    curve = prof.get("compute", {}).get("prefill_efficiency", {})
    if curve.get("kind") in ("constant", "saturating"):
        out = [f"- prefill time: {_stats([_prefill_pred(prof, r) / (r['time_ms'] * 1e-3) - 1 for r in pre])}"]
    else:
        out = [f"- prefill time: not compared (prefill_efficiency kind {curve.get('kind')!r})"]
    d = [(_decode_pred_s(prof, r), r) for r in dec]
    out.append(f"- decode step time: {_stats([p / (r['time_ms'] * 1e-3) - 1 for p, r in d if p])}")
    act = prof.get("memory", {}).get("activation_peak")
    runtime = rows[0]["runtime"] if rows else ""
    if act and act.get("runtime", "").split("-")[0] == runtime.split("-")[0]:
        errs = [_activation_pred(act, r) / mem_fit.activation_target(r) - 1
                for r in pre if mem_fit.activation_target(r) > 0]
        out.append(f"- activation peak minus KV ({act['runtime']} model): {_stats(errs)}")
    else:
        out.append(f"- activation peak minus KV: the shipped profile has no fitted model for {runtime}")
    return out


def _value(sec: dict, key: str) -> str:
    v = sec.get(key)
    if not v:
        return "-"
    if "value" in v:
        return f"{v['value']:.4g} [{v.get('source', '?')}]"
    return f"{v.get('eff_max', 0):.3g} * x/(x + {v.get('x_half', 0):.4g}) [{v.get('source', '?')}]"


def constants_table(new: dict, old: dict) -> list[str]:
    rows = [("memory", "runtime_overhead_gib"), ("memory", "fragmentation_frac"),
            ("compute", "prefill_efficiency"), ("compute", "prefill_elementwise_passes"),
            ("compute", "decode_efficiency")]
    out = ["| constant | fitted here | shipped |", "|---|---|---|"]
    for sec, key in rows:
        out.append(f"| {sec}.{key} | {_value(new.get(sec, {}), key)} | {_value(old.get(sec, {}), key)} |")
    return out


def nccl_lines(path: Path) -> list[str]:
    import csv
    rows = list(csv.DictReader(path.open()))
    by: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        by.setdefault(r["collective"], []).append((int(r["size_bytes"]), float(r["time_us"])))
    out = ["| collective | sizes | min time us | time at largest size us | S/t there GB/s |", "|---|---|---|---|---|"]
    for coll, pts in sorted(by.items()):
        s, t = max(pts)
        out.append(f"| {coll} | {len(pts)} | {min(x for _, x in pts):.1f} | {t:.1f} | {s / (t * 1e3):.1f} |")
    return out


def ops_lines(raw: Path, fitted: Path) -> list[str]:
    """Rows per op of the sweep and where they were fitted."""
    import csv
    counts: dict[str, int] = {}
    src = set()
    for r in csv.DictReader(raw.open()):
        counts[r.get("op", "?")] = counts.get(r.get("op", "?"), 0) + 1
        src.add(r.get("source", "?"))
    out = ["| op | rows |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    out += ["", f"source: {', '.join(sorted(src))}; "
            + (f"fitted by `calibrate fit-ops` into {fitted.name} (ops.native): compare it with the shipped "
               "tables with `solver estimate --breakdown --profile` on each" if fitted.exists()
               else f"refit: `calibrate fit-ops {raw} --out PROFILE --runtime native`")]
    return out


def report(outdir: str | Path, profile: str | None = None, profiles_dir: str | Path = "profiles") -> str:
    d = Path(outdir)
    env = load_json(d / "env.json") if (d / "env.json").exists() else {}
    gpu = env.get("gpu", "")
    ship = Path(profile) if profile else shipped_profile(gpu, profiles_dir) if gpu else None
    old = load_json(ship) if ship else {}
    lines = [f"# GPU check: {gpu or 'unknown device'}", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += [f"- compared with: {ship or 'no shipped profile of this GPU type'}", ""]
    if (d / "steps.tsv").exists():
        lines += ["## Steps", "", "| step | exit | seconds |", "|---|---|---|"]
        for ln in (d / "steps.tsv").read_text().splitlines():
            name, rc, secs = (ln.split("\t") + ["", ""])[:3]
            lines.append(f"| {name} | {rc} | {secs} |")
        lines.append("")
    raws = sorted((d / "raw").glob("*.csv")) if (d / "raw").exists() else []
    for raw in raws:
        if raw.name.startswith("ops_"):
            lines += [f"## Op sweep: {raw.name}", ""] + ops_lines(raw, d / "ops_profile.json") + [""]
            continue
        if raw.name.startswith("nccl_"):
            lines += [f"## NCCL at world size 1: {raw.name}", "",
                      "One rank: each collective is a local copy through NCCL; this checks the CUDA code path "
                      "(groups, buffers, CUDA-synchronised timing), not a link. Fit needs >= 2 ranks.", ""]
            lines += nccl_lines(raw) + [""]
            continue
        try:
            rows = mem_fit.read_raw(raw)
        except InputError:
            lines += [f"## {raw.name}", "", "(not a memory raw file; left for its own tool)", ""]
            continue
        runtime = rows[0]["runtime"] if rows else "?"
        lines += [f"## Memory / time: {raw.name} ({runtime}, {len(rows)} rows)", ""]
        lines += ["Shipped profile's predictions of these measurements (predicted / measured - 1):", ""]
        lines += (compare_rows(old, rows) if old else ["- no shipped profile to compare with"]) + [""]
        fitted = d / f"mem_{runtime.split('-')[0]}.json"
        if fitted.exists():
            new = load_json(fitted)
            act = new.get("memory", {}).get("activation_peak", {})
            fe = act.get("fit_error") or {}
            lines += [f"Fitted here ({fitted.name}): activation held-out max {fe.get('max_rel', '-')}, "
                      f"mean {fe.get('mean_rel', '-')} (n={fe.get('held_out', '-')})", ""]
            lines += constants_table(new, old) + [""]
        lines += [f"Refit: `calibrate fit-memory {raw} --out PROFILE`", ""]
    big = [r for r in raws if not r.name.startswith("nccl_")]
    if not raws:
        lines.append("No raw files: every measuring step failed (see Steps).")
    lines += ["## Raw files", ""] + [f"- {r}" for r in raws] + [
        "", f"{len(big)} memory/op raw file(s) to fit with `calibrate`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibrate.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("outdir")
    p.add_argument("--profile", help="the shipped profile to compare with (default: by the GPU's name)")
    p.add_argument("--profiles-dir", default=str(Path(__file__).resolve().parents[1] / "profiles"))
    args = p.parse_args(argv)
    try:
        text = report(args.outdir, args.profile, args.profiles_dir)
        atomic_write_text(Path(args.outdir) / "report.md", text)
    except InputError as e:
        print(f"gpu_check: error: {e.line()}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
