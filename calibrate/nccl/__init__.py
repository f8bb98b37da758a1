"""Collective (NCCL / gloo) measurements: the torch sweep, its raw CSV schema, the
latency-bandwidth fits and the profile's ``collectives`` section."""
