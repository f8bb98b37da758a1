"""``calibrate report``: the profile's collective fits as a table, and a PNG of fit vs
measurement (busbw against size) when raw points are at hand."""

from __future__ import annotations

import math
from pathlib import Path

from calibrate.nccl.raw import groups, read_raw
from solver.cost.collectives import busbw_gbps, collective_time_us
from calibrate.figures import png_target, save
from solver.errors import InputError
from solver.inputs.profile import load_profile
from solver.units import fmt_bytes


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="table (and PNG) of a profile's collective fits vs measurements",
        description="Print alpha (us), busbw (GB/s = 1e9 B/s per direction), efficiency vs the nominal "
                    "link, fitted range and held-out error of every collective fit; draw busbw vs size "
                    "(fit line and measured points) to a PNG when raw CSVs are found (the profile's "
                    "provenance lists them) or given with --raw. Needs matplotlib for the PNG.")
    p.add_argument("profile", help="profile JSON")
    p.add_argument("--raw", nargs="*", default=None, help="raw CSVs to plot (default: those named in the profile)")
    p.add_argument("--png", help="PNG path of the collectives plot (default: <profile>_collectives.png); the "
                                 "memory plot goes beside it as <name>_memory.png (default: <profile>_memory.png)")
    p.add_argument("--no-png", action="store_true", help="table only")
    p.set_defaults(func=run)


def table_lines(prof) -> list[str]:
    head = (f"{'collective':<15}{'n':>3} {'scope':<11}{'alpha_us':>9}{'busbw_GB/s':>11}{'eff':>6}"
            f"{'range':>22}{'max_err':>8}{'mean_err':>9} {'model':<10} source")
    out = [head, "-" * len(head)]
    for c in prof.collectives:
        eff = f"{c.busbw_gbps / c.nominal_gbps:.2f}" if c.nominal_gbps else "-"
        rng = f"{fmt_bytes(c.range_bytes[0])}-{fmt_bytes(c.range_bytes[1])}" if c.range_bytes else "-"
        mx = f"{c.max_rel_err:.1%}" if c.max_rel_err is not None else "-"
        mean = f"{c.mean_rel_err:.1%}" if c.mean_rel_err is not None else "-"
        model = f"envelope{len(c.lines)}" if c.lines else "line+table" if c.table_size_bytes else "line"
        out.append(f"{c.collective:<15}{c.ranks:>3} {c.scope:<11}{c.alpha_us:>9.2f}{c.busbw_gbps:>11.1f}{eff:>6}"
                   f"{rng:>22}{mx:>8}{mean:>9} {model:<10} {c.source}")
    return out


def _raw_paths(prof, given) -> list[str]:
    if given is not None:
        return list(given)
    sec = prof.provenance.get("sections", {}).get("collectives", {})
    paths = [p for r in sec.get("runs", [sec]) for p in r.get("raw", [])]
    return [p for p in dict.fromkeys(paths) if Path(p).exists()]


def plot(prof, raw_paths: list[str], png: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG (pip install '.[plot]')")
        return False
    measured = {}
    for path in raw_paths:
        for key, pts in groups(read_raw(path)).items():
            measured.setdefault(key, []).extend(pts)
    fits = list(prof.collectives)
    if not fits:
        return False
    fig, axes = plt.subplots(len(fits), 1, figsize=(7, 3 * len(fits)), squeeze=False)
    for ax, c in zip(axes[:, 0], fits):
        lo, hi = c.range_bytes or (1024, 2**30)
        sizes = [lo * 2 ** (i / 4) for i in range(int(4 * math.log2(hi / lo)) + 1)]
        ax.plot(sizes, [busbw_gbps(c.collective, c.ranks, s, collective_time_us(c, s)) for s in sizes],
                label="profile (envelope)" if c.lines else "profile (table+line)" if c.table_size_bytes
                else "profile (line)")
        pts = measured.get((c.collective, c.ranks, c.scope), [])
        if pts:
            ax.plot([p.size_bytes for p in pts], [p.busbw_gbps for p in pts], "o", ms=3, label="measured")
        ax.set_xscale("log", base=2)
        ax.set_ylabel("busbw GB/s")
        ax.set_title(f"{c.collective} n={c.ranks} {c.scope} ({c.source})", fontsize=9)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("size (bytes, nccl-tests S)")
    fig.tight_layout()
    try:
        save(fig, png)
    finally:
        plt.close(fig)
    return True


def run(args) -> int:
    if args.png:
        png_target(args.png)
    prof = load_profile(args.profile)
    has_memory = prof.activation is not None  # memory/compute fits: calibrate/memory/report.py
    if not prof.collectives and not has_memory:
        raise InputError(args.profile, "collectives", "no collective or memory fits in this profile")
    if prof.collectives:
        print("\n".join(table_lines(prof)))
        if not args.no_png:
            png = args.png or str(Path(args.profile).with_suffix("")) + "_collectives.png"
            if plot(prof, _raw_paths(prof, args.raw), png):
                print(f"wrote {png}")
    if has_memory:
        from calibrate.memory.report import memory_report, plot_memory
        mem_raw = [p for p in prof.provenance.get("sections", {}).get("memory", {}).get("raw", []) if Path(p).exists()]
        print("\n" + memory_report(prof.raw, mem_raw))
        png = str(Path(args.png or args.profile).with_suffix("")) + "_memory.png"
        if not args.no_png and mem_raw and plot_memory(prof.raw, mem_raw, png):
            print(f"wrote {png}")
    return 0
