"""Activation peak of one forward on one GPU of a stage (docs/profile.md). Pure functions; bytes.

Two models, both fitted from measured peaks by ``calibrate fit-memory``:

* ``tokens_linear_v1``: peak = sum of coefficients x terms (one linear model).
* ``phases_max_v1``: peak = MAX over the phases of a forward -- attention, MLP, fp32 norm
  temporaries, logits/sampler -- each phase linear in its own terms. A forward frees each
  phase's temporaries before the next, so the peak is the largest phase, not their sum. On
  H100 (shared/data/h100, transformers 5.17) the MLP phase (4 + 3 f/(h t) units of T*h*p)
  sets the peak at TP1-2 and the unsharded fp32 RMSNorm temporaries (~6-7 units) from TP4 on:
  flat from TP4 to TP8 at fixed T = b*s.

Terms (T = b*s tokens, p activation bytes, R sampler rows, V padded vocab):
c0_bytes 1; c_h T*h*p; c_h_t T*h/t*p; c_f_t T*f/t*p; c_q_t T*a*d/t*p; c_attn_t b*s^2*(a/t)*p;
c_v R*V*4 (fp32 logits: vLLM gathers the full vocabulary before sampling).
"""

from __future__ import annotations

from solver.cost.memory import LOGITS_BYTES, padded_vocab
from solver.cost.warn import note
from solver.inputs.memory_models import PhasesModel
from solver.inputs.model import ModelSpec
from solver.inputs.profile import Profile


# The analytic fallback when a profile has no fitted activation model: count the tensors a
# straightforward eager implementation keeps live at the MLP, the usual peak. Unsharded:
# residual stream, its normed copy, the attention output and the residual sum (4 x h).
# Sharded: gate, up and their product (3 x f/t; 2 for a plain MLP); q and the attention
# output before o_proj (2 x a*d/t). Measured H100 peaks (shared/data/h100) are near this
# count, far above the textbook 1.15 x (7bsh/t) formula.
def _default_coefs(model: ModelSpec) -> dict:
    return {"c0_bytes": 0.0, "c_h": 4.0, "c_h_t": 0.0, "c_f_t": 3.0 if model.gated_mlp else 2.0,
            "c_q_t": 2.0, "c_attn_t": 0.0}


def phase_terms(model: ModelSpec, tp: int, batch: int, seq: int, act_bytes: float,
                sampler_rows: int = 0) -> dict:
    """The regressor of each coefficient name (module docstring); ``calibrate.memory.fit`` and
    ``calibrate fit-memory`` fit the coefficients on these same terms."""
    h, a, d = model.hidden_size, model.num_heads, model.head_dim
    f = model.ffn_size * model.experts_per_token
    tp_bytes = batch * seq * act_bytes
    return {"c0_bytes": 1.0, "c_h": tp_bytes * h, "c_h_t": tp_bytes * h / tp, "c_f_t": tp_bytes * f / tp,
            "c_q_t": tp_bytes * a * d / tp, "c_attn_t": batch * seq * seq * (a / tp) * act_bytes,
            "c_v": sampler_rows * padded_vocab(model) * LOGITS_BYTES}


def activation_terms(model: ModelSpec, tp: int, batch: int, seq: int, act_bytes: float) -> dict:
    """``tokens_linear_v1`` regressors (no sampler term)."""
    terms = phase_terms(model, tp, batch, seq, act_bytes)
    del terms["c_v"]
    return terms


def phases_peak(phases: dict, terms: dict) -> tuple[float, str]:
    """(peak bytes, name of the phase that sets it): max over phases of sum(coef x term)."""
    best = (0.0, "")
    for name, coef in phases.items():
        v = sum(c * terms[k] for k, c in coef.items() if c)
        if v > best[0]:
            best = (v, name)
    return best


def activation_peak_bytes(profile: Profile, model: ModelSpec, tp: int, batch: int, seq: int,
                          act_bytes: float, last: bool = False) -> float:
    """Transient peak above weights and KV during one prefill forward of ``batch`` x ``seq``
    tokens, on one rank, times (1 + fragmentation), plus fp32 logits of the last token of
    each sequence on the last stage when the model has no fitted sampler phase (vLLM
    computes logits only where it samples)."""
    act = profile.activation
    has_sampler = False
    if act is None:
        coef = _default_coefs(model)
        note(f"{profile.path}: no fitted activation model; using the analytic default "
             "(calibrate with scripts/profile_memory.py)")
        peak = sum(coef[k] * v for k, v in activation_terms(model, tp, batch, seq, act_bytes).items())
    else:
        _check_range(profile, act.range or {}, tokens=batch * seq, tp=tp, hidden=model.hidden_size)
        if isinstance(act, PhasesModel):
            has_sampler = last and "sampler" in act.phases
            terms = phase_terms(model, tp, batch, seq, act_bytes, sampler_rows=batch if has_sampler else 0)
            peak = phases_peak(act.phases, terms)[0]
        else:
            peak = sum(act.coef[k] * v for k, v in activation_terms(model, tp, batch, seq, act_bytes).items())
    peak *= 1.0 + profile.fragmentation_frac.value
    if last and not has_sampler:
        peak += batch * padded_vocab(model) / tp * LOGITS_BYTES
    return peak


def _check_range(profile: Profile, rng: dict, **values: float) -> None:
    for key, v in values.items():
        lo_hi = rng.get(key)
        if lo_hi and not (lo_hi[0] <= v <= lo_hi[1]):
            note(f"{profile.path}: activation model fitted for {key} in [{lo_hi[0]:g}, {lo_hi[1]:g}], "
                 f"asked for {v:g} (extrapolated)")
