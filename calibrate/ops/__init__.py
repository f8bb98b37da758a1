"""Op-level calibration: the runtime's per-step overhead fitted on measured latencies
(``overhead``) and op tables fitted from ``scripts/profile_ops.py`` sweeps (``tables``)."""
