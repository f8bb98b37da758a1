"""Importers: turn other tools' output (nccl-tests logs, shared data sets) into our raw CSVs."""
