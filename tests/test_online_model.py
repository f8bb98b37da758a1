"""Online serving model: step composition, scheduler simulation and steady state, worked by
hand on a toy step model (times in seconds):
    D(b) = 0.010 + 0.001 b      decode round of b sequences (context ignored)
    F(P) = 0.010 + 0.0001 P     prefill pass of a P-token chunk
    W    = D(1) = 0.011         one weight pass
so a mixed step is D(b) + F(P) - W = 0.009 + 0.001 b + 0.0001 P."""

import math

import pytest

from solver.cost.online.little import max_stable_rate, steady_state
from solver.cost.online.simulate import simulate
from solver.cost.online.slo import SLO, max_rate_under_slo
from solver.cost.online.steps import StepModel
from solver.cost.online.traffic import Traffic
from solver.errors import InputError


class ToySteps:
    step_s = StepModel.step_s
    block_size = 16

    def __init__(self, budget=100, max_seqs=10, blocks=10_000):
        self.budget_tokens, self.max_num_seqs, self._blocks = budget, max_seqs, blocks

    def decode_s(self, b, ctx):
        return 0.010 + 0.001 * b if b > 0 else 0.0

    def prefill_s(self, tokens):
        return 0.010 + 0.0001 * tokens

    def weights_pass_s(self):
        return 0.011

    def kv_blocks(self):
        return self._blocks

    def kv_capacity_tokens(self):
        return self._blocks * 16


def test_step_composition():
    """Decode only: D(4) = 0.014. Prefill only: F(100) = 0.020. Mixed, 4 decodes + 100
    prompt tokens: 0.014 + (0.020 - 0.011) = 0.023."""
    s = ToySteps()
    assert s.step_s(4, 0, 0) == pytest.approx(0.014)
    assert s.step_s(0, 0, 100) == pytest.approx(0.020)
    assert s.step_s(4, 0, 100) == pytest.approx(0.023)


def test_sim_single_client():
    """C=1, prompt 50, output 3, 2 requests. r1: prefill F(50)=0.015 (TTFT 15 ms), two
    decodes of D(1)=0.011 -> done at 0.037, TPOT (0.037-0.015)/2 = 0.011. r2 arrives at
    0.037 and repeats: done at 0.074. 6 output tokens / 0.074 s = 81.08 tok/s."""
    r = simulate(ToySteps(), Traffic(50, 3, concurrency=1), 2)
    assert r.ttft_s.tolist() == pytest.approx([0.015, 0.015])
    assert r.tpot_s.tolist() == pytest.approx([0.011, 0.011])
    assert r.itl_s.tolist() == pytest.approx([0.011] * 4)
    assert r.duration_s == pytest.approx(0.074)
    assert r.output_tok_s == pytest.approx(6 / 0.074)


def test_sim_chunks_share_the_budget():
    """C=2, prompt 150, output 2, budget 100.
    step 1: r1 chunk 100 (budget spent; r2 waits): F(100) = 0.020 -> t 0.020
    step 2: r1 chunk 50, r2 chunk 50: F(100) = 0.020 -> t 0.040, r1 first token (TTFT 40 ms)
    step 3: r1 decode + r2 chunk 99: 0.009 + 0.001 + 0.0099 = 0.0199 -> t 0.0599, r1 done
    step 4: r2 chunk 1: F(1) = 0.0101 -> t 0.0700, r2 first token (TTFT 70 ms)
    step 5: r2 decode D(1) = 0.011 -> t 0.0810. TPOTs 0.0199 and 0.011."""
    r = simulate(ToySteps(), Traffic(150, 2, concurrency=2), 2)
    assert r.ttft_s.tolist() == pytest.approx([0.040, 0.070])
    assert r.tpot_s.tolist() == pytest.approx([0.0199, 0.011])
    assert r.duration_s == pytest.approx(0.081)
    assert r.steps == 5


def test_sim_preempts_when_kv_runs_out():
    """4 KV blocks (64 tokens), C=2, prompt 16, output 20: both prefill (1 block each), grow
    to 2 blocks each at 17 tokens; at 33 tokens r1 needs a third block, none is free, so r2
    (admitted last) is preempted and recomputed later: exactly 1 preemption, both finish."""
    r = simulate(ToySteps(blocks=4), Traffic(16, 20, concurrency=2), 2)
    assert r.preemptions == 1
    assert r.requests == 2 and r.finished
    assert r.output_tokens == 40


def test_sim_refuses_a_request_larger_than_the_cache():
    from solver.errors import InfeasibleError
    with pytest.raises(InfeasibleError, match="needs 3 KV blocks; the replica has 2"):
        simulate(ToySteps(blocks=2), Traffic(30, 10, concurrency=1), 1)


def test_steady_state_fixed_point():
    """lambda 10/s, p 100, o 11, budget 100: B = 10 lambda ITL, tau = 100 lambda ITL, chunk
    100, share = lambda ITL; ITL = D(B) + share (F(100) - W) = 0.010 + 0.010 lambda ITL
    + 0.009 lambda ITL -> ITL = 0.010 / (1 - 0.019 x 10) = 0.0123457; B = 1.23457.
    Chunk step S = D(B) + 0.009 = 0.0202346, rho = 10 S = 0.202346.
    TTFT p50 = ITL/2 + S = 0.0264074 (rho < 0.5: no wait). TTFT p90 = 0.9 ITL
    + S/(2(1-rho)) ln(rho/0.1) + S = 0.0111111 + 0.0089399 + 0.0202346 = 0.0402856.
    ITL p90: share 0.123 > 0.1 -> S; ITL p50: D(B) = 0.0112346."""
    st = steady_state(ToySteps(budget=1000), Traffic(100, 11, rate_per_s=10.0))
    assert st.stable
    assert st.itl_mean_s == pytest.approx(0.010 / 0.81)
    assert st.running == pytest.approx(1.2345679)
    assert st.ttft_q_s(50) == pytest.approx(0.0264074, rel=1e-5)
    assert st.ttft_q_s(90) == pytest.approx(0.0402856, rel=1e-5)
    assert st.itl_q_s(90) == pytest.approx(0.0202346, rel=1e-5)
    assert st.itl_q_s(50) == pytest.approx(0.0112346, rel=1e-5)


def test_max_stable_rate_by_hand():
    """The prefill server saturates (rho = 1) first: lambda (0.019 + 0.001 B) = 1 with
    B = 0.1 lambda / (1 - 0.019 lambda) gives 0.01 lambda = 1 - 0.019 lambda, lambda = 1/0.029
    = 34.48 requests/s."""
    rate, why = max_stable_rate(ToySteps(budget=1000, max_seqs=100), Traffic(100, 11, rate_per_s=1.0))
    assert rate == pytest.approx(1 / 0.029, rel=2e-3)
    assert why == "token_budget"


def test_max_rate_under_tpot_target():
    """TPOT (mean ITL) <= 12 ms: 0.010 / (1 - 0.019 lambda) <= 0.012 -> lambda <= 8.77/s."""
    res = max_rate_under_slo(ToySteps(budget=1000), Traffic(100, 11, rate_per_s=1.0), SLO(None, 12.0))
    assert res.rate_per_s == pytest.approx((1 - 0.010 / 0.012) / 0.019, rel=0.011)
    assert res.limit == "tpot"


def test_unreachable_target_gives_zero_rate_and_floor():
    """A lone request decodes in D(1) = 11 ms: a 10 ms TPOT target is out of reach."""
    res = max_rate_under_slo(ToySteps(budget=1000), Traffic(100, 11, rate_per_s=1.0), SLO(None, 10.0))
    assert res.rate_per_s == 0 and res.limit == "tpot"
    assert res.best_tpot_ms == pytest.approx(11.0)


@pytest.mark.parametrize("kwargs, field", [
    (dict(concurrency=0), "--concurrency"), (dict(rate_per_s=-1.0), "--request-rate"),
    (dict(rate_per_s=math.inf), "--request-rate"), (dict(), "--concurrency/--request-rate"),
])
def test_bad_traffic(kwargs, field):
    with pytest.raises(InputError) as e:
        Traffic(100, 10, **kwargs)
    assert e.value.field == field


@pytest.mark.parametrize("kwargs, field", [(dict(ttft_ms=0), "--ttft-ms"), (dict(tpot_ms=-5), "--tpot-ms"),
                                           (dict(tpot_ms=50, percentile=100), "--percentile"),
                                           (dict(), "--ttft-ms/--tpot-ms")])
def test_bad_slo(kwargs, field):
    with pytest.raises(InputError) as e:
        SLO(**kwargs)
    assert e.value.field == field
