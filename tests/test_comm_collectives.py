"""solver/cost/collectives.py: nccl-tests factors and the profile's time model, by hand."""

from dataclasses import replace

import pytest

from solver.cost.collectives import (algbw_gbps, bus_factor, busbw_gbps, busbw_gbps_at, collective_time_us,
                                     find_fit, in_fitted_range, loglog_interp)
from solver.inputs.profile import CollectiveFit


def _fit(coll="all_reduce", n=8, table=((), ()), rng=None):
    return CollectiveFit(coll, n, "intra_node", alpha_us=10.0, busbw_gbps=100.0, source="synthetic",
                         range_bytes=rng, table_size_bytes=table[0], table_time_us=table[1])


def test_bus_factors():
    """all_reduce 2(n-1)/n: n=8 -> 1.75, n=2 -> 1; all_gather/reduce_scatter (n-1)/n: n=4 -> 0.75;
    broadcast, send_recv 1."""
    assert bus_factor("all_reduce", 8) == 1.75
    assert bus_factor("all_reduce", 2) == 1.0
    assert bus_factor("all_gather", 4) == 0.75
    assert bus_factor("reduce_scatter", 8) == 0.875
    assert bus_factor("broadcast", 8) == 1.0
    assert bus_factor("send_recv", 2) == 1.0
    with pytest.raises(ValueError):
        bus_factor("alltoall", 8)


def test_line_time_all_reduce_8():
    """alpha 10 us, busbw 100 GB/s, all_reduce n=8, S = 1e8 B:
    t = 10 + 1.75 * 1e8 / (100 * 1e3) = 10 + 1750 = 1760 us; busbw = 1.75 * 1e8 / 1760e-6 / 1e9 = 99.43 GB/s."""
    f = _fit()
    assert collective_time_us(f, 1e8) == pytest.approx(1760.0)
    assert busbw_gbps_at(f, 1e8) == pytest.approx(99.4318, rel=1e-5)
    assert collective_time_us(f, 0) == pytest.approx(10.0)


def test_algbw_busbw_definitions():
    """S = 1 GB in 10 000 us: algbw = 1e9 / 1e-2 s = 100 GB/s; all_reduce n=4: busbw = 1.5 x 100 = 150."""
    assert algbw_gbps(1e9, 1e4) == pytest.approx(100.0)
    assert busbw_gbps("all_reduce", 4, 1e9, 1e4) == pytest.approx(150.0)


def test_table_inside_line_outside():
    """Table 1 KiB -> 20 us, 4 KiB -> 80 us (a power law t ~ S): at 2 KiB log-log gives 40 us
    exactly; above 4 KiB the line: 10 + 1.75*8192/1e5 = 10.14336 us."""
    f = _fit(table=((1024.0, 4096.0), (20.0, 80.0)))
    assert collective_time_us(f, 2048) == pytest.approx(40.0)
    assert collective_time_us(f, 1024) == pytest.approx(20.0)
    assert collective_time_us(f, 8192) == pytest.approx(10.14336)


def test_loglog_interp_clamps_and_power_law():
    """Between (1, 1) and (100, 10000) (y = x^2): at x = 10, y = 100; outside: clamped."""
    assert loglog_interp([1, 100], [1, 10000], 10) == pytest.approx(100.0)
    assert loglog_interp([1, 100], [1, 10000], 0.5) == 1.0
    assert loglog_interp([1, 100], [1, 10000], 1000) == 10000.0


def test_range_and_find():
    f = _fit(rng=(1024, 2**30))
    assert in_fitted_range(f, 4096) and not in_fitted_range(f, 2**31)
    assert in_fitted_range(_fit(), 2**40)  # no range known: no warning possible
    assert find_fit([f], "all_reduce", 8, "intra_node") is f
    assert find_fit([f], "all_reduce", 4, "intra_node") is None  # never derived from another n


def test_linear_table_and_envelope_lines():
    """Linear table: (1024, 20) .. (4096, 50) at 2048 -> 20 + 30/3 = 30 us (log-log: 20*2.5^0.5 =
    31.62). Envelope all_reduce n=8: min(10 + 1.75*S/2e4, 40 + 1.75*S/2e5): 1 MiB -> 49.175 us,
    1 KiB -> 10.0896 us."""
    f = _fit(table=((1024.0, 4096.0), (20.0, 50.0)))
    assert collective_time_us(f, 2048) == pytest.approx(31.6227766)
    assert collective_time_us(replace(f, table_interp="linear"), 2048) == pytest.approx(30.0)
    env = replace(_fit(), lines=((10.0, 20.0), (40.0, 200.0)))
    assert collective_time_us(env, 2**20) == pytest.approx(49.175)
    assert collective_time_us(env, 1024) == pytest.approx(10.0896)


def test_denser_sweep_sizes():
    """Two sizes per doubling: 1024 * 2^0.5 = 1448 -> 1536 and 2048 * 2^0.5 = 2896 -> 2816
    (multiples of 256 B, so a group of up to 64 ranks splits 4-byte elements evenly)."""
    from calibrate.nccl.sweep import sizes_geometric
    assert sizes_geometric(1024, 4096, 1) == [1024, 2048, 4096]
    assert sizes_geometric(1024, 4096, 2) == [1024, 1536, 2048, 2816, 4096]
    assert all(s % 256 == 0 for s in sizes_geometric(1024, 2**20, 4))
