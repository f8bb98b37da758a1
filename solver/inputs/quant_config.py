"""A checkpoint's quantization: ``quantization_config`` in ``config.json`` (or
``compression_config``), or ModelOpt's ``hf_quant_config.json`` beside it -> WeightFormat.

Read as vLLM reads them (``vllm/model_executor/layers/quantization/``: ``fp8.py``,
``awq.py``, ``gptq.py``, ``compressed_tensors/``, ``modelopt.py``, ``mxfp4.py``). Modules the
checkpoint leaves unquantized (``modules_to_not_convert``, ``ignore``, ``ignored_layers``,
``exclude_modules``) are mapped to tensor groups; a pattern naming some layers only
excludes that share of the group's parameters. Patterns outside the language model (vision
towers) are ignored: the planner models the language model only.
"""

from __future__ import annotations

import re
from dataclasses import replace

from solver.errors import InputError
from solver.inputs.quant import LINEAR_GROUPS, SCHEMES, WeightFormat, weight_format

SUPPORTED_METHODS = ("fp8", "awq", "awq_marlin", "gptq", "gptq_marlin", "marlin", "compressed-tensors",
                     "modelopt", "modelopt_fp4", "mxfp4")
_MLP_GROUPS = {"mlp", "experts", "shared_experts"}


def parse_quant(outer: dict, cfg: dict, where: str, spec, hf_quant: tuple | None) -> WeightFormat | None:
    qc = outer.get("quantization_config") or cfg.get("quantization_config") or outer.get("compression_config")
    field = "quantization_config"
    if hf_quant is not None:  # ModelOpt's own file wins: it is what vLLM's modelopt loader reads
        data, where = hf_quant
        qc = data.get("quantization", data) if isinstance(data, dict) else data
        qc = dict(qc, quant_method="modelopt") if isinstance(qc, dict) else qc
        field = "quantization"
    if qc is None:
        return None
    if not isinstance(qc, dict):
        raise InputError(where, field, f"must be a JSON object, got {type(qc).__name__}")
    method = str(qc.get("quant_method", "modelopt" if "quant_algo" in qc else "")).lower()
    if method not in SUPPORTED_METHODS:
        raise InputError(where, f"{field}.quant_method", f"{method or 'missing'!r} is not modelled "
                                                         f"(supported: {', '.join(SUPPORTED_METHODS)})")
    fmt = _format(qc, method, where, field)
    excluded = [str(m) for k in ("modules_to_not_convert", "ignore", "ignored_layers", "exclude_modules")
                for m in (qc.get(k) or [])]
    return _apply_exclusions(fmt, excluded, spec)


def _num(qc: dict, where: str, field: str, *keys: str, default: int) -> int:
    for k in keys:
        if qc.get(k) is not None:
            v = qc[k]
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputError(where, f"{field}.{k}", f"must be an integer, got {v!r}")
            return v
    return default


def _format(qc: dict, method: str, where: str, field: str) -> WeightFormat:
    if method == "fp8":
        block = qc.get("weight_block_size")
        if block:
            if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
                raise InputError(where, f"{field}.weight_block_size", f"must be two positive integers, got {block!r}")
            return _fmt("fp8-block", group_size=block[0] * block[1])
        return _fmt("fp8")
    if method in ("awq", "awq_marlin", "gptq", "gptq_marlin", "marlin"):
        name = "awq" if method.startswith("awq") else "gptq"
        bits = _num(qc, where, field, "bits", "w_bit", default=4)
        group = _num(qc, where, field, "group_size", "q_group_size", default=128)
        if bits not in (4, 8):
            raise InputError(where, f"{field}.bits", f"{bits}-bit {name} is not modelled (4 or 8)")
        zeros = SCHEMES[name].zero_bytes * bits / 4 if qc.get("zero_point", True) else 0.0
        return _fmt(name, bits=bits, group_size=max(group, 0), zero_bytes=zeros if group > 0 else 0.0,
                    scale_bytes=SCHEMES[name].scale_bytes if group > 0 else 0.0)
    if method == "mxfp4":
        return _fmt("mxfp4")
    if method == "modelopt":
        algo = str(qc.get("quant_algo", "")).upper()
        if algo == "FP8":
            return _fmt("fp8")
        if algo == "NVFP4":
            return _fmt("nvfp4", group_size=_num(qc, where, field, "group_size", default=16))
        raise InputError(where, f"{field}.quant_algo", f"{algo or 'missing'!r} is not modelled (FP8, NVFP4)")
    if method == "modelopt_fp4":
        return _fmt("nvfp4")
    return _compressed_tensors(qc, where, field)


def _compressed_tensors(qc: dict, where: str, field: str) -> WeightFormat:
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise InputError(where, f"{field}.config_groups", "compressed-tensors config needs config_groups")
    schemes = []
    for gname, g in groups.items():
        w = (g or {}).get("weights") or {}
        act = (g or {}).get("input_activations") or {}
        bits, kind = w.get("num_bits"), w.get("type")
        group = w.get("group_size") or 0
        if kind == "float" and bits == 8:
            s = _fmt("fp8-block" if w.get("strategy") == "block" else "fp8")
        elif kind == "int" and bits == 8:
            s = _fmt("int8")
        elif kind == "int" and bits == 4:
            s = _fmt("w4a16", group_size=group, zero_bytes=0.0 if w.get("symmetric", True) else 0.5)
        elif kind == "float" and bits == 4:
            s = _fmt("nvfp4" if group == 16 else "mxfp4", group_size=group or 16)
            s = replace(s, quantized=LINEAR_GROUPS)
        else:
            raise InputError(where, f"{field}.config_groups.{gname}.weights",
                             f"{kind} {bits}-bit weights are not modelled")
        if act.get("type") == "int" and bits == 4:
            raise InputError(where, f"{field}.config_groups.{gname}.input_activations", "W4A8 is not modelled")
        schemes.append(s)
    if len({s.scheme for s in schemes}) > 1:
        raise InputError(where, f"{field}.config_groups", "mixed schemes across groups are not modelled")
    return schemes[0]


def _fmt(name: str, **changes) -> WeightFormat:
    fmt = weight_format(name)
    return replace(fmt, scheme=replace(fmt.scheme, **changes)) if changes else fmt


_LAYER = re.compile(r"layers\.(\d+)")


def _groups_of(pattern: str) -> set[str]:
    """Tensor groups a module name or pattern covers (empty: nothing the planner models
    stays unquantized by it, e.g. norms, the router or a vision tower)."""
    p = pattern.lower().removeprefix("re:")
    if "vision" in p or "visual" in p or "mm_projector" in p or "multi_modal" in p:
        return set()
    if "lm_head" in p or p == "head":
        return {"lm_head"}
    if "embed_tokens" in p or p.endswith("wte"):
        return {"embedding"}
    if "attn" in p or "attention" in p:
        return {"attn"}
    if "shared_expert" in p:
        return {"shared_experts"}
    if ".experts" in p:
        return {"experts"}
    if re.search(r"(mlp|block_sparse_moe)\.gate$", p) or "router" in p or "e_score" in p or "norm" in p:
        return set()
    if "mlp" in p or "ffn" in p:
        return set(_MLP_GROUPS)
    if re.search(r"layers\.\d+\.?\*?$", p):  # a whole layer
        return {"attn"} | _MLP_GROUPS
    return set()


def _apply_exclusions(fmt: WeightFormat, patterns: list[str], spec) -> WeightFormat:
    everywhere, per_layer = set(), {}  # group -> layer indices excluded
    for pat in patterns:
        groups = _groups_of(pat) & set(fmt.quantized)
        m = _LAYER.search(pat)
        for g in groups:
            if m and g not in ("lm_head", "embedding"):
                per_layer.setdefault(g, set()).add(int(m.group(1)))
            else:
                everywhere.add(g)
    fracs = []
    kinds = spec.layers
    for g, idx in per_layer.items():
        if g in everywhere:
            continue
        size = [sum(t.params for t in spec.layer_tensors(k) if t.group == g) for k in kinds]
        total = sum(size)
        if total:
            fracs.append((g, sum(size[i] for i in idx if i < len(size)) / total))
    return replace(fmt, quantized=fmt.quantized - everywhere, excluded_frac=tuple(sorted(fracs)))
