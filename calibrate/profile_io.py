"""Read, merge and atomically write profile files.

Writers replace only the sections they own (``collectives``, ``network``, ``memory``,
``compute``, ``serving``) and keep the rest; the result is validated with the solver's own
loader before ``os.replace`` puts it in place, so a bad write never leaves a broken file.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

from solver.cli_common import atomic_write_text, check_writable_path  # noqa: F401 (shared writer)
from solver.errors import InputError
from solver.inputs.fields import load_json
from solver.inputs.profile import SCHEMA_VERSION, parse_profile


def read_profile_dict(path: str | Path) -> dict | None:
    p = Path(path)
    check_writable_path(p)
    if not p.exists():
        return None
    data = load_json(p)
    if not isinstance(data, dict):
        raise InputError(str(p), "", f"must be a JSON object (a profile), got {type(data).__name__}")
    return data


def write_profile(path: str | Path, data: dict) -> None:
    """Validate ``data`` as a profile, then write it atomically (sorted keys stay stable
    only inside sections; ``schema_version`` first for humans)."""
    parse_profile(data, str(path))  # raises InputError, nothing written
    ordered = {"schema_version": data.get("schema_version", SCHEMA_VERSION)}
    ordered.update({k: v for k, v in data.items() if k != "schema_version"})
    atomic_write_text(path, dumps(ordered))


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][-0-9.eE+]*(?:,\s*-?[0-9][-0-9.eE+]*)*)\s*\]")


def dumps(data: dict) -> str:
    """JSON with 2-space indents, but each list of plain numbers on one line (op tables and
    collective tables stay readable and small)."""
    text = json.dumps(data, indent=2)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def merge_sections(base: dict | None, update: dict, sections: tuple[str, ...]) -> dict:
    """``base`` with ``sections`` taken from ``update``; other sections of ``base`` kept.

    ``collectives`` merge by key (collective, ranks, scope): a new fit replaces the old one
    for the same key, others stay. ``provenance`` keeps a per-section record.
    """
    out = dict(base or {})
    for sec in sections:
        if sec not in update:
            continue
        if sec == "collectives":
            key = lambda c: (c["collective"], c["ranks"], c["scope"])  # noqa: E731
            merged = {key(c): c for c in out.get("collectives", [])}
            merged.update({key(c): c for c in update["collectives"]})
            out["collectives"] = sorted(merged.values(), key=key)
        elif isinstance(update[sec], dict) and isinstance(out.get(sec), dict):
            out[sec] = {**out[sec], **update[sec]}
        else:
            out[sec] = update[sec]
    prov = dict(out.get("provenance", {}))
    for sec in sections:
        if sec in update and "provenance" in update:
            prov.setdefault("sections", {})[sec] = update["provenance"]
    if prov:
        out["provenance"] = prov
    out.setdefault("schema_version", SCHEMA_VERSION)
    return out


def command_line(prog: str = "calibrate") -> str:
    """The command that is running, shell-quoted, for a profile's provenance."""
    return prog + " " + " ".join(shlex.quote(a) for a in sys.argv[1:])
