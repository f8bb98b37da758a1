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

import fnmatch
import re
from dataclasses import replace

from solver.errors import InputError
from solver.inputs.quant import LINEAR_GROUPS, SCHEMES, WeightFormat, weight_format

SUPPORTED_METHODS = ("fp8", "awq", "awq_marlin", "gptq", "gptq_marlin", "marlin", "compressed-tensors",
                     "modelopt", "modelopt_fp4", "mxfp4")


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


# How checkpoints name a layer's modules: the layer prefix (plain, multimodal wrappers) and
# the block names other architectures use for ours (Mixtral block_sparse_moe, Llama-4
# feed_forward, Qwen-MoE's singular shared_expert).
_LAYER_PREFIXES = ("model.layers.{i}.", "model.language_model.layers.{i}.", "language_model.model.layers.{i}.",
                   "layers.{i}.")
_ALIASES = (("mlp.", ("feed_forward.", "ffn.", "block_sparse_moe.")), ("self_attn.", ("attn.", "attention.")),
            ("shared_experts", ("shared_expert",)))
_TOP_NAMES = {"embedding": ("model.embed_tokens", "model.language_model.embed_tokens",
                            "language_model.model.embed_tokens", "embed_tokens", "transformer.wte"),
              "lm_head": ("lm_head", "language_model.lm_head", "head")}


def _pattern_regex(patterns: list[str]) -> re.Pattern | None:
    """One regex for a checkpoint's exclusion list, matched against full module names:
    ``re:`` entries are regexes (compressed-tensors ``ignore``), entries with * ? [ are
    globs (ModelOpt ``exclude_modules``), plain entries name a module, a module prefix
    (``model.layers.3.self_attn``) or a trailing name (``lm_head``, ``gate``), as vLLM's
    ``is_layer_skipped`` and transformers' ``modules_to_not_convert`` read them."""
    parts = []
    for p in patterns:
        if p.startswith("re:"):
            parts.append(f"(?:{p[3:]}).*")  # re.match: a prefix match
        elif any(c in p for c in "*?["):
            parts.append(fnmatch.translate(p).removesuffix(r"\Z").removeprefix("(?s:").removesuffix(")"))
        else:
            q = re.escape(p)
            parts.append(f"(?:{q}(?:\\..*)?|.*\\.{q})")
    return re.compile("|".join(f"(?:{x})$" for x in parts)) if parts else None


def _names(module: str, layer: int) -> list[str]:
    variants = {module}
    for old, news in _ALIASES:
        variants |= {v.replace(old, new, 1) for v in list(variants) if old in v for new in news}
    return [pre.format(i=layer) + v for pre in _LAYER_PREFIXES for v in variants]


def _apply_exclusions(fmt: WeightFormat, patterns: list[str], spec) -> WeightFormat:
    """Groups every one of whose modules the checkpoint leaves unquantized drop out of
    ``quantized``; groups left unquantized in some layers only get that share of their
    parameters (``WeightFormat.excluded_frac``)."""
    rx = _pattern_regex(patterns)
    if rx is None:
        return fmt
    whole = {g for g, names in _TOP_NAMES.items() if g in fmt.quantized and any(rx.match(n) for n in names)}
    total, excluded = {}, {}
    for i, kind in enumerate(spec.layers):
        for t in spec.layer_tensors(kind):
            if t.group not in fmt.quantized or not t.module:
                continue
            total[t.group] = total.get(t.group, 0) + t.params
            if any(rx.match(n) for n in _names(t.module, i)):
                excluded[t.group] = excluded.get(t.group, 0) + t.params
    whole |= {g for g, n in excluded.items() if n == total[g]}
    fracs = tuple(sorted((g, n / total[g]) for g, n in excluded.items() if g not in whole and n))
    return replace(fmt, quantized=fmt.quantized - whole, excluded_frac=fracs)
