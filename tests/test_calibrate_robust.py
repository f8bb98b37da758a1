"""Issue #10: raw data never overwritten, outliers flagged (kept in raw, out of the fit),
truncated logs warned about, fit applies the import's GPU/proxy rule, predict intervals."""

import csv
import json
import math
from pathlib import Path

import pytest

from calibrate.cli import main as calibrate
from calibrate.cli.predict import interval_us
from calibrate.nccl.fit import fit_group
from calibrate.nccl.outliers import flag_outliers
from calibrate.nccl.raw import read_raw

NEW = Path(__file__).parent / "fixtures" / "nccl" / "all_reduce_new_layout_8gpu.log"
SIZES = [2**k for k in range(10, 31)]  # 1 KiB .. 1 GiB


def exact(s: float) -> float:
    """all_reduce n=8: factor 2*7/8 = 1.75; alpha 10 us, busbw 100 GB/s -> us."""
    return 10 + 1.75 * s / 1e5


def scaled_log(tmp: Path, name: str, factor_at: dict[int, float]) -> Path:
    """NEW with the out-of-place time of some sizes multiplied (the in-place column kept)."""
    out = []
    for line in NEW.read_text().splitlines():
        toks = line.split()
        if toks and toks[0].isdigit() and int(toks[0]) in factor_at:
            toks[5] = f"{float(toks[5]) * factor_at[int(toks[0])]:.6g}"
            line = "  ".join(toks)
        out.append(line)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    path.write_text("\n".join(out) + "\n")
    return path


def test_rule_flags_a_dip_and_nothing_on_clean_curves():
    """64 MiB 2.8x slow: its busbw is 2.8x below both neighbours (the bandwidth-bound part is
    nearly flat), a local minimum, |r| = log 2.8 >> log 1.25 -> flagged, neighbours not."""
    times = [exact(s) for s in SIZES]
    assert flag_outliers("all_reduce", 8, SIZES, times) == {}
    times[SIZES.index(2**26)] *= 2.8
    flagged = flag_outliers("all_reduce", 8, SIZES, times)
    assert list(flagged) == [2**26] and "below its neighbours" in flagged[2**26]
    ratio = float(flagged[2**26].split("x ")[0].split()[-1])
    assert ratio == pytest.approx(2.8, rel=0.02)


def test_rule_keeps_protocol_steps():
    """A plateau then a jump (busbw 67, 71, 136 GB/s at 2, 4, 8 MiB as in the H100 all_gather
    log) is monotone: nothing flagged. 10% noise wiggles are below the 25% effect size."""
    times = [exact(s) for s in SIZES]
    i = SIZES.index(2**22)
    times[i] = times[i - 1] * 1.9  # 4 MiB nearly twice 2 MiB: busbw flat, then catches up
    times[3] *= 1.10
    times[7] *= 0.92
    assert flag_outliers("all_reduce", 8, SIZES, times) == {}


def test_flagged_point_leaves_the_fit_exact():
    """With the 2.8x point out, the line through exact data is alpha 10 us, busbw 100 GB/s."""
    times = [exact(s) for s in SIZES]
    times[SIZES.index(2**26)] *= 2.8
    fit = fit_group("all_reduce", 8, "intra_node", SIZES, times, table_if=None)
    assert list(fit.flagged) == [2**26] and fit.n_points == len(SIZES) - 1
    assert fit.alpha_us == pytest.approx(10, rel=1e-6) and fit.busbw_gbps == pytest.approx(100, rel=1e-6)
    assert fit.max_rel_err == pytest.approx(0, abs=1e-6)  # held-out errors over unflagged points


def test_same_log_name_twice_keeps_both_raw_files(tmp_path, capsys):
    """Two different logs both called all_reduce_perf.log into two profiles: two raw files
    (content-hash names), the first profile's raw file untouched; the same log again reuses
    its file."""
    a = scaled_log(tmp_path / "a", "all_reduce_perf.log", {})
    b = scaled_log(tmp_path / "b", "all_reduce_perf.log", {2**20: 1.5})
    raw_dir = tmp_path / "raw"
    for log, prof in ((a, "p1.json"), (b, "p2.json"), (a, "p1.json")):
        assert calibrate(["import-nccl-tests", str(log), "--out", str(tmp_path / prof), "--gpu", "A100-80GB",
                          "--raw-dir", str(raw_dir)]) == 0
    files = sorted(raw_dir.glob("nccl_all_reduce_perf_*.csv"))
    assert len(files) == 2
    p1 = json.loads((tmp_path / "p1.json").read_text())
    listed = p1["provenance"]["sections"]["collectives"]["runs"][-1]["raw"]
    assert len(listed) == 1 and Path(listed[0]).exists()
    assert [p.time_us for p in read_raw(listed[0])] == pytest.approx([exact(s) for s in SIZES], rel=1e-5)


def test_import_flags_outlier_keeps_it_in_raw(tmp_path, capsys):
    log = scaled_log(tmp_path, "all_reduce_perf.log", {2**26: 2.8})
    prof = tmp_path / "p.json"
    assert calibrate(["import-nccl-tests", str(log), "--out", str(prof), "--gpu", "A100-80GB"]) == 0
    out = capsys.readouterr().out
    assert "flagged all_reduce n=8 intra_node at 67108864 B" in out
    (raw,) = (tmp_path / "raw").glob("*.csv")
    rows = list(csv.DictReader(raw.open()))
    assert len(rows) == 21 and [r["size_bytes"] for r in rows if r["flag"]] == ["67108864"]
    (c,) = json.loads(prof.read_text())["collectives"]
    assert c["flagged_bytes"] == [2**26] and c["fit_points"] == 20
    assert c["alpha_us"] == pytest.approx(10, rel=1e-3) and c["busbw_gbps"] == pytest.approx(100, rel=1e-3)


def test_truncated_log_warns(tmp_path, capsys):
    """Rows cut after 1 MiB while the header says maxBytes 1 GiB -> a warning naming both."""
    lines = NEW.read_text().splitlines()
    cut = [ln for ln in lines if not (ln.split() and ln.split()[0].isdigit() and int(ln.split()[0]) > 2**20)]
    log = tmp_path / "all_reduce_perf.log"
    log.write_text("\n".join(cut) + "\n")
    assert calibrate(["import-nccl-tests", str(log), "--out", str(tmp_path / "p.json"), "--gpu", "A100-80GB"]) == 0
    err = capsys.readouterr().err
    assert "rows end at 1048576 B but the header asked for up to 1073741824 B" in err


def test_fit_applies_proxy_rule(tmp_path, capsys):
    """Raw points measured on an A100 refitted into an H100 profile: refused without
    --proxy-reason (exit 2, profile not written); with it, the reason lands in ref."""
    assert calibrate(["import-nccl-tests", str(NEW), "--out", str(tmp_path / "a.json"), "--gpu", "A100-80GB"]) == 0
    (raw,) = (tmp_path / "raw").glob("*.csv")
    h = tmp_path / "h.json"
    assert calibrate(["fit", str(raw), "--out", str(h), "--gpu", "H100"]) == 2
    assert "--proxy-reason" in capsys.readouterr().err and not h.exists()
    assert calibrate(["fit", str(raw), "--out", str(h), "--gpu", "H100", "--proxy-reason", "same NVSwitch"]) == 0
    (c,) = json.loads(h.read_text())["collectives"]
    assert "measured on NVIDIA A100-SXM4-80GB, used for H100: same NVSwitch" in c["ref"]


def test_interval_from_held_out_errors():
    """Held-out errors +25% at 1 MB and -20% at 4 MB; at 2 MB both are within 4x:
    measured in [100/1.25, 100/0.8] = [80, 125] us. At 1 GB neither is within 4x: all errors
    are used, the same interval. Outside the range: None."""
    from types import SimpleNamespace as F
    fit = F(held_out_rel_err=((1e6, 0.25), (4e6, -0.2)), range_bytes=(1e3, 2e9))
    assert interval_us(fit, 2e6, 100.0) == pytest.approx((80.0, 125.0))
    assert interval_us(fit, 1e9, 100.0) == pytest.approx((80.0, 125.0))
    assert interval_us(fit, 16e6, 100.0) == pytest.approx((100 / 1.0, 100 / 0.8))  # only -20% near
    assert interval_us(fit, 4e9, 100.0) is None


def test_predict_prints_interval(tmp_path, capsys):
    assert calibrate(["import-nccl-tests", str(NEW), "--out", str(tmp_path / "p.json"), "--gpu", "A100-80GB"]) == 0
    capsys.readouterr()
    assert calibrate(["predict", str(tmp_path / "p.json"), "--collective", "all_reduce", "--ranks", "8",
                      "--bytes", "16M", "--json"]) == 0
    (pt,) = json.loads(capsys.readouterr().out)["points"]
    lo, hi = pt["interval_us"]  # exact data: held-out errors 0 -> a zero-width interval
    assert lo == pytest.approx(pt["time_us"], rel=1e-3) and hi == pytest.approx(pt["time_us"], rel=1e-3)
    assert math.isclose(pt["time_us"], exact(2**24), rel_tol=1e-4)


def test_report_png_only_where_asked(tmp_path, capsys, monkeypatch):
    """--png into a missing folder: one line, exit 2. --png X on a profile with collectives and
    memory: X and X's _memory.png beside it; nothing next to the profile."""
    pytest.importorskip("matplotlib")
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the shipped profile names its raw files relative to the repo
    assert calibrate(["report", "profiles/h100.json", "--png", str(tmp_path / "nope" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
    before = set((root / "profiles").iterdir())
    assert calibrate(["report", "profiles/h100.json", "--png", str(tmp_path / "x.png")]) == 0
    assert set((root / "profiles").iterdir()) == before
    assert (tmp_path / "x_memory.png").exists()
