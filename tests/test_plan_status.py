"""What the planner may call ``optimal``: only what the MILP solver proved, and only over
exactly searched columns."""

import math

from solver.plan.milp import Column, PlanMILP

# The tail of a CBC log (pulp 2.x bundled CBC) on a 400-item knapsack stopped after 0.5 s:
# the true gap is 4.7e-6 but CBC prints it with two decimals.
TIME_LIMIT_LOG = """\
Cbc0010I After 2000 nodes, 9 on tree, -10067401 best solution, best possible -10067448 (0.48 seconds)
Cbc0005I Partial search - best objective -10067401 (best possible -10067448), took 44618 iterations
Result - Stopped on time limit

Objective value:                10067401.00000000
Upper bound:                    10067448.446
Gap:                            -0.00
Enumerated nodes:               48014
Total iterations:               44618
"""
OPTIMAL_LOG = "Result - Optimal solution found\n\nObjective value:                10067401.00000000\n"


def _knapsack() -> PlanMILP:
    """One column worth 10,067,401 tokens/s on the only GPU: the incumbent the log reports."""
    milp = PlanMILP([Column(10067401.0, 1.0, ((0, 1),))], [1], [1])
    milp.solve()
    return milp


def test_time_limit_with_gap_minus_zero_is_not_optimal():
    milp = _knapsack()
    bound, proven = milp._bound("cbc", 10067401.0, TIME_LIMIT_LOG)
    assert not proven
    assert bound == 10067448.446 + 0.0005  # widened by half the last printed digit
    sol = milp._solution("cbc", 0.5, TIME_LIMIT_LOG)
    assert sol.status == "feasible"
    assert sol.objective == 10067401.0
    assert math.isclose(sol.gap, 47.4465 / 10067401.0, rel_tol=1e-6)  # 4.713e-6, not 0


def test_lower_bound_line_of_a_minimisation():
    milp = PlanMILP([Column(1.0, 3.0, ((0, 1),))], [1], [1], objective="cost", min_tok_s=1.0)
    milp.solve()
    log = TIME_LIMIT_LOG.replace("Upper bound:                    10067448.446", "Lower bound:    2.5")
    assert milp._bound("cbc", 3.0, log) == (2.45, False)


def test_only_the_result_line_proves_optimality():
    milp = _knapsack()
    assert milp._bound("cbc", 10067401.0, OPTIMAL_LOG) == (10067401.0, True)
    assert milp._solution("cbc", 0.1, OPTIMAL_LOG).status == "optimal"
    # no result line and no bound line: the LP relaxation bounds it (10,067,401 here)
    assert milp._bound("cbc", 10067401.0, "Cbc0010I After 0 nodes\n") == (10067401.0, False)
