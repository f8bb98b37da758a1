"""calibrate/nccl/fit.py: the fit recovers known alpha/busbw; held-out error; tables."""

import numpy as np
import pytest

from calibrate.nccl.fit import _predictor, fit_envelope, fit_group, fit_line, merge_sizes
from calibrate.nccl.profile import entry, fit_points
from calibrate.nccl.raw import RawPoint, read_raw, write_raw
from solver.cost.collectives import collective_time_us
from solver.errors import InputError
from solver.inputs.profile import parse_profile

SIZES = [2**k for k in range(10, 31)]  # 1 KiB .. 1 GiB


def _exact(alpha, busbw, factor):
    return [alpha + factor * s / (busbw * 1e3) for s in SIZES]


def test_exact_all_reduce_recovers_alpha_10us_busbw_100():
    """t = 10 + 1.75*S/1e5 us (all_reduce, n=8): alpha = 10 us, busbw = 100 GB/s exactly; the line
    fits every held-out size, so no table, error ~ 0."""
    fit = fit_group("all_reduce", 8, "intra_node", SIZES, _exact(10.0, 100.0, 1.75))
    assert fit.alpha_us == pytest.approx(10.0, rel=1e-9)
    assert fit.busbw_gbps == pytest.approx(100.0, rel=1e-9)
    assert fit.method == "line" and fit.max_rel_err < 1e-9
    assert fit.range_bytes == (1024, 2**30) and fit.n_points == 21


def test_exact_all_gather_4_ranks():
    """all_gather n=4, factor 0.75: t = 5 + 0.75*S/5e4 -> alpha 5 us, busbw 50 GB/s."""
    fit = fit_group("all_gather", 4, "intra_node", SIZES, _exact(5.0, 50.0, 0.75))
    assert (fit.alpha_us, fit.busbw_gbps) == (pytest.approx(5.0), pytest.approx(50.0))


def test_noisy_data_recovers_within_3_percent():
    """+-4% uniform noise (seed 0) and 2 wild outliers (x3) on t = 10 + 1.75*S/1e5: the robust
    relative fit keeps alpha and busbw within 3% of 10 us / 100 GB/s."""
    rng = np.random.default_rng(0)
    t = np.array(_exact(10.0, 100.0, 1.75)) * rng.uniform(0.96, 1.04, len(SIZES))
    t[[3, 15]] *= 3.0
    alpha, busbw = fit_line("all_reduce", 8, SIZES, t)
    assert alpha == pytest.approx(10.0, rel=0.03)
    assert busbw == pytest.approx(100.0, rel=0.03)


def test_piecewise_curve_leaves_the_single_line():
    """A protocol switch: below 1 MiB alpha 10 us / busbw 20 GB/s, from 1 MiB alpha 40 us /
    busbw 200 GB/s. One line misses by > 10%, so leave-one-out picks another kind; the table
    kind's regime line takes busbw from the largest sizes (200 GB/s) and alpha from the
    latency-bound ones (10 us)."""
    t = [10 + 1.75 * s / 2e4 if s < 2**20 else 40 + 1.75 * s / 2e5 for s in SIZES]
    fit = fit_group("all_reduce", 8, "intra_node", SIZES, t)
    assert fit.method != "line" and fit.line_max_rel_err > 0.10
    assert fit.max_rel_err < fit.line_max_rel_err
    alpha, busbw, ts, _, _ = _predictor("all_reduce", 8, np.array(SIZES, float), np.array(t), "table")
    assert busbw == pytest.approx(200.0, rel=1e-6) and alpha == pytest.approx(10.0, rel=1e-3)
    assert ts == SIZES


def test_envelope_recovers_two_exact_lines():
    """t = min(10 + 1.75*S/2e4, 40 + 1.75*S/2e5) (all_reduce n=8): lines cross at
    S = 30 / (8.75e-5 - 8.75e-6) = 380,952 B, between 256 KiB and 512 KiB. fit_envelope(k=2)
    returns (10 us, 20 GB/s) and (40 us, 200 GB/s); the fit ships it with ~0 held-out error."""
    t = [min(10 + 1.75 * s / 2e4, 40 + 1.75 * s / 2e5) for s in SIZES]
    (a1, b1), (a2, b2) = fit_envelope("all_reduce", 8, SIZES, t, 2)
    assert (a1, b1) == (pytest.approx(10.0, rel=1e-9), pytest.approx(20.0, rel=1e-9))
    assert (a2, b2) == (pytest.approx(40.0, rel=1e-9), pytest.approx(200.0, rel=1e-9))
    fit = fit_group("all_reduce", 8, "intra_node", SIZES, t)
    assert fit.method == "envelope2" and fit.max_rel_err < 1e-9 and fit.line_max_rel_err > 0.10
    cf = fit.as_collective_fit()  # 1 MiB: min(10 + 91.75, 40 + 9.175) = 49.175 us
    assert collective_time_us(cf, 2**20) == pytest.approx(49.175, rel=1e-6)


def test_merge_repeated_sizes_takes_median():
    s, t = merge_sizes([1024, 1024, 1024, 2048], [1.0, 5.0, 2.0, 3.0])
    assert list(s) == [1024, 2048] and list(t) == [2.0, 3.0]


def test_too_small_sizes_is_an_input_error():
    with pytest.raises(InputError, match="bandwidth"):
        fit_line("all_reduce", 8, [1024, 2048, 4096], [30.0, 30.0, 29.0])


def test_raw_roundtrip_and_entry_validates(tmp_path):
    """Raw CSV round trip; the profile entry passes the solver's own loader."""
    pts = [RawPoint("all_reduce", 8, 1, "intra_node", s, t, source="synthetic", backend="test")
           for s, t in zip(SIZES, _exact(10.0, 100.0, 1.75))]
    write_raw(tmp_path / "r.csv", pts)
    back = read_raw(tmp_path / "r.csv")
    assert len(back) == 21 and back[0].busbw_gbps == pytest.approx(pts[0].busbw_gbps, rel=1e-5)
    (fit, gpts), = fit_points(back)
    e = entry(fit, gpts, ref="test", nominal=300.0)
    assert e["alpha_us"] == 10.0 and e["busbw_gbps"] == 100.0 and e["efficiency"] == pytest.approx(0.333)
    from calibrate.defaults import skeleton
    data = skeleton("A100-80GB")
    data["collectives"] = [e]
    assert parse_profile(data, "x").collectives[0].busbw_gbps == 100.0


def test_gloo_points_cannot_be_measured():
    pts = [RawPoint("all_reduce", 2, 1, "intra_node", s, 10.0 + s / 1e3, source="measured", backend="gloo")
           for s in SIZES[:6]]
    with pytest.raises(InputError, match="gloo"):
        fit_points(pts, "run.csv")


def test_bad_raw_csv_names_line_and_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("collective,ranks,nodes,scope,size_bytes,time_us\nall_reduce,8,1,intra_node,1024,fast\n")
    with pytest.raises(InputError) as e:
        read_raw(p)
    assert "line 2: time_us" in str(e.value) and "bad.csv" in str(e.value)
