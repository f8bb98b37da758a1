"""Loaders for the profile's memory models beyond ``tokens_linear_v1`` (docs/profile.md):

* ``phases_max_v1`` -- the activation peak as a MAX over phases of one forward (attention,
  MLP, fp32 norm temporaries, logits/sampler), each phase linear in its own terms;
* ``memory.<runtime>`` -- what a serving engine reserves besides the weights (vLLM:
  non-torch memory by TP/PP, its profile run's activation peak, CUDA-graph capture,
  fragmentation), read by ``solver/cost/engine_memory.py``.

Values are the profile's value records (``solver.inputs.profile.Value``); each record whose
``source`` is ``default`` should carry ``plausible: [low, high]`` (intervals, docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from solver.inputs.fields import Fields

# Regressor names of one phase (solver/cost/activation.py ``phase_terms``):
# c0_bytes 1; c_h T*h*p; c_h_t T*h/t*p; c_f_t T*f/t*p; c_q_t T*a*d/t*p; c_attn_t b*s^2*a/t*p;
# c_v R*V*4 (R sampler rows, V padded vocab, fp32 logits).
PHASE_COEFS = ("c0_bytes", "c_h", "c_h_t", "c_f_t", "c_q_t", "c_attn_t", "c_v")
PHASES = ("attention", "mlp", "norm", "sampler")
RUNTIMES = ("vllm",)
NON_TORCH_KEYS = ("base", "tp_extra", "pp_extra")


@dataclass(frozen=True)
class PhasesModel:
    """peak = max over phases of sum(coef x term)."""
    phases: dict  # phase name -> {coef name: float}
    source: str
    runtime: str = ""
    ref: str = ""
    range: dict | None = None
    fit_error: dict | None = None
    model: str = "phases_max_v1"


@dataclass(frozen=True)
class EngineMemory:
    """``memory.<runtime>``: the engine's own reservations on one GPU (GiB values)."""
    runtime: str
    version: str
    non_torch_gib: dict  # "base" / "tp_extra" / "pp_extra" -> Value
    activation: PhasesModel
    cudagraph_gib: object  # Value
    fragmentation_frac: object  # Value
    cudagraph_in_budget: bool = False  # parsed, not read: the vLLM version decides (engine_settings.cudagraphs_in_budget)
    fit_error: dict | None = None  # calibrate's reservation error (GiB); intervals.reservation_error_gib reads it
    raw: dict = field(default_factory=dict, repr=False)


def parse_phases(data, where: str, path: str, sources: tuple[str, ...]) -> PhasesModel:
    f = Fields(data, where, path, ("model", "phases", "source", "runtime", "ref", "range", "fit_error", "note"))
    f.get("model", str, choices=("phases_max_v1",))
    raw = f.get("phases", dict)
    if not raw:
        raise f.error("phases", f"needs at least one of {', '.join(PHASES)}")
    phases = {}
    for name, coefs in raw.items():
        if name not in PHASES:
            raise f.error(f"phases.{name}", f"unknown phase; valid: {', '.join(PHASES)}")
        cf = Fields(coefs, where, f"{path}.phases.{name}", PHASE_COEFS)
        phases[name] = {k: cf.get(k, float, 0.0, min_value=0.0) for k in PHASE_COEFS}
    return PhasesModel(phases=phases, source=f.get("source", str, choices=sources),
                       runtime=f.get("runtime", str, ""), ref=f.get("ref", str, ""),
                       range=f.get("range", dict, None), fit_error=f.get("fit_error", dict, None))


def parse_engine_memory(data, where: str, runtime: str, value_parser, sources: tuple[str, ...]) -> EngineMemory:
    """``value_parser(data, where, path, bounds)`` is the profile's value-record reader."""
    path = f"memory.{runtime}"
    f = Fields(data, where, path, ("version", "non_torch_gib", "activation_peak", "cudagraph_gib",
                                   "fragmentation_frac", "cudagraph_in_budget", "fit_error", "note"))
    nt = Fields(f.get("non_torch_gib", dict), where, f"{path}.non_torch_gib", (*NON_TORCH_KEYS, "note"))
    nonneg = (lambda v: v >= 0, ">= 0")
    non_torch = {k: value_parser(nt.data[k], where, f"{path}.non_torch_gib.{k}", nonneg)
                 for k in NON_TORCH_KEYS if k in nt.data}
    if "base" not in non_torch:
        raise nt.error("base", "required: non-torch GiB of a single-GPU engine")
    return EngineMemory(
        runtime=runtime, version=str(f.get("version", str)),
        non_torch_gib=non_torch,
        activation=parse_phases(f.get("activation_peak", dict), where, f"{path}.activation_peak", sources),
        cudagraph_gib=value_parser(f.get("cudagraph_gib", dict), where, f"{path}.cudagraph_gib", nonneg),
        fragmentation_frac=value_parser(f.get("fragmentation_frac", dict), where, f"{path}.fragmentation_frac",
                                        (lambda v: 0 <= v <= 1, "in [0, 1]")),
        cudagraph_in_budget=f.get("cudagraph_in_budget", bool, False),
        fit_error=f.get("fit_error", dict, None),
        raw=data,
    )
