"""Raw files are never overwritten.

Imported and converted raw CSVs are named by their content (``<stem>_<sha256[:10]>.csv``):
two logs that share a file name land in two files, importing the same log twice reuses
the one file. A path the user names (``--raw-out``) is refused when it exists, unless
``--force``. Every write is atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from calibrate.profile_io import atomic_write_text
from solver.errors import InputError

HASH_CHARS = 10


def content_path(folder: str | Path, stem: str, text: str, suffix: str = ".csv") -> Path:
    """``folder/<stem>_<first HASH_CHARS hex of sha256(text)><suffix>``."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
    return Path(folder) / f"{stem}_{digest}{suffix}"


def store(folder: str | Path, stem: str, text: str, suffix: str = ".csv") -> Path:
    """Write ``text`` under its content name (unless that file already holds it); the path."""
    path = content_path(folder, stem, text, suffix)
    if path.exists():
        if path.read_text() == text:
            return path
        raise InputError(str(path), "", "exists with other content under the same content hash; not overwritten")
    atomic_write_text(path, text)
    return path


def refuse_existing(path: str | Path, force: bool, flag: str = "--force") -> None:
    """One-line error when ``path`` exists and ``force`` is not set (checked before work starts)."""
    if Path(path).exists() and not force:
        raise InputError(str(path), "", f"exists; raw data is never overwritten (pass {flag} to replace it)")
