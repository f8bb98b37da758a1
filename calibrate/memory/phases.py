"""Fit ``phases_max_v1``: the activation peak as a MAX over phases, each linear in its own terms.

peak(row) = max_k sum_j c_kj * x_kj(row)  (terms: solver.cost.activation.phase_terms)

A max of linear models is fitted like k-plane regression: assign each row to the phase that
predicts the most for it, fit each phase by least squares on relative error over its own rows
(non-negative coefficients: ``_nonneg_lstsq``), reassign, repeat until no row moves. Start:
the first phase (the MLP: the richest terms) on every row, the others at the lower envelope
of their one-term ratios, so a phase takes over only the rows it explains better. Pure numpy.
No safety factor anywhere: what is not measured is not added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calibrate.memory.fit import _nonneg_lstsq

MAX_ROUNDS = 50


@dataclass
class PhasesFit:
    phases: dict                  # phase -> {coef: value}
    owner: list                   # phase that sets each fitted row's peak
    fit_err: list = field(default_factory=list)
    held_err: list = field(default_factory=list)
    rounds: int = 0


def predict(phases: dict, terms: dict) -> tuple[float, str]:
    best = (-1.0, "")
    for name, coef in phases.items():
        v = sum(c * terms[k] for k, c in coef.items())
        if v > best[0]:
            best = (v, name)
    return best


def _fit_one(cols: list[str], terms: list[dict], y: np.ndarray) -> dict:
    data = {c: np.array([t[c] for t in terms], float) / y for c in cols}
    data = {c: v for c, v in data.items() if np.any(v)}
    if not data:
        return {c: 0.0 for c in cols}
    keep = next(iter(data))
    sol = _nonneg_lstsq(data, np.ones_like(y), keep=keep)
    return {c: max(0.0, sol.get(c, 0.0)) for c in cols}


def _envelope(cols: list[str], terms: list[dict], y: np.ndarray) -> dict:
    """A one-term phase at the lowest ratio y/x over the rows: it never over-predicts."""
    c = next(c for c in cols if c != "c0_bytes")
    ratios = [yy / t[c] for t, yy in zip(terms, y) if t[c] > 0]
    return {k: (min(ratios) if k == c and ratios else 0.0) for k in cols}


def fit_phases(spec: dict, terms: list[dict], y: list[float], held_terms: list[dict] = (),
               held_y: list[float] = ()) -> PhasesFit:
    """``spec``: phase -> coefficient names, first phase the richest; ``terms`` per row
    (solver.cost.activation.phase_terms); ``y`` measured peaks (bytes, > 0)."""
    yv = np.asarray(y, float)
    names = list(spec)
    phases = {names[0]: _fit_one(spec[names[0]], terms, yv)}
    for n in names[1:]:
        phases[n] = _envelope(spec[n], terms, yv)
    owner: list = []
    rounds = 0
    for rounds in range(1, MAX_ROUNDS + 1):
        new_owner = [predict(phases, t)[1] for t in terms]
        if new_owner == owner:
            break
        owner = new_owner
        for n in names:
            idx = [i for i, o in enumerate(owner) if o == n]
            if len(idx) >= len([c for c in spec[n] if c != "c0_bytes"]) and idx:
                phases[n] = _fit_one(spec[n], [terms[i] for i in idx], yv[idx])
    out = PhasesFit(phases=phases, owner=owner, rounds=rounds)
    out.fit_err = [predict(phases, t)[0] / v - 1 for t, v in zip(terms, y)]
    out.held_err = [predict(phases, t)[0] / v - 1 for t, v in zip(held_terms, held_y)]
    return out


# Phases a hand-written or HF forward shows. Where every row has f = 3.5 h and a*d = h (the
# shared H100 data), an attention phase (c_h + c_q_t/t) is not distinguishable from the MLP
# phase (c_h + c_f_t/t): it is left out and named in the note.
PROBE_SPEC = {"mlp": ["c_h", "c_f_t"], "norm": ["c_h"]}


def fit_rows(rows: list[dict], holdout: list[dict], spec: dict = PROBE_SPEC) -> tuple[PhasesFit, list, list]:
    """Fit ``spec`` on raw probe rows (calibrate/memory/fit.py RAW_COLUMNS); (fit, fit rows, held rows)."""
    from calibrate.memory import fit as mem_fit
    from solver.cost.activation import phase_terms
    fit, held = mem_fit.split_holdout(rows, holdout, "rows", "rows")

    def terms(r):
        return phase_terms(mem_fit.row_model(r), r["tp"], r["batch"], r["seq"], r["dtype_bytes"])
    y = [mem_fit.activation_target(r) for r in fit]
    if min(y) <= 0:
        raise ValueError("peak minus kv must be > 0 for every fitted row")
    out = fit_phases(spec, [terms(r) for r in fit], y, [terms(r) for r in held],
                     [mem_fit.activation_target(r) for r in held])
    return out, fit, held


def phases_record(sel: list[dict], holdout: list[dict], holdout_spec: str, source, ref, metas, runtime: str,
                  target_note: str, selection: dict) -> dict:
    """The profile's ``memory.activation_peak`` record (``phases_max_v1``) fitted on ``sel``."""
    from calibrate.memory import fit as mem_fit
    try:
        fit, fit_r, held_r = fit_rows(sel, holdout)
    except ValueError as e:
        from solver.errors import InputError
        raise InputError("raw", "peak_bytes", str(e)) from None
    used = fit_r + held_r
    owners = ", ".join(f"{r['tp']}:{o}" for r, o in sorted({(r["tp"], o): (r, o) for r, o in
                                                             zip(fit_r, fit.owner)}.values(), key=lambda x: x[0]["tp"]))
    return {
        "model": "phases_max_v1", "runtime": runtime,
        "phases": {n: {k: round(v, 6) for k, v in c.items()} for n, c in fit.phases.items()},
        "source": source(used), "ref": ref(used, metas, runtime),
        **mem_fit.activation_fit_fields(used, fit.held_err, fit.fit_err, holdout_spec, selection),
        "note": (f"{target_note} Peak = max over phases (calibrate/memory/phases.py: k-plane least squares on "
                 f"relative error, {fit.rounds} rounds). Phase setting the peak by TP ({owners}). An attention "
                 "phase is not fitted: with f = 3.5 h and a*d = h in every row it cannot be told from the MLP "
                 "phase. No safety factor."),
    }
