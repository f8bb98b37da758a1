"""data/vllm_memory_extra: the held-out judge set of public vLLM start-up logs (issue #13).

Its rows are never fitted on; these tests check the file is readable as points, every row names
its source, it repeats no row of the shared set, and the model shapes the bench uses turn the
logged KV token counts back into the GiB vLLM printed beside them (arithmetic in each test).
"""

import csv
import sys
from pathlib import Path

import pytest

from calibrate.importers.vllm_log import LOG_COLUMNS
from calibrate.memory import vllm_fit, vllm_points
from solver.cost.memory import kv_bytes_per_token
from solver.units import GIB

ROOT = Path(__file__).resolve().parents[1]
EXTRA = ROOT / "data" / "vllm_memory_extra" / "logs.csv"
SHARED = ROOT.parent / "shared" / "data" / "vllm_memory" / "logs.csv"


def _rows() -> list[dict]:
    return vllm_fit.read_points(str(EXTRA))


def test_header_is_the_shared_columns_and_every_row_is_sourced():
    with open(EXTRA, newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == LOG_COLUMNS
    for r in _rows():
        assert r["source_url"].startswith("https://"), r["line"]
        assert r["gpu"] and r["model"] and r["tp"] and r["vllm_version"] and r["notes"], r["line"]
        assert r["kv_cache_gib"] is not None or r["kv_tokens"] is not None, r["line"]


@pytest.mark.skipif(not SHARED.exists(), reason="shared data set not checked out")
def test_no_row_of_the_shared_set_is_repeated():
    key = ("source_url", "model", "tp", "max_model_len", "gpu_memory_utilization", "kv_tokens", "kv_cache_gib")
    shared = {tuple(r[k] for k in key) for r in vllm_fit.read_points(str(SHARED))}
    assert not [r["line"] for r in _rows() if tuple(r[k] for k in key) in shared]


@pytest.mark.parametrize("line, tokens, printed_gib", [
    # Qwen3-8B, A100 40GB, vLLM 0.9.2: 36 layers x 2 x 8 KV heads x 128 x 2 B = 147,456 B per token;
    # 136,080 x 147,456 / 2^30 = 18.688 GiB, printed 'Available KV cache memory: 18.69 GiB'.
    (3, 136080, 18.69),
    # Qwen3-8B, vLLM 0.19.1: 140,960 x 147,456 / 2^30 = 19.358 GiB, printed 19.36 GiB.
    (4, 140960, 19.36),
    # Llama-3.1-8B, A100 40GB, vLLM 0.15.1: 32 x 2 x 8 x 128 x 2 = 131,072 B per token;
    # 157,936 x 131,072 / 2^30 = 19.280 GiB, printed 19.28 GiB.
    (2, 157936, 19.28),
    # Qwen3-8B, RTX 4090, vLLM 0.24.0: 43,888 x 147,456 / 2^30 = 6.027 GiB, printed 6.03 GiB.
    (29, 43888, 6.03),
])
def test_model_shapes_turn_the_logged_tokens_into_the_printed_gib(line, tokens, printed_gib):
    r = next(r for r in _rows() if r["line"] == line)
    assert r["kv_tokens"] == tokens and r["kv_cache_gib"] == printed_gib
    spec, _max_pos, _src = vllm_points.MODELS[r["model"]]
    model = vllm_points.load_model(spec) if isinstance(spec, str) else vllm_points.parse_hf_config(spec, r["model"])
    per_token = kv_bytes_per_token(model, 1, model.num_layers, 2)
    assert per_token == (147456 if "Qwen3" in r["model"] else 131072)
    assert tokens * per_token / GIB == pytest.approx(printed_gib, abs=0.006)


def test_qwen25_7b_l40s_row_is_judged_on_its_token_count():
    """Qwen2.5-7B (28 layers x 2 x 4 KV heads x 128 x 2 B = 57,344 B per token), 0.8.5.post1 on
    an L40S: the log prints only 'GPU KV cache size: 444,592 tokens', so the judged KV is
    444,592 x 57,344 / 2^30 = 23.744 GiB."""
    r = next(r for r in _rows() if r["line"] == 12)
    case, why = vllm_fit.resolve(r)
    assert why == "" and case.kv_measured_gib() == pytest.approx(23.744, abs=1e-3)


@pytest.mark.skipif(not SHARED.exists(), reason="shared data set not checked out")
def test_bench_fits_on_the_shared_points_only(capsys):
    """The extra rows never enter a fit: the bench's fit is fit_points over the shared file alone,
    so the L40S row's prediction equals the one from that fit (0.8 family, device-wide rule)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_memory_fit
    from calibrate.memory.vllm_cli import VLLM_DEFAULT_HOLDOUT
    errs = bench_memory_fit.bench_vllm_extra([str(SHARED)], VLLM_DEFAULT_HOLDOUT, [str(EXTRA)])
    fits, _ = vllm_fit.fit_points([str(SHARED)], VLLM_DEFAULT_HOLDOUT)
    case, _ = vllm_fit.resolve(next(r for r in _rows() if r["line"] == 12))
    want = vllm_fit.predict_case(case, fits[case.family])["kv_cache_gib"] / case.kv_measured_gib() - 1
    assert any(e == pytest.approx(want) for e in errs)
    out = capsys.readouterr().out
    assert "fully held out" in out and "line 14 " in out   # the unnamed Mistral checkpoint is listed, not predicted
