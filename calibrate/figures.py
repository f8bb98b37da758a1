"""PNG output of ``calibrate report``: checked before drawing, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

from calibrate.profile_io import check_writable_path
from solver.errors import InputError


def png_target(png: str, flag: str = "--png") -> str:
    """``png`` if its folder exists and is writable; else a one-line error (checked before drawing)."""
    folder = Path(png).parent
    if not folder.is_dir():
        raise InputError(png, flag, f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(png, flag, f"folder {folder} is not writable")
    check_writable_path(png)
    return png


def save(fig, png: str) -> None:
    """Write ``fig`` to a temp file beside ``png``, then rename: no half-written image."""
    tmp = Path(png).with_name(f".{Path(png).name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, png)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(png, "", f"cannot write ({e.strerror or e})") from None
