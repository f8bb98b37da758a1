"""Calibrated placement planner for LLM inference.

Data flows one way: ``solver.inputs`` (validated model / cluster / workload / profile)
-> ``solver.cost`` (pure functions) -> ``solver.plan`` (MILP + baselines + validator)
-> ``solver.report``. Nothing here imports torch.
"""

__version__ = "0.1.0"
