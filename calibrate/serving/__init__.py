"""Serving-engine constants fitted on measured end-to-end throughput (``calibrate fit-serving``)."""
