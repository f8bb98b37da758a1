"""Communication time from the profile: TP collectives and inter-stage transfers.

Every number comes from the profile's collective fits (``solver.cost.collectives``) or, when
the profile has none for a case, from its ``network`` block and nominal link bandwidth,
with a :class:`CalibrationWarning` saying so.
"""

from __future__ import annotations

from solver.cost.collectives import bus_factor, collective_time_us, find_fit, in_fitted_range
from solver.cost.warn import note
from solver.inputs.profile import CollectiveFit, Profile

# Megatron sends one activation tensor between stages; vLLM sends hidden_states and the
# residual (design.md section 5).
TENSORS_BETWEEN_STAGES = {"vllm": 2, "megatron": 1}


def _exact_fit(profile: Profile, collective: str, ranks: int, scope: str) -> CollectiveFit | None:
    """The fit for exactly this rank count, or None. Another n's fit is never reused: with
    NVLS/SHARP busbw depends on n (design.md section 4), and ``calibrate predict`` refuses
    the same question; the caller falls back to the network block instead, with a note."""
    fit = find_fit(profile.collectives, collective, ranks, scope)
    if fit is None and profile.collective(collective, scope):
        have = sorted({f.ranks for f in profile.collective(collective, scope)})
        note(f"{profile.path}: no {collective} fit for {ranks} ranks ({scope}; measured: "
             f"{', '.join(map(str, have))}); not derived from another rank count")
    return fit


def collective_time_s(profile: Profile, collective: str, ranks: int, scope: str, size_bytes: float,
                      nominal_gbps: float | None = None) -> float:
    """Seconds for one collective of nccl-tests size ``size_bytes`` on ``ranks`` GPUs.

    With no fit for the collective in that scope, falls back to the profile's network
    defaults on ``nominal_gbps`` (the intra-node link when not given)."""
    if ranks <= 1 or size_bytes <= 0:
        return 0.0
    fit = _exact_fit(profile, collective, ranks, scope)
    if fit is not None:
        if fit.source == "synthetic":
            note(f"{profile.path}: {collective} {fit.ranks}-rank {scope} fit is synthetic (test numbers, "
                 "not a GPU measurement)")
        t_us = collective_time_us(fit, size_bytes)
        if not in_fitted_range(fit, size_bytes):
            lo, hi = fit.range_bytes
            note(f"{profile.path}: {collective} {fit.ranks}-rank {scope} fit covers {lo:.0f}-{hi:.0f} B, "
                 f"asked for {size_bytes:.0f} B (extrapolated)")
        return t_us * 1e-6
    alpha_us, bw_gbps = _link_defaults(profile, scope, nominal_gbps)
    note(f"{profile.path}: no {collective} fit ({scope}); using nominal {bw_gbps:.4g} GB/s and "
         f"alpha {alpha_us:g} us from the network block")
    return (alpha_us + bus_factor(collective, ranks) * size_bytes / (bw_gbps * 1e3)) * 1e-6


def _link_defaults(profile: Profile, scope: str, nominal_gbps: float | None) -> tuple[float, float]:
    net = profile.network
    if scope == "intra_node":
        nominal = profile.intra_node_gbps.value if nominal_gbps is None else nominal_gbps
        return net["intra_node_alpha_us"].value, nominal * net["intra_node_p2p_efficiency"].value
    if nominal_gbps is None:
        raise ValueError("inter_node collective needs the NIC's nominal bandwidth")
    return net["inter_node_alpha_us"].value, nominal_gbps * net["nic_efficiency"].value


def tp_allreduce_s(profile: Profile, tp: int, size_bytes: float) -> float:
    """One all-reduce inside a TP group (always inside one node).

    A profile's ``serving.tp_allreduce`` entry (fitted end to end on a serving engine,
    docs/profile.md) wins over the collective fits: it is what the engine actually pays
    (e.g. NCCL over PCIe without P2P when vLLM's custom all-reduce is off), which nccl-tests
    on an idle node need not show. Its ranks are matched exactly, else the nearest entry."""
    if tp > 1 and size_bytes > 0 and profile.engine_allreduce:
        fit = min(profile.engine_allreduce, key=lambda a: (abs(a.ranks - tp), a.ranks))
        if fit.ranks != tp:
            note(f"{profile.path}: no serving.tp_allreduce entry for {tp} ranks; using the {fit.ranks}-rank one")
        hops = 2 * (tp - 1)  # a ring all-reduce: reduce-scatter then all-gather, n-1 steps each
        t_us = hops * fit.hop_us + bus_factor("all_reduce", tp) * size_bytes / (fit.busbw_gbps * 1e3)
        return t_us * 1e-6
    return collective_time_s(profile, "all_reduce", tp, "intra_node", size_bytes)


def fit_pins(profile: Profile, tp: int, size_bytes: float) -> bool:
    """Whether the engine all-reduce fit for ``tp`` ranks pins a call of ``size_bytes``: the
    fit is exactly this rank count's (not borrowed) and the size lies within its recorded
    ``message_bytes`` (each fit row fixes t(S) of the linear model at the row's mean message
    S = bytes / calls; calibrate/serving/fit.py). Outside that range the fit extrapolates."""
    fit = next((a for a in profile.engine_allreduce if a.ranks == tp), None)
    if fit is None or fit.message_bytes is None:
        return False
    return fit.message_bytes[0] <= size_bytes <= fit.message_bytes[1]


def tp_allgather_s(profile: Profile, tp: int, size_bytes: float) -> float:
    """One all-gather inside a TP group; ``size_bytes`` is the gathered total (nccl-tests S)."""
    return collective_time_s(profile, "all_gather", tp, "intra_node", size_bytes)


def ep_dispatch_bytes(tokens: int, top_k: int, hidden: int, act_bytes: float, ranks: int) -> float:
    """Each rank's all-to-all buffer when ``ranks`` expert-parallel GPUs dispatch (or
    combine) ``tokens`` tokens to their top-k experts: every rank sends its 1/ranks share of
    the T*k hidden vectors, T*k*h*p/ranks bytes (DeepSeek-V3 report, section 3.2: dispatch
    and combine are the two all-to-alls of an EP MoE layer)."""
    return tokens * top_k * hidden * act_bytes / ranks


def ep_alltoall_s(profile: Profile, ranks: int, size_bytes: float) -> float:
    """One all-to-all among the ``ranks`` GPUs of an expert-parallel group (inside one node);
    ``size_bytes`` is each rank's buffer (nccl-tests S: S/n to every peer). From the
    profile's ``all_to_all`` fit, else its network defaults with a note."""
    return collective_time_s(profile, "all_to_all", ranks, "intra_node", size_bytes)


def p2p_s(profile: Profile, size_bytes: float, link_gbps: float | None, senders: int = 1) -> float:
    """A point-to-point transfer of ``size_bytes`` between two stages.

    vLLM and Megatron split the tensor into ``senders`` chunks (one per rank of the sending
    TP group) sent in parallel, then all-gather it on arrival (design.md section 5; the
    all-gather is charged to the receiving stage). ``link_gbps`` None: both stages in one
    node, each chunk on its own GPU link (send_recv intra_node fit, else the nominal GPU
    link x intra_node_p2p_efficiency). Otherwise the chunks share the node's NIC: the nominal
    NIC rate between the nodes scaled by the efficiency of the profile's send_recv
    inter_node fit (busbw / nominal) or the network block's ``nic_efficiency``.
    """
    if size_bytes <= 0:
        return 0.0
    if link_gbps is None:
        size_bytes = size_bytes / max(1, senders)
        fit = find_fit(profile.collectives, "send_recv", 2, "intra_node")
        if fit is not None:
            return collective_time_us(fit, size_bytes) * 1e-6
        alpha_us, bw = _link_defaults(profile, "intra_node", None)
        return (alpha_us + size_bytes / (bw * 1e3)) * 1e-6
    if link_gbps <= 0:
        return float("inf")
    fit = find_fit(profile.collectives, "send_recv", 2, "inter_node")
    if fit is not None and fit.nominal_gbps:
        eff = fit.busbw_gbps / fit.nominal_gbps
        alpha_us = fit.alpha_us
    else:
        eff = profile.network["nic_efficiency"].value
        alpha_us = profile.network["inter_node_alpha_us"].value
    return (alpha_us + size_bytes / (link_gbps * eff * 1e3)) * 1e-6
