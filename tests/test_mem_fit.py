"""Activation-peak and prefill/decode fits recover known coefficients from synthetic rows."""

import pytest

from calibrate.memory import fit as mem_fit

COEF = {"c0_bytes": 1048576.0, "c_h": 4.0, "c_h_t": 2.0, "c_f_t": 3.0, "c_q_t": 1.0, "c_attn_t": 0.0}
# (h, f, a, d): h, f and a*d vary independently (a*d = 2048 != h in the third shape)
SHAPES = [(1024, 4096, 8, 128), (2048, 5632, 16, 128), (1536, 8192, 8, 256), (4096, 14336, 32, 128)]


def _row(h, f, a, d, t, b, s, **kw):
    r = {"runtime": "synthetic-rt", "phase": "prefill", "batch": b, "seq": s, "hidden": h, "ffn": f,
         "heads": a, "kv_heads": a, "head_dim": d, "tp": t, "layers": 1, "dtype_bytes": 2, "gated_mlp": 1,
         "kv_bytes": 0.0, "weights_bytes": 1.0, "source": "synthetic"}
    r.update(kw)
    return r


def _grid():
    rows = []
    for h, f, a, d in SHAPES:
        for t in (1, 2, 4, 8):
            for b, s in ((1, 1024), (4, 512), (8, 2048)):
                r = _row(h, f, a, d, t, b, s)
                r["peak_bytes"] = mem_fit.predict_activation(COEF, r)
                rows.append(r)
    return rows


def test_activation_formula_by_hand():
    """b=1, s=1024, h=1024, f=4096, a=8, d=128, t=2, p=2 with COEF:
    per token 4*1024 + 2*1024/2 + 3*4096/2 + 1*8*128/2 = 4096 + 1024 + 6144 + 512 = 11776,
    x T*p = 2048 -> 24,117,248 B, + c0 1,048,576 = 25,165,824 B = 24 MiB."""
    assert mem_fit.predict_activation(COEF, _row(1024, 4096, 8, 128, 2, 1, 1024)) == 25165824


def test_fit_recovers_known_coefficients():
    """Noise-free rows from COEF; tp=2 held out (12 rows), 36 fitted; every coefficient back
    to 1e-6 relative, held-out error ~0."""
    fit = mem_fit.fit_activation(_grid(), mem_fit.parse_holdout("tp=2"))
    assert len(fit.held_rows) == 12 and len(fit.fit_rows) == 36
    for k in ("c0_bytes", "c_h", "c_h_t", "c_f_t", "c_q_t"):
        assert fit.coef[k] == pytest.approx(COEF[k], rel=1e-6)
    assert mem_fit.error_summary(fit.held_err)["max_rel"] < 1e-6


def test_collinear_coefficient_is_fixed_at_zero_and_named():
    """One shape only (f = 4h, a*d = h): h/t, f/t and a*d/t columns are proportional, so
    only c_f_t of the three is fitted; predictions for that shape are still exact."""
    rows = [r for r in _grid() if r["hidden"] == 1024]
    fit = mem_fit.fit_activation(rows, [])
    assert fit.coef["c_h_t"] == 0 and fit.coef["c_q_t"] == 0
    assert "collinear" in fit.dropped["c_h_t"]
    # c_f_t absorbs 2*h/t + 1*a*d/t = (2/4 + 1/4) f/t -> 3 + 0.75
    assert fit.coef["c_f_t"] == pytest.approx(3.75, rel=1e-6)
    assert max(abs(e) for e in fit.fit_err) < 1e-9


def test_holdout_spec():
    clauses = mem_fit.parse_holdout("tp=2;batch=8,seq=2048")
    assert mem_fit.is_held_out({"tp": 2, "batch": 1, "seq": 1}, clauses)
    assert mem_fit.is_held_out({"tp": 1, "batch": 8, "seq": 2048}, clauses)
    assert not mem_fit.is_held_out({"tp": 1, "batch": 8, "seq": 512}, clauses)


def test_prefill_time_by_hand_and_fit_recovers():
    """b=8, s=512, h=4096, a=32 (MHA), d=128, f=11008 gated, t=1, L=1:
    FLOPs = 2*4096*(4*4096^2 + 3*4096*11008) + 2*8*512^2*128*32 = 1,675,037,245,440 (1675.04 GFLOP).
    eff = 0.7 * 1675.04/(1675.04+50) = 0.67971; 1.67504e12/(989e12*0.67971) = 2.49175 ms;
    passes: 10 * 4096 tokens*4096*2 B / 3350e9 B/s = 0.10016 ms; total 2.59191 ms."""
    r = _row(4096, 11008, 32, 128, 1, 8, 512)
    r["flops"] = mem_fit.prefill_flops(r)
    assert r["flops"] == 1675037245440
    assert mem_fit.predict_prefill_s(r, 0.7, 50.0, 10.0, 989e12, 3350e9) * 1e3 == pytest.approx(2.59191, abs=1e-5)
    rows = []
    for h, f, a, d in SHAPES:
        for t in (1, 2, 4, 8):
            for b, s in ((1, 1024), (4, 512), (8, 2048)):
                x = _row(h, f, a, d, t, b, s)
                x["flops"] = mem_fit.prefill_flops(x)
                x["time_ms"] = mem_fit.predict_prefill_s(x, 0.7, 50.0, 10.0, 989e12, 3350e9) * 1e3
                rows.append(x)
    fit = mem_fit.fit_prefill(rows, mem_fit.parse_holdout("tp=2"), 989e12, 3350e9)
    assert fit.eff_max == pytest.approx(0.7, rel=1e-6)
    assert fit.x_half_gflop == pytest.approx(50.0, rel=1e-6)
    assert fit.passes == pytest.approx(10.0, rel=1e-6)


def test_decode_fit_recovers():
    """time = L*(x + x_half)/(B*eff_max), x = (weights + kv)/L; eff_max 0.8, x_half 2 MB.
    By hand: weights 100 MB + kv 28 MB over 2 layers -> x = 64e6; 2*(66e6)/(3350e9*0.8) = 49.25 us."""
    rows = []
    for i, (w, kv) in enumerate([(100e6, 28e6), (10e6, 1e6), (400e6, 50e6), (3e6, 0.5e6), (50e6, 60e6)]):
        r = _row(4096, 14336, 32, 128, 1, 1, 1, phase="decode", weights_bytes=w, kv_bytes=kv, layers=2, tp=1 + i % 2)
        r["time_ms"] = 2 * ((w + kv) / 2 + 2e6) / (3350e9 * 0.8) * 1e3
        rows.append(r)
    assert rows[0]["time_ms"] == pytest.approx(0.049254, abs=1e-6)
    eff_max, x_half, fit_err, held_err = mem_fit.fit_decode(rows, mem_fit.parse_holdout("tp=2"), 3350e9)
    assert eff_max == pytest.approx(0.8, rel=1e-6) and x_half == pytest.approx(2e6, rel=1e-6)
    assert len(held_err) == 2 and max(abs(e) for e in held_err) < 1e-9


def test_raw_roundtrip(tmp_path):
    rows = _grid()[:3]
    for r in rows:
        r.update(device="cpu", dtype="fp16", time_ms=1.5, flops=1e9)
    mem_fit.write_raw(tmp_path / "raw.csv", rows)
    back = mem_fit.read_raw(tmp_path / "raw.csv")
    assert back[1]["peak_bytes"] == pytest.approx(rows[1]["peak_bytes"]) and back[1]["tp"] == rows[1]["tp"]
    assert back[0]["nontorch_bytes"] is None
