"""Calibration: measure hardware (torch, optional) and write profiles.

``calibrate`` is the only writer of ``profiles/``; everything it writes is checked with the
same loader the solver uses (``solver.inputs.profile.parse_profile``) before the atomic rename.
Modules that need torch import it lazily so the CLI's non-measuring commands run without it.
"""
