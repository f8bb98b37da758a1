"""Fit the engine's per-step overhead on measured batch latencies, on top of the op tables.

The op tables time the kernels; what real runs add per step is the engine's CPU side
(scheduling, sampling, output processing) and, with TP, driving the worker processes.
Model, per step (ms), with b the step's sequences and t the TP degree:

    overhead = c0 + per_seq x b + per_rank x (t - 1) + per_seq_rank x b x (t - 1)

Each measured row gives one equation: (latency - kernels) / steps = overhead(b, t), with
kernels = prefill kernels + (output_len - 1) x decode-step kernels and steps = output_len
(a prefill is one engine step too). Non-negative least squares (scipy ``nnls``) on relative
error over the fit rows; held-out rows are only scored.
"""

from __future__ import annotations

import numpy as np

from solver.cost.ops.latency import predict_latency
from solver.inputs.latency_csv import LatencyRow

TERMS = ("decode", "per_seq", "per_rank", "per_seq_rank")


def features(row: LatencyRow) -> np.ndarray:
    b, r = row.batch, row.tp - 1
    return np.array([1.0, b, r, b * r])


def per_step_overhead_ms(row: LatencyRow, model, profile) -> float:
    """What the row's latency leaves per step once the kernels are paid (ms)."""
    p = predict_latency(row, model, profile)
    kernels = p.kernels_prefill_s + max(0, row.output_len - 1) * p.kernels_decode_step_s
    return (row.latency_s - kernels) / row.output_len * 1e3


def fit_overhead(rows: list[LatencyRow], models: dict, profile) -> dict:
    """Coefficients (ms) of the overhead model, fitted on ``rows`` (non-negative)."""
    from scipy.optimize import nnls

    y = np.array([per_step_overhead_ms(r, models[r.model], profile) for r in rows])
    x = np.array([features(r) for r in rows])
    scale = np.array([max(1e-3, r.latency_s * 1e3 / r.output_len) for r in rows])  # relative error
    coef, _ = nnls(x / scale[:, None], y / scale)
    return dict(zip(TERMS, (float(c) for c in coef)))


def overhead_json(coef: dict, ref: str, fit_error: dict) -> dict:
    src = {"source": "published", "ref": ref}
    out = {k: {"value": round(v, 5), **src} for k, v in coef.items()}
    out["prefill"] = {"value": round(coef["decode"], 5), **src}
    out["decode"]["fit_error"] = fit_error
    out["note"] = ("engine time per step beyond the kernels: decode + per_seq x b + per_rank x (t-1) + "
                   "per_seq_rank x b x (t-1) ms (b sequences in the step, t TP ranks); a prefill pays the base")
    return out
