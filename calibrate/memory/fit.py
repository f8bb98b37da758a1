"""Fit the activation-peak model and the prefill efficiency curve from raw rows.

Raw rows are what ``scripts/profile_memory.py`` writes and ``calibrate.importers.h100_shared``
converts the shared H100 data into (columns: ``RAW_COLUMNS``, one row per grid point,
bytes and ms). Pure numpy: no torch, no I/O beyond the CSV.

Activation model ``tokens_linear_v1`` (docs/profile.md), fitted on
``y = peak_bytes - kv_bytes``: the peak above weights and inputs during one prefill forward,
minus the K/V the forward leaves behind::

    y = c0_bytes + T*p*(c_h*h + c_h_t*h/t + c_f_t*f/t + c_q_t*a*d/t) + c_attn_t*b*s^2*(a/t)*p

Prefill time model (design.md section 5, plus one unsharded term)::

    time_s = flops / (peak_flops * eff(x)) + passes * T*h*p*layers / hbm_bytes_per_s
    eff(x) = eff_max * x / (x + x_half),  x = GFLOP of one layer on one GPU

``passes`` counts full HBM passes over the unsharded T x h activation per layer (RMSNorm,
residual adds, rotary): work that does not shrink with TP, which is why H100 efficiency at
t=8 drops at a fixed GFLOP (shared/data/h100). ``passes=0`` is the plain curve.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from solver.cost.compute import prefill_layer_flops
from solver.cost.activation import activation_terms
from solver.errors import InputError
from solver.inputs.fields import read_text
from solver.inputs.model import ModelSpec

# Raw CSV contract: written by memory/probe.py and importers/h100_shared.py, read here. Units in the names.
RAW_COLUMNS = (
    "runtime", "device", "dtype", "dtype_bytes", "phase", "batch", "seq", "hidden", "heads",
    "kv_heads", "head_dim", "ffn", "gated_mlp", "tp", "layers", "weights_bytes", "kv_bytes",
    "peak_bytes", "retained_bytes", "reserved_slack_bytes", "nontorch_bytes", "time_ms",
    "time_method", "flops", "snapshot_top", "source", "ref",
)
_INT_COLS = ("dtype_bytes", "batch", "seq", "hidden", "heads", "kv_heads", "head_dim", "ffn",
             "gated_mlp", "tp", "layers")
_FLOAT_COLS = ("weights_bytes", "kv_bytes", "peak_bytes", "retained_bytes", "reserved_slack_bytes",
               "nontorch_bytes", "time_ms", "flops")
# Fitting order: a coefficient enters only if its column is not a combination of those
# before it (e.g. with a*d == h, c_q_t is indistinguishable from c_h_t and stays 0).
ACT_ORDER = ("c0_bytes", "c_h", "c_f_t", "c_h_t", "c_q_t", "c_attn_t")


def read_raw(path: str | Path) -> list[dict]:
    """Rows of a raw CSV with numbers converted; empty cells become None."""
    p = Path(path)
    text = read_text(p).splitlines()
    reader = csv.DictReader(text)
    missing = [c for c in ("runtime", "phase", "batch", "seq", "hidden", "tp", "peak_bytes")
               if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(str(p), missing[0], "missing column (see calibrate/memory/fit.py RAW_COLUMNS)")
    rows = []
    try:
        for i, r in enumerate(reader, start=2):
            rows.append(_parse_row(r, str(p), i))
    except csv.Error as e:
        raise InputError(str(p), "", f"not a readable CSV ({e})") from None
    if not rows:
        raise InputError(str(p), "", "raw CSV has no rows")
    return rows


_REQUIRED = (*_INT_COLS, "peak_bytes", "kv_bytes")  # shape and memory: every row has them


def _parse_row(r: dict, where: str, i: int) -> dict:
    """One raw row with numbers converted (empty optional cells -> None); one-line errors."""
    row = dict(r)
    for c in ("runtime", "phase"):
        if not (r.get(c) or "").strip():
            raise InputError(where, f"line {i}: {c}", "required value is empty")
    if row["phase"] not in ("prefill", "decode"):
        raise InputError(where, f"line {i}: phase", f"must be prefill or decode, got {row['phase']!r}")
    for c in _INT_COLS + _FLOAT_COLS:
        v = (r.get(c) or "").strip()
        if v == "" and c in _REQUIRED:
            raise InputError(where, f"line {i}: {c}", "required value is empty")
        try:
            row[c] = None if v == "" else (int(float(v)) if c in _INT_COLS else float(v))
        except (ValueError, OverflowError):  # int(float("1e309")) overflows
            raise InputError(where, f"line {i}: {c}", f"not a finite number: {v!r}") from None
        if row[c] is None:
            continue
        if not math.isfinite(row[c]) or row[c] < 0:
            raise InputError(where, f"line {i}: {c}", f"must be a finite number >= 0, got {v!r}")
        if c in _INT_COLS and c != "gated_mlp" and row[c] < 1:
            raise InputError(where, f"line {i}: {c}", f"must be >= 1, got {v!r}")
    if row["gated_mlp"] not in (0, 1):
        raise InputError(where, f"line {i}: gated_mlp", f"must be 0 or 1, got {row['gated_mlp']!r}")
    return row


def raw_text(rows: list[dict]) -> str:
    """CSV text of rows in ``RAW_COLUMNS`` order (unknown keys are an error)."""
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RAW_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in RAW_COLUMNS})
    return buf.getvalue()


def write_raw(path: str | Path, rows: list[dict]) -> None:
    """Write rows atomically in ``RAW_COLUMNS`` order (unknown keys are an error)."""
    from calibrate.profile_io import atomic_write_text
    atomic_write_text(path, raw_text(rows))


# ---------------------------------------------------------------- selection

def parse_holdout(spec: str) -> list[dict]:
    """``"tp=2;batch=8,seq=2048"`` -> [{tp: 2}, {batch: 8, seq: 2048}]: a row is held out
    when it matches every key of any clause."""
    clauses = []
    for part in filter(None, (s.strip() for s in (spec or "").split(";"))):
        clause = {}
        for kv in part.split(","):
            if "=" not in kv:
                raise InputError("--holdout", kv, "expected KEY=VALUE[,KEY=VALUE][;...]")
            k, v = (s.strip() for s in kv.split("=", 1))
            if k not in RAW_COLUMNS:
                raise InputError("--holdout", k, "not a raw column")
            clause[k] = v
        clauses.append(clause)
    return clauses


def is_held_out(row: dict, clauses: list[dict]) -> bool:
    return any(all(str(row.get(k)) == v or _num_eq(row.get(k), v) for k, v in c.items()) for c in clauses)


def split_holdout(rows: list[dict], holdout: list[dict], field: str, what: str) -> tuple[list, list]:
    """(fit rows, held-out rows); at least two rows must remain to fit, else an InputError
    naming ``field`` and saying which ``what`` rows were missing."""
    fit = [r for r in rows if not is_held_out(r, holdout)]
    held = [r for r in rows if is_held_out(r, holdout)]
    if len(fit) < 2:
        raise InputError("raw", field, f"need >= 2 {what} outside the hold-out, got {len(fit)}")
    return fit, held


def _num_eq(a, b: str) -> bool:
    try:
        return a is not None and float(a) == float(b)
    except ValueError:
        return False


# ---------------------------------------------------------------- activation

def row_model(r: dict) -> ModelSpec:
    """The layer a raw row measured, as the solver's ModelSpec (vocab/layers do not enter the
    per-layer formulas), so the fit and the solver's prediction share one formula."""
    return ModelSpec(name="raw row", num_layers=max(1, r.get("layers") or 1), hidden_size=r["hidden"],
                     num_heads=r["heads"], num_kv_heads=r["kv_heads"], head_dim=r["head_dim"],
                     ffn_size=r["ffn"], vocab_size=1, gated_mlp=bool(r.get("gated_mlp", 1)))


def activation_features(r: dict) -> dict:
    """Per-coefficient regressors of one row: solver.cost.memory.activation_terms."""
    return activation_terms(row_model(r), r["tp"], r["batch"], r["seq"], r["dtype_bytes"])


def activation_target(r: dict) -> float:
    return float(r["peak_bytes"]) - float(r["kv_bytes"] or 0.0)


def predict_activation(coef: dict, r: dict) -> float:
    x = activation_features(r)
    return sum(coef.get(k, 0.0) * x[k] for k in ACT_ORDER)


@dataclass
class ActivationFit:
    coef: dict
    dropped: dict  # coefficient -> reason it is 0
    fit_rows: list
    held_rows: list
    fit_err: list = field(default_factory=list)   # relative errors, same order as rows
    held_err: list = field(default_factory=list)


def _weighted_lstsq(cols: list[str], feats: list[dict], y: np.ndarray) -> np.ndarray:
    """Minimise sum(((X c - y) / y)^2): relative error, what we report."""
    x = np.array([[f[c] for c in cols] for f in feats], dtype=float) / y[:, None]
    scale = np.linalg.norm(x, axis=0)
    sol, *_ = np.linalg.lstsq(x / scale, np.ones_like(y), rcond=None)
    return sol / scale


def fit_activation(rows: list[dict], holdout: list[dict], attn_term: bool = False) -> ActivationFit:
    """Least squares on relative error; coefficients that the data cannot tell apart
    (collinear columns) or that come out negative (unphysical) are fixed at 0 and listed."""
    fit, held = split_holdout(rows, holdout, "rows", "rows")
    order = [c for c in ACT_ORDER if attn_term or c != "c_attn_t"]
    dropped = {} if attn_term else {"c_attn_t": "not fitted: SDPA/flash kernels never hold the s x s scores"}
    feats = [activation_features(r) for r in fit]
    y = np.array([activation_target(r) for r in fit])
    if (y <= 0).any():
        raise InputError("raw", "peak_bytes", "peak minus kv must be > 0 for every fitted row")
    cols: list[str] = []
    for c in order:  # keep a column only if it adds rank (scale-free test on unit columns)
        trial = cols + [c]
        x = np.array([[f[k] for k in trial] for f in feats]) / y[:, None]
        x = x / np.linalg.norm(x, axis=0)
        if np.linalg.matrix_rank(x, tol=1e-6) == len(trial) and len(trial) <= len(fit):
            cols = trial
        else:
            dropped[c] = f"not identifiable from these rows (collinear with {', '.join(cols) or 'nothing'})"
    while True:
        sol = _weighted_lstsq(cols, feats, y)
        if (sol >= 0).all() or len(cols) == 1:
            break
        worst = cols[int(np.argmin(sol))]
        dropped[worst] = "fitted negative (unphysical); fixed at 0 and refitted"
        cols.remove(worst)
    coef = {c: 0.0 for c in ACT_ORDER}
    coef.update({c: float(v) for c, v in zip(cols, sol)})
    out = ActivationFit(coef=coef, dropped=dropped, fit_rows=fit, held_rows=held)
    out.fit_err = [predict_activation(coef, r) / activation_target(r) - 1 for r in fit]
    out.held_err = [predict_activation(coef, r) / activation_target(r) - 1 for r in held]
    return out


def error_summary(errs: list[float]) -> dict:
    if not errs:
        return {"max_rel": None, "mean_rel": None, "n": 0}
    a = np.abs(np.array(errs))
    return {"max_rel": round(float(a.max()), 4), "mean_rel": round(float(a.mean()), 4), "n": len(errs)}


def value_range(rows: list[dict], **getters) -> dict:
    """{name: [min, max]} over ``rows`` for each getter (a column name or a function)."""
    out = {}
    for name, g in getters.items():
        vals = [g(r) if callable(g) else r[g] for r in rows]
        out[name] = [min(vals), max(vals)]
    return out


def activation_fit_fields(used: list[dict], held_err: list[float], fit_err: list[float], holdout_spec: str,
                          selection: dict) -> dict:
    """The ``range`` and ``fit_error`` of a ``memory.activation_peak`` record (any model) fitted
    on ``used`` rows, its error over the held-out rows and over the fitted ones."""
    held, infit = error_summary(held_err), error_summary(fit_err)
    return {
        "range": value_range(used, tokens=lambda r: r["batch"] * r["seq"], tp="tp", hidden="hidden",
                             ffn="ffn", layers="layers", batch="batch", seq="seq"),
        "fit_error": {"max_rel": held["max_rel"], "mean_rel": held["mean_rel"], "held_out": held["n"],
                      "fit_points": infit["n"], "in_fit_max_rel": infit["max_rel"],
                      "metric": "|predicted/measured - 1| of peak minus KV on rows held out of the fit",
                      "holdout": holdout_spec, "selection": selection},
    }


# ---------------------------------------------------------------- prefill compute

def layer_gflop(r: dict) -> float:
    return float(r["flops"]) / r["layers"] / 1e9


def prefill_flops(r: dict) -> float:
    """FLOPs of the row's prefill over its layers: solver.cost.compute.prefill_layer_flops
    (2*T*matmul params per GPU + causal attention; norms and rotary are elementwise)."""
    return float(r["layers"] * prefill_layer_flops(row_model(r), r["tp"], r["batch"], r["seq"]))


@dataclass
class PrefillFit:
    eff_max: float
    x_half_gflop: float
    passes: float
    fit_rows: list
    held_rows: list
    fit_err: list = field(default_factory=list)
    held_err: list = field(default_factory=list)


def predict_prefill_s(r: dict, eff_max: float, x_half: float, passes: float,
                      peak_flops: float, hbm_bytes_per_s: float) -> float:
    x = layer_gflop(r)
    eff = eff_max * x / (x + x_half)
    unsharded = r["batch"] * r["seq"] * r["hidden"] * r["dtype_bytes"] * r["layers"]
    return float(r["flops"]) / (peak_flops * eff) + passes * unsharded / hbm_bytes_per_s


def _nonneg_lstsq(cols: dict, target: np.ndarray, keep: str) -> dict:
    """Least squares of ``target`` (ones, after dividing each row by its measurement: relative
    error) on named columns; a negative coefficient other than ``keep`` is fixed at 0."""
    names = list(cols)
    while True:
        a = np.array([cols[n] for n in names]).T
        scale = np.linalg.norm(a, axis=0)
        sol = np.linalg.lstsq(a / scale, target, rcond=None)[0] / scale
        neg = [(v, n) for v, n in zip(sol, names) if v < 0 and n != keep]
        if not neg:
            return {**{n: 0.0 for n in cols}, **dict(zip(names, map(float, sol)))}
        names.remove(min(neg)[1])


def fit_prefill(rows: list[dict], holdout: list[dict], peak_flops: float, hbm_bytes_per_s: float,
                elementwise: bool = True) -> PrefillFit:
    """With u = 1/eff_max and w = x_half/eff_max the time model is linear:
    time = u*F/P + w*layers*1e9/P + passes*U/B  (F/x = layers*1e9 GFLOP->FLOP), so one least
    squares on relative time error gives eff_max = 1/u, x_half = w/u; w, passes >= 0."""
    usable = [r for r in rows if r.get("time_ms") and r.get("flops")]
    fit, held = split_holdout(usable, holdout, "time_ms", "timed prefill rows")
    t_s = np.array([r["time_ms"] * 1e-3 for r in fit])
    cols = {"u": np.array([r["flops"] for r in fit]) / peak_flops / t_s,
            "w": np.array([r["layers"] * 1e9 for r in fit]) / peak_flops / t_s}
    if elementwise:
        cols["passes"] = np.array([r["batch"] * r["seq"] * r["hidden"] * r["dtype_bytes"] * r["layers"]
                                   for r in fit], float) / hbm_bytes_per_s / t_s
    sol = _nonneg_lstsq(cols, np.ones_like(t_s), keep="u")
    if sol["u"] <= 0:  # times not explained by FLOPs at all (noise, host overhead): constant eff
        sol = {**{k: 0.0 for k in cols}, **_nonneg_lstsq({"u": cols["u"]}, np.ones_like(t_s), keep="u")}
    if sol["u"] < 1.0:
        raise InputError("raw", "time_ms", f"fitted efficiency {1 / sol['u']:.3f} > 1: check peak_tflops and flops")
    eff_max, x_half, passes = 1.0 / sol["u"], sol["w"] / sol["u"], sol.get("passes", 0.0)
    out = PrefillFit(eff_max=eff_max, x_half_gflop=x_half, passes=passes, fit_rows=fit, held_rows=held)
    pred = lambda r: predict_prefill_s(r, eff_max, x_half, passes, peak_flops, hbm_bytes_per_s)  # noqa: E731
    out.fit_err = [pred(r) / (r["time_ms"] * 1e-3) - 1 for r in fit]
    out.held_err = [pred(r) / (r["time_ms"] * 1e-3) - 1 for r in held]
    return out


def decode_read_bytes(r: dict) -> float:
    """Bytes one decode step of one layer reads on one GPU: its weights + its K/V cache."""
    return (float(r["weights_bytes"]) + float(r["kv_bytes"] or 0.0)) / r["layers"]


def fit_decode(rows: list[dict], holdout: list[dict], hbm_bytes_per_s: float) -> tuple[float, float, list, list]:
    """eff(x) = eff_max*x/(x+x_half) of HBM bandwidth, x = decode_read_bytes: time =
    layers*(x + x_half)/(B*eff_max), linear in (1/eff_max, x_half/eff_max). Returns
    (eff_max, x_half_bytes, fit errors, held-out errors)."""
    usable = [r for r in rows if r.get("time_ms") and r.get("weights_bytes")]
    fit, held = split_holdout(usable, holdout, "time_ms", "timed decode rows")
    t_s = np.array([r["time_ms"] * 1e-3 for r in fit])
    cols = {"u": np.array([r["layers"] * decode_read_bytes(r) for r in fit]) / hbm_bytes_per_s / t_s,
            "w": np.array([r["layers"] for r in fit], float) / hbm_bytes_per_s / t_s}
    sol = _nonneg_lstsq(cols, np.ones_like(t_s), keep="u")
    if sol["u"] <= 0:
        sol = {"w": 0.0, **_nonneg_lstsq({"u": cols["u"]}, np.ones_like(t_s), keep="u")}
    if sol["u"] < 1.0:
        raise InputError("raw", "time_ms", f"fitted HBM efficiency {1 / sol['u']:.3f} > 1: check hbm_gbps")
    eff_max, x_half = 1.0 / sol["u"], sol["w"] / sol["u"]

    def err(r):
        x = decode_read_bytes(r)
        return r["layers"] * (x + x_half) / (hbm_bytes_per_s * eff_max) / (r["time_ms"] * 1e-3) - 1
    return eff_max, x_half, [err(r) for r in fit], [err(r) for r in held]


def median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.median(vals)) if vals else None
