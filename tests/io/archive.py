"""Take a model file apart and put it back together, for tests that damage one piece."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np


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


def replace_array(src, dst, name: str, arr, **entry):
    """A copy of the model file ``src`` at ``dst`` whose array ``name`` holds ``arr``, its
    index entry (shape, dtype, checksum) made to match, so that only ``arr`` is wrong;
    ``entry`` sets more fields of the entry (``None`` removes one). Returns ``dst``."""
    doc, members_ = members(src)
    arr = np.asarray(arr)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    e = doc["arrays"][name]
    members_[e["file"]] = buf.getvalue()
    e.update(shape=list(arr.shape), dtype=arr.dtype.str,
             sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    for k, v in entry.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return write(dst, doc, members_)
