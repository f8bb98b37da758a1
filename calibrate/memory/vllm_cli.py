"""``calibrate fit-memory --vllm``: fit memory.vllm from start-up points into a profile."""

from __future__ import annotations

from calibrate.memory import vllm_fit
from calibrate.memory.profile import DEFAULT_HOLDOUT
from calibrate.profile_io import read_profile_dict, write_profile
from solver.cost import engine_settings as es
from solver.errors import InputError
from solver.inputs.profile import parse_profile

# Shared data: fit rows vs held-out rows (README of shared/data/vllm_memory): per family, the
# second run of a pair (other max_model_len / gpu_memory_utilization), the cross-node run and
# the one RTX 4090 run are held out.
VLLM_DEFAULT_HOLDOUT = "max_model_len=29000;gpu=RTX 4090;gpu_memory_utilization=0.5;gpu=A100 40GB"


def run_vllm_fit(args) -> int:
    holdout = VLLM_DEFAULT_HOLDOUT if args.holdout == DEFAULT_HOLDOUT else args.holdout
    fits, _skipped = vllm_fit.fit_points(args.raw, holdout)
    fam = es.memory_family(es.parse_version(args.vllm_version))
    if fam not in fits:
        raise InputError(args.raw[0], "vllm_version", f"no rows of the {fam} memory rule to fit")
    base = read_profile_dict(args.out)
    if base is None:
        raise InputError(args.out, "", "does not exist; start it with `calibrate init`")
    prof = parse_profile(base, args.out)
    ref = "public vLLM start-up logs, " + ", ".join(args.raw) + " (fitted by calibrate fit-memory --vllm)"
    section = vllm_fit.engine_section(fits[fam], prof.matches, args.vllm_version, ref, holdout, fits,
                                      prof.interconnect)
    base.setdefault("memory", {})["vllm"] = section
    write_profile(args.out, base)
    e = section["activation_peak"]["fit_error"]
    print(f"wrote {args.out}: memory.vllm {args.vllm_version} ({fam}); KV GiB error fit {e['fit']}, "
          f"held out {e['held_out']}; reservation error (fit_error, widens KV intervals): held-out max "
          f"{section['fit_error']['held_out_max_abs_gib']} GiB over {section['fit_error']['held_out_rows']} rows")
    return 0
