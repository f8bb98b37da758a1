"""``calibrate predict``: what does this collective cost here, from a profile."""

from __future__ import annotations

import json

from calibrate.nccl.profile import group_ranks
from solver.cost.collectives import (algbw_gbps, busbw_gbps, collective_time_us, find_fit,
                                     in_fitted_range, table_covers)
from solver.errors import InputError
from solver.inputs.profile import COLLECTIVES, SCOPES, load_profile
from solver.units import fmt_bytes, parse_size


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="predicted time (us) and busbw (GB/s) of a collective from a profile",
        description="Evaluate the profile's fit for (collective, ranks, scope) at each size: time in "
                    "microseconds with its interval (from the fit's held-out errors nearby), algbw = S/t and busbw = algbw x factor(n) in GB/s (1e9 B/s), nccl-tests "
                    "conventions (S is the size nccl-tests prints). Warns when a size is outside the "
                    "measured range; a rank count the profile never measured is an error (one n is "
                    "never derived from another).")
    p.add_argument("profile", help="profile JSON")
    p.add_argument("--collective", required=True, choices=COLLECTIVES)
    p.add_argument("--ranks", required=True, type=group_ranks, help="ranks in the group (e.g. TP size), >= 2")
    p.add_argument("--scope", default="intra_node", choices=SCOPES, help="default: intra_node")
    p.add_argument("--bytes", required=True, help="comma-separated sizes in bytes; 4096, 64K, 1M, 1G accepted")
    p.add_argument("--json", action="store_true", help="print JSON (time_us per size) instead of a table")
    p.set_defaults(func=run)


# Held-out errors within this factor of a size set its interval (the sizes a 2x sweep with
# every other size left out has on either side of it).
INTERVAL_SPAN = 4.0


def interval_us(fit, size: float, t_us: float) -> tuple[float, float] | None:
    """Where the measured time at ``size`` is expected to lie: ``t_us`` corrected by the
    worst held-out errors (predicted/measured - 1) of the fit within a factor INTERVAL_SPAN
    of ``size`` (all of them if none is that close): [t / (1 + e_max), t / (1 + e_min)]
    with e_max >= 0 >= e_min. None without recorded held-out errors or outside the range.

    >>> from types import SimpleNamespace as F
    >>> interval_us(F(held_out_rel_err=((1e6, 0.25), (4e6, -0.2)), range_bytes=(1e3, 1e9)), 2e6, 100.0)
    (80.0, 125.0)
    """
    errs = getattr(fit, "held_out_rel_err", ())
    if not errs or not fit.range_bytes or not fit.range_bytes[0] <= size <= fit.range_bytes[1]:
        return None
    near = [e for s, e in errs if size / INTERVAL_SPAN <= s <= size * INTERVAL_SPAN] or [e for _, e in errs]
    return t_us / (1 + max(max(near), 0.0)), t_us / (1 + min(min(near), 0.0))


def predict(profile_path: str, collective: str, ranks: int, scope: str, sizes: list[int]) -> dict:
    prof = load_profile(profile_path)
    fit = find_fit(prof.collectives, collective, ranks, scope)
    if fit is None:
        have = sorted({(c.ranks, c.scope) for c in prof.collectives if c.collective == collective})
        listed = ", ".join(f"{n} {s}" for n, s in have) or "none"
        raise InputError(profile_path, "collectives", f"no {collective} fit for ranks={ranks} {scope} "
                                                      f"(measured: {listed}); profile it with scripts/profile_nccl.py")
    rows, warnings = [], []
    for s in sizes:
        t = collective_time_us(fit, s)
        inside = in_fitted_range(fit, s)
        if not inside:
            lo, hi = fit.range_bytes
            warnings.append(f"{fmt_bytes(s)} is outside the measured range {fmt_bytes(lo)} - {fmt_bytes(hi)}: "
                            "extrapolated with the alpha-beta line")
        iv = interval_us(fit, s, t)
        rows.append({"size_bytes": s, "time_us": t, "interval_us": list(iv) if iv else None, "algbw_gbps": algbw_gbps(s, t) if s else 0.0,
                     "busbw_gbps": busbw_gbps(collective, ranks, s, t) if s else 0.0,
                     "model": "table" if table_covers(fit, s) else "line", "in_range": inside})
    return {"profile": profile_path, "collective": collective, "ranks": ranks, "scope": scope,
            "source": fit.source, "ref": fit.ref, "alpha_us": fit.alpha_us, "busbw_gbps": fit.busbw_gbps,
            "range_bytes": list(fit.range_bytes) if fit.range_bytes else None,
            "max_rel_err": fit.max_rel_err, "points": rows, "warnings": warnings}


def run(args) -> int:
    sizes = []
    for tok in args.bytes.split(","):
        try:
            sizes.append(parse_size(tok))
        except ValueError as e:
            raise InputError("--bytes", tok.strip(), str(e)) from None
    out = predict(args.profile, args.collective, args.ranks, args.scope, sizes)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    err = f", held-out max error {out['max_rel_err']:.0%}" if out["max_rel_err"] is not None else ""
    print(f"{args.collective} n={args.ranks} {args.scope} ({out['source']}{err}): "
          f"alpha {out['alpha_us']:.3g} us, busbw {out['busbw_gbps']:.4g} GB/s")
    print(f"{'size':>10} {'time_us':>10} {'interval_us':>19} {'algbw_GB/s':>11} {'busbw_GB/s':>11}  model")
    for r in out["points"]:
        flag = "" if r["in_range"] else "  (outside measured range)"
        iv = f"{r['interval_us'][0]:.4g}-{r['interval_us'][1]:.4g}" if r["interval_us"] else "-"
        print(f"{fmt_bytes(r['size_bytes']):>10} {r['time_us']:>10.2f} {iv:>19} {r['algbw_gbps']:>11.2f} "
              f"{r['busbw_gbps']:>11.2f}  {r['model']}{flag}")
    print("interval: where the measured time should lie, from the fit's held-out errors at sizes within "
          f"{INTERVAL_SPAN:g}x (every other size left out of the fit)")
    for w in out["warnings"]:
        print(f"warning: {w}")
    return 0
