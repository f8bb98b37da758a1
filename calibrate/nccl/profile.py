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
from calibrate.nccl.raw import RawPoint, groups
from solver.errors import InputError


def _one(values, where: str, name: str) -> str:
    vals = sorted({v for v in values if v})
    if len(vals) > 1 and name == "source":
        raise InputError(where, name, f"points of one fit mix sources {vals}; fit them separately")
    return "; ".join(vals)


def fit_points(points: list[RawPoint], where: str = "", *, table_if: float = 0.10,
               window: tuple[int, int] = ERROR_WINDOW) -> list[tuple[Fit, list[RawPoint]]]:
    """One :class:`Fit` per (collective, ranks, scope) group of ``points``."""
    out = []
    for (coll, n, scope), pts in groups(points).items():
        if any(p.backend == "gloo" and p.source == "measured" for p in pts):
            raise InputError(where, "source", f"{coll} n={n}: gloo points cannot be 'measured' "
                                              "(gloo is for tests; mark them synthetic)")
        _one((p.source for p in pts), where, "source")
        try:
            fit = fit_group(coll, n, scope, [p.size_bytes for p in pts], [p.time_us for p in pts],
                            table_if=table_if, window=window)
        except InputError as e:
            raise InputError(where, e.field, e.reason) from None
        out.append((fit, pts))
    return out


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
                      command: str = "") -> dict:
    """Merge ``entries`` into the profile at ``out`` (created from the datasheet skeleton for
    ``gpu`` if missing); validated, then written atomically. Returns the written dict."""
    base = read_profile_dict(out)
    if base is None:
        if not gpu:
            raise InputError(str(out), "", "profile does not exist; pass --gpu to start it from the datasheet")
        base = skeleton(gpu, command=command)
    elif gpu and not published_match(base, gpu):
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


def published_match(profile: dict, gpu: str) -> bool:
    from solver.inputs.profile import normalize_gpu_name
    names = {normalize_gpu_name(n) for n in [profile["gpu"]["name"], *profile["gpu"].get("aliases", [])]}
    found = published.find(gpu)
    return normalize_gpu_name(gpu) in names or (found is not None and normalize_gpu_name(found[0]) in names)
