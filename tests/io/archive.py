"""Take a model file apart and put it back together, for tests that damage one piece."""

from __future__ import annotations

import json
import zipfile


def members(path) -> tuple[dict, dict]:
    """``(model.json as a dict, {member name: bytes})`` of the archive at ``path``."""
    with zipfile.ZipFile(path) as zf:
        out = {n: zf.read(n) for n in zf.namelist()}
    return json.loads(out.pop("model.json")), out


def write(dst, doc: dict, members_: dict):
    """An archive at ``dst`` of ``doc`` (as model.json) and ``members_``; returns ``dst``."""
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("model.json", json.dumps(doc))
        for n, data in members_.items():
            zf.writestr(n, data)
    return dst
