"""Online serving: latency and capacity of a replica under a request rate or concurrency.

- ``steps``: engine step times from the offline cost model (thin adapter);
- ``traffic``: the load (closed-loop concurrency or Poisson rate; fixed or histogram lengths);
- ``little``: steady state from Little's law (means, rough percentiles, max stable rate);
- ``simulate``: a step-level simulation of vLLM's scheduler (percentiles);
- ``slo``: latency targets and the most rate a replica serves within them;
- ``estimate``: the report ``solver estimate --online`` prints.
Definitions of TTFT, ITL and TPOT: docs/metrics.md, "Online serving".
"""
