"""Turn raw collective points into profile ``collectives`` entries and merge them into a
profile file (atomically, through calibrate/profile_io.py; other sections untouched).

Provenance rules (design.md section 6): an entry's ``source`` is the source of its raw
points (``measured`` only for real hardware runs; imported public logs are ``published``);
points from the gloo backend are never written as ``measured``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from calibrate import published
from calibrate.nccl.fit import ERROR_WINDOW, Fit, fit_group, round_sig
from calibrate.defaults import skeleton
from calibrate.profile_io import merge_sections, read_profile_dict, write_profile
from calibrate.profile_rules import check_proxy, check_synthetic, published_match  # noqa: F401 (re-exported)
from calibrate.nccl.raw import RawPoint, groups
from solver.errors import InputError


def group_ranks(text: str) -> int:
    """argparse ``type=``: ranks of a collective, a whole number >= 2 (one rank is a copy)."""
    import argparse
    try:
        n = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 2, got {text!r}") from None
    if n < 2:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 2 (a collective needs two ranks), got {text!r}")
    return n


def _one(values, where: str, name: str) -> str:
    vals = sorted({v for v in values if v})
    if len(vals) > 1 and name == "source":
        raise InputError(where, name, f"points of one fit mix sources {vals}; fit them separately")
    return "; ".join(vals)


def fit_points(points: list[RawPoint], where: str = "", *, table_if: float = 0.10,
               window: tuple[int, int] = ERROR_WINDOW) -> list[tuple[Fit, list[RawPoint]]]:
    """One :class:`Fit` per (collective, ranks, scope) group of ``points``. Points already
    flagged are left out; points the outlier rule flags get their ``flag`` set (the caller
    writes them back to raw) and are left out too."""
    out = []
    for (coll, n, scope), every in groups(points).items():
        pts = [p for p in every if not p.flag]
        if any(p.backend == "gloo" and p.source == "measured" for p in pts):
            raise InputError(where, "source", f"{coll} n={n}: gloo points cannot be 'measured' "
                                              "(gloo is for tests; mark them synthetic)")
        _one((p.source for p in pts), where, "source")
        try:
            fit = fit_group(coll, n, scope, [p.size_bytes for p in pts], [p.time_us for p in pts],
                            table_if=table_if, window=window)
        except InputError as e:
            raise InputError(where, e.field, e.reason) from None
        for p in pts:
            if p.size_bytes in fit.flagged:
                p.flag = f"outlier: {fit.flagged[p.size_bytes]}"
        out.append((fit, [p for p in pts if not p.flag]))
    return out


def flagged_lines(points: list[RawPoint], where: str) -> list[str]:
    """One line per flagged point, for the user to see what the fit left out."""
    return [f"{where}: flagged {p.collective} n={p.ranks} {p.scope} at {p.size_bytes} B "
            f"({p.time_us:.4g} us), not fitted: {p.flag}" for p in points if p.flag]


def nominal_gbps(scope: str, profile: dict | None, gpu: str, override: float | None) -> tuple[float | None, str]:
    """Nominal per-direction link rate the efficiency is taken against, and where it is from.
    Inside a node: the profile's ``gpu.intra_node_gbps`` (else the datasheet table for the
    GPU). Across nodes the NIC is not known from a log: only ``override``."""
    if override:
        return override, "--nominal-gbps"
    if scope != "intra_node":
        return None, ""
    if profile and "gpu" in profile:
        v = profile["gpu"]["intra_node_gbps"]
        return float(v["value"]), v.get("ref", "")
    found = published.find(gpu) if gpu else None
    if found:
        val, ref = found[1]["intra_node_gbps"]
        return float(val), ref
    return None, ""


def entry(fit: Fit, pts: list[RawPoint], *, ref: str, nominal: float | None, note: str = "") -> dict:
    """The profile ``collectives`` record of one fit (keys as solver/inputs/profile.py)."""
    e = {
        "collective": fit.collective, "ranks": fit.ranks, "scope": fit.scope,
        "alpha_us": round_sig(fit.alpha_us), "busbw_gbps": round_sig(fit.busbw_gbps),
        "source": pts[0].source, "ref": ref,
        "range_bytes": list(fit.range_bytes),
        "max_rel_err": round_sig(fit.max_rel_err, 3), "mean_rel_err": round_sig(fit.mean_rel_err, 3),
        "fit_points": fit.n_points,
        "held_out_rel_err": [[s, round_sig(p / m - 1, 3)] for s, m, p in fit.held_out],
        "runtime": _one((p.runtime for p in pts), "", "runtime"),
    }
    if nominal:
        e["nominal_gbps"] = nominal
        e["efficiency"] = round_sig(fit.busbw_gbps / nominal, 3)
    if fit.table_size_bytes:
        e["table"] = {"size_bytes": fit.table_size_bytes, "time_us": [round_sig(t, 5) for t in fit.table_time_us],
                      "interp": "linear"}
    if fit.lines:
        e["lines"] = [{"alpha_us": round_sig(a, 5), "busbw_gbps": round_sig(b, 5)} for a, b in fit.lines]
    lo, hi = fit.window
    kept = {"line+table": "the measured points kept as a table (interpolated linearly in S)",
            "line": "one alpha-beta line"}.get(fit.method, f"the lower envelope of {len(fit.lines)} alpha-beta lines")
    miss = (f"one line misses by up to {fit.line_max_rel_err:.0%}; " if fit.method != "line"
            and fit.line_max_rel_err is not None else "")
    why = (f"errors: held out every other size, sizes {lo}-{hi} B; {miss}model chosen by leave-one-out "
           f"on the fitted sizes: {kept}")
    if fit.flagged:
        e["flagged_bytes"] = sorted(fit.flagged)
    stat = _one((p.stat for p in pts), "", "stat")
    e["note"] = "; ".join(x for x in (note, why, f"time statistic: {stat}") if x)
    return e


def provenance(points: list[RawPoint], command: str, raw_paths: list[str], summary: str) -> dict:
    return {
        "created": _dt.date.today().isoformat(), "command": command,
        "hosts": _one((p.hosts for p in points), "", "hosts"),
        "gpu": _one((p.gpu for p in points), "", "gpu"),
        "driver": _one((p.driver for p in points), "", "driver"),
        "cuda": _one((p.cuda for p in points), "", "cuda"),
        "torch": _one((p.torch for p in points), "", "torch"),
        "nccl": _one((p.nccl for p in points), "", "nccl"),
        "raw": raw_paths, "summary": summary,
    }


def write_collectives(out: str | Path, entries: list[dict], prov: dict, *, gpu: str | None = None,
                      command: str = "", synthetic: bool = False) -> dict:
    """Merge ``entries`` into the profile at ``out`` (created from the datasheet skeleton for
    ``gpu`` if missing); validated, then written atomically. Returns the written dict.
    ``synthetic`` entries (gloo/CPU) only go into a profile marked synthetic (or a new one,
    created so)."""
    base = read_profile_dict(out)
    if base is None:
        if not gpu:
            raise InputError(str(out), "", "profile does not exist; pass --gpu to start it from the datasheet")
        base = skeleton(gpu, command=command, synthetic=synthetic)
    else:
        check_synthetic(base, synthetic, str(out), "test (gloo/CPU) numbers")
        if gpu and not published_match(base, gpu):
            raise InputError(str(out), "gpu.name", f"profile is for {base['gpu']['name']!r}, not --gpu {gpu!r}")
    prov = _accumulate(base, prov)
    data = merge_sections(base, {"collectives": entries, "provenance": prov}, ("collectives",))
    write_profile(out, data)
    return data


def _accumulate(base: dict, prov: dict) -> dict:
    """Section provenance listing every run or import that produced an entry still in the
    file: earlier records are kept unless they named the same raw files."""
    old = base.get("provenance", {}).get("sections", {}).get("collectives", {})
    runs = [r for r in old.get("runs", [old] if old.get("command") else [])
            if not set(r.get("raw", [])) & set(prov.get("raw", []))]
    return {"runs": runs + [prov], "summary": "collective fits; one record per run or import"}
