"""Which data may go into which profile: the GPU rule (data measured on another GPU needs a
stated proxy reason) and the synthetic rule (synthetic numbers only go into a profile created
as synthetic). Shared by every writer (collectives, op tables)."""

from __future__ import annotations

from calibrate import published
from solver.errors import InputError
from solver.inputs.profile_records import normalize_gpu_name


def check_synthetic(profile: dict, synthetic: bool, where: str, what: str = "synthetic numbers") -> None:
    """Refuse ``synthetic`` data for an existing ``profile`` not marked synthetic."""
    if synthetic and not profile.get("provenance", {}).get("synthetic"):
        raise InputError(where, "provenance.synthetic", f"{what} only go into a profile "
                                                        "created as synthetic (calibrate init --synthetic)")


def check_proxy(data_gpu: str, profile_gpu: str | None, reason: str | None, where: str) -> str:
    """'' when the data's GPU is the profile's (by datasheet entry or normalised name), the
    proxy note for ``ref`` when ``reason`` says why another GPU stands for it; else an error."""
    if not data_gpu or not profile_gpu:
        return ""
    a, b = published.find(data_gpu), published.find(profile_gpu)
    if (a and b and a[0] == b[0]) or normalize_gpu_name(data_gpu) == normalize_gpu_name(profile_gpu):
        return ""
    if not reason:
        raise InputError(where, "gpu", f"data measured on {data_gpu!r}, profile is {profile_gpu!r}; "
                                       "pass --proxy-reason to say why it stands for this GPU")
    return f"measured on {data_gpu}, used for {profile_gpu}: {reason}"


def published_match(profile: dict, gpu: str) -> bool:
    names = {normalize_gpu_name(n) for n in [profile["gpu"]["name"], *profile["gpu"].get("aliases", [])]}
    found = published.find(gpu)
    return normalize_gpu_name(gpu) in names or (found is not None and normalize_gpu_name(found[0]) in names)
