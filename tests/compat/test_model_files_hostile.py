"""The facade's ``read_model`` on damaged and hostile files: only ``ModelFileError``, fast,
small.

Every case is a file built from a valid facade file (a Dense model, one with a
vocabulary, one with custom NumPy layers) by truncating it, flipping bytes,
swapping, duplicating or renaming members, compressing members into zip
bombs, or editing ``model.json`` (deep nesting, huge numbers, wrong types,
NaN/transposed/scalar/int64/complex weights, unknown classes, a broken facade
section). All cases run in ONE subprocess (``python -m`` this module), which
reports for each case the exception, the time and the growth of the peak
resident memory; the tests then check each case from that report.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = 5.0
MEMORY_LIMIT = 2**30
SEC = "epynn_jax.compat"

CASES: dict[str, Callable[[dict], bytes]] = {}
MAY_LOAD: set[str] = set()  # damage that leaves a valid file (a zip timestamp): loading is fine


def case(name: str, may_load: bool = False):
    def register(fn):
        assert name not in CASES, name
        CASES[name] = fn
        if may_load:
            MAY_LOAD.add(name)
        return fn
    return register


# -- the valid files ---------------------------------------------------------------------------


def make_bases(tmp: Path) -> dict:
    """Valid facade files (bytes), their members and their model.json, by kind."""
    from epynn_jax.compat import set_quiet
    from epynn_jax.compat.commons.maths import relu, softmax
    from epynn_jax.compat.dense.models import Dense
    from epynn_jax.compat.embedding.models import Embedding
    from epynn_jax.compat.flatten.models import Flatten
    from epynn_jax.compat.network.models import EpyNN
    from tests.compat.numpy_layers import Scale

    set_quiet(True)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4))
    Y = (X[:, 0] > 0).astype(int)
    words = np.array([list("ACGT"), list("GGCA"), list("TTAC"), list("CAGT")] * 3)
    models = {
        "dense": [Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=5), Dense(3, relu),
                  Dense(2, softmax)],
        "vocab": [Embedding(X_data=words, Y_data=[0, 1, 0, 1] * 3, X_encode=True,
                            Y_encode=True), Flatten(), Dense(2, softmax)],
        "custom": [Embedding(X_data=X, Y_data=Y, Y_encode=True), Dense(4, relu), Scale(),
                   Dense(2, softmax)],
    }
    out = {}
    for kind, layers in models.items():
        model = EpyNN(layers, name=kind, verbose=False)
        model.initialize(loss="MSE", seed=1)
        model.write(str(tmp / f"{kind}.epynn"))
        data = (tmp / f"{kind}.epynn").read_bytes()
        members = unzip(data)
        out[kind] = {"bytes": data, "members": members,
                     "doc": json.loads(dict(members)["model.json"])}
    return out


def unzip(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(n, zf.read(n)) for n in zf.namelist()]


def rezip(members, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def with_doc(b: dict, kind: str, edit: Callable[[dict], object]) -> bytes:
    doc = copy.deepcopy(b[kind]["doc"])
    edit(doc)
    return rezip([(n, json.dumps(doc).encode() if n == "model.json" else d)
                  for n, d in b[kind]["members"]])


def with_text(b: dict, kind: str, text: str) -> bytes:
    return rezip([(n, text.encode() if n == "model.json" else d)
                  for n, d in b[kind]["members"]])


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def with_array(b: dict, kind: str, name: str, arr, index: bool = True,
               raw: bytes | None = None) -> bytes:
    """Replace array ``name`` (e.g. 'params/1/W') by ``arr``; ``index`` also updates its
    shape, dtype and checksum in model.json, so that only the architecture can object."""
    doc = copy.deepcopy(b[kind]["doc"])
    entry = doc["arrays"][name]
    data = raw if raw is not None else npy(arr)
    if index:
        entry["shape"], entry["dtype"] = list(np.shape(arr)), np.asarray(arr).dtype.str
        if "sha256" in entry:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
    return rezip([(n, json.dumps(doc).encode() if n == "model.json"
                   else data if n == entry["file"] else d) for n, d in b[kind]["members"]])


def section(doc: dict) -> dict:
    return doc["extras"][SEC]


def nested(depth: int, leaf=0):
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


# -- raw zips for bombs ----------------------------------------------------------------------


def raw_zip(members) -> bytes:
    """A zip from ``(name, payload, method, crc, size)`` with sizes as declared (no checks)."""
    out, central = io.BytesIO(), []
    for name, payload, method, crc, size in members:
        off, n = out.tell(), name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc,
                              len(payload), size, len(n), 0) + n + payload)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0,
                                   crc, len(payload), size, len(n), 0, 0, 0, 0, 0, off) + n)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                          out.tell() - start, start, 0))
    return out.getvalue()


def deflate_bomb(head: bytes, zeros_mib: int) -> bytes:
    """Raw deflate of ``head`` + ``zeros_mib`` MiB of zeros, about 1 kB per MiB: one
    full-flushed block of compressed zeros repeated (a full flush resets the window)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(2**20)) + c.flush(zlib.Z_FULL_FLUSH)
    return start + block * zeros_mib + c.flush(zlib.Z_FINISH)


def big_dense_doc(b: dict, n: int) -> dict:
    """The Dense base's model.json made for an input of ``n`` features and a first Dense of
    ``n`` units, so that params/1/W is declared (n, n) float64."""
    doc = copy.deepcopy(b["dense"]["doc"])
    doc["input_shape"] = [n]
    doc["layers"][0]["fields"]["input_shape"] = {"__tuple__": [n]}
    doc["layers"][1]["fields"]["input_shape"] = {"__tuple__": [n]}
    doc["layers"][1]["fields"]["units"] = n
    doc["layers"][2]["fields"]["input_shape"] = {"__tuple__": [n]}
    section(doc)["layers"][1]["kwargs"]["units"] = n
    for name, shape in (("params/1/W", [n, n]), ("params/1/b", [1, n]),
                        ("params/2/W", [n, 2])):
        doc["arrays"][name]["shape"] = shape
        doc["arrays"][name]["dtype"] = "<f8"
    return doc


def bomb_file(b: dict, n: int, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    doc = big_dense_doc(b, n)
    files = {name: e["file"] for name, e in doc["arrays"].items()}
    hdr = io.BytesIO()  # the .npy header of a (n, n) float64 array; zeros follow
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False,
                                               "shape": (n, n)})
    head = hdr.getvalue()
    size = len(head) + n * n * 8
    payload = deflate_bomb(head, n * n * 8 // 2**20) if method else head + bytes(1024)
    members = [("model.json", json.dumps(doc).encode(), 0, 0, None)]
    for name, shape in (("params/1/b", (1, n)), ("params/2/W", (n, 2)),
                        ("params/2/b", (1, 2))):
        data = npy(np.zeros(shape))
        members.append((files[name], data, 0, 0, None))
    members.append((files["params/1/W"], payload, method, 0, size))
    return raw_zip([(nm, d, m, zlib.crc32(d) if s is None else c, len(d) if s is None else s)
                    for nm, d, m, c, s in members])


# -- the cases ------------------------------------------------------------------------------

# truncations at many offsets
for _frac in range(1, 31):
    case(f"truncated/{_frac:02d}")(lambda b, f=_frac: b["dense"]["bytes"][
        : len(b["dense"]["bytes"]) * f // 31])
for _j in range(10):  # a slice cut out: every offset after it is wrong
    case(f"cut/{_j:02d}")(lambda b, j=_j: (lambda d, at: d[:at] + d[at + 16:])(
        b["vocab"]["bytes"], len(b["vocab"]["bytes"]) * (2 * j + 1) // 21))
case("truncated/last-byte")(lambda b: b["dense"]["bytes"][:-1])
case("truncated/empty")(lambda b: b"")


def _data_offsets(data: bytes) -> list[int]:
    """Offsets inside member data (a flip there breaks the member's CRC-32)."""
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            out += [start + j * info.compress_size // 3 for j in range(3)]
    return out


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


for _j in range(15):
    case(f"flip/member-data/{_j:02d}")(
        lambda b, j=_j: _flip(b["custom"]["bytes"], _data_offsets(b["custom"]["bytes"])[j]))
for _j in range(12):
    # anywhere in the file: a flipped timestamp or version field leaves a valid file
    case(f"flip/anywhere/{_j:02d}", may_load=True)(
        lambda b, j=_j: _flip(b["dense"]["bytes"], (j * 7919) % len(b["dense"]["bytes"])))

# members
case("members/no-model-json")(lambda b: rezip([m for m in b["dense"]["members"]
                                               if m[0] != "model.json"]))
case("members/duplicate-model-json")(lambda b: rezip(b["dense"]["members"]
                                                     + b["dense"]["members"][:1]))
case("members/duplicate-array")(lambda b: rezip(b["dense"]["members"]
                                                + b["dense"]["members"][-1:]))
case("members/renamed-array")(lambda b: rezip(
    [(n.replace("arrays/0.npy", "arrays/9.npy"), d) for n, d in b["dense"]["members"]]))
case("members/swapped-arrays")(lambda b: rezip(
    [(n, dict(b["dense"]["members"])["arrays/1.npy"] if n == "arrays/0.npy" else
      dict(b["dense"]["members"])["arrays/0.npy"] if n == "arrays/1.npy" else d)
     for n, d in b["dense"]["members"]]))
case("members/extra-member")(lambda b: rezip(b["dense"]["members"] + [("evil.py", b"x=1")]))
case("members/missing-array")(lambda b: rezip(b["dense"]["members"][:-1]))
case("members/deflated")(lambda b: rezip(b["dense"]["members"], zipfile.ZIP_DEFLATED))
case("members/model-json-is-a-directory")(lambda b: rezip(
    [("model.json/", b"")] + b["dense"]["members"][1:]))
case("members/npy-is-pickle")(lambda b: with_array(
    b, "dense", "params/1/W", None, index=False,
    raw=b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (4, 3), }"
        + b" " * 50 + b"\n" + pickle.dumps(np.zeros((4, 3), dtype=object))))

# zip bombs and huge declarations
case("bomb/deflated-2GiB-weights")(lambda b: bomb_file(b, 16384))
case("bomb/deflated-model-json")(lambda b: raw_zip(
    [("model.json", deflate_bomb(b"{" + b" " * 100, 15), zipfile.ZIP_DEFLATED, 0,
      101 + 15 * 2**20)] + [(n, d, 0, zlib.crc32(d), len(d))
                            for n, d in b["dense"]["members"][1:]]))
case("bomb/stored-4GiB-declared")(lambda b: bomb_file(b, 23170, method=0))
case("bomb/old-format-deflated")(lambda b: raw_zip(
    [("model.json", zlib.compress(b'{"format": "epynn_jax.compat.model", "version": 1}')[2:-4],
      zipfile.ZIP_DEFLATED, zlib.crc32(b'{"format": "epynn_jax.compat.model", "version": 1}'),
      50), ("layers/1/W.npy", deflate_bomb(b"", 2048), zipfile.ZIP_DEFLATED, 0, 2**31)]))
case("huge/units-10**12")(lambda b: with_doc(b, "dense", lambda d: (
    d["layers"][1]["fields"].__setitem__("units", 10**12),
    section(d)["layers"][1]["kwargs"].__setitem__("units", 10**12))))
case("huge/declared-7TiB-array")(lambda b: (lambda doc: rezip(
    [(n, json.dumps(doc).encode() if n == "model.json" else d)
     for n, d in b["dense"]["members"]]))(big_dense_doc(b, 10**6)))
case("huge/facade-units-only")(lambda b: with_doc(
    b, "dense", lambda d: section(d)["layers"][1]["kwargs"].__setitem__("units", 10**12)))
case("huge/int-4000-digits")(lambda b: with_text(
    b, "dense", json.dumps(b["dense"]["doc"]).replace('"units": 3', '"units": ' + "9" * 4000)))
case("huge/int-5000-digits")(lambda b: with_text(
    b, "dense", json.dumps(b["dense"]["doc"]).replace('"units": 3', '"units": ' + "9" * 5000)))
case("huge/float-units")(lambda b: with_doc(
    b, "dense", lambda d: d["layers"][1]["fields"].__setitem__("units", 1e308)))
case("huge/extras-int-2**70")(lambda b: with_doc(
    b, "dense", lambda d: section(d).__setitem__("epochs", 2**70)))
case("huge/epochs-2**40")(lambda b: with_doc(
    b, "dense", lambda d: section(d).__setitem__("epochs", 2**40)))
case("huge/input-shape")(lambda b: with_doc(
    b, "dense", lambda d: d.__setitem__("input_shape", [10**15])))

# weights
_W = "params/1/W"
case("weights/nan")(lambda b: with_array(b, "dense", _W, np.full((4, 3), np.nan)))
case("weights/inf")(lambda b: with_array(b, "dense", _W, np.full((4, 3), -np.inf)))
case("weights/transposed")(lambda b: with_array(b, "dense", _W, np.ones((3, 4))))
case("weights/transposed-index-kept")(lambda b: with_array(b, "dense", _W, np.ones((3, 4)),
                                                           index=False))
case("weights/scalar")(lambda b: with_array(b, "dense", _W, np.float64(1.0)))
case("weights/int64")(lambda b: with_array(b, "dense", _W, np.ones((4, 3), np.int64)))
case("weights/complex")(lambda b: with_array(b, "dense", _W, np.ones((4, 3), np.complex128)))
case("weights/bool")(lambda b: with_array(b, "dense", _W, np.ones((4, 3), bool)))
case("weights/big-endian")(lambda b: with_array(b, "dense", _W, np.ones((4, 3), ">f8")))
case("weights/fortran")(lambda b: with_array(b, "dense", _W, np.asfortranarray(np.ones((4, 3)))))
case("weights/nan-custom-layer")(lambda b: with_array(b, "custom", "params/2/s",
                                                      np.full((1, 4), np.nan)))
case("weights/custom-wrong-shape")(lambda b: with_array(b, "custom", "params/2/s",
                                                        np.ones((4, 1))))
case("weights/custom-int64")(lambda b: with_array(b, "custom", "params/2/s",
                                                  np.ones((1, 4), np.int64)))
case("weights/truncated-data")(lambda b: with_array(b, "dense", _W, None, index=False,
                                                    raw=npy(np.ones((4, 3)))[:-8]))
case("weights/trailing-bytes")(lambda b: with_array(b, "dense", _W, None, index=False,
                                                    raw=npy(np.ones((4, 3))) + b"\0" * 8))
case("weights/not-npy")(lambda b: with_array(b, "dense", _W, None, index=False,
                                             raw=b"hello world" * 20))

# hostile model.json (the core's part)
case("json/not-json")(lambda b: with_text(b, "dense", "{not json"))
case("json/deep-nesting-10000")(lambda b: with_text(b, "dense", "[" * 10000 + "]" * 10000))
case("json/list")(lambda b: with_text(b, "dense", "[1, 2]"))
case("json/not-utf8")(lambda b: rezip([("model.json", b"\xff\xfe{}")]
                                      + b["dense"]["members"][1:]))
case("json/version-99")(lambda b: with_doc(b, "dense", lambda d: d.__setitem__("version", 99)))
case("json/format-other")(lambda b: with_doc(b, "dense", lambda d: d.__setitem__("format", "x")))
case("json/layers-not-list")(lambda b: with_doc(b, "dense", lambda d: d.__setitem__("layers", 5)))
case("json/arrays-missing")(lambda b: with_doc(b, "dense", lambda d: d.pop("arrays")))
case("json/unknown-layer-class")(lambda b: with_doc(b, "dense", lambda d: d["layers"][1]
                                                    .__setitem__("class", "os:system")))
case("json/unknown-functional-class")(lambda b: with_doc(
    b, "dense", lambda d: d["layers"][1].__setitem__("class", "epynn_jax.layers.dense:Nope")))
case("json/facade-module-as-layer")(lambda b: with_doc(
    b, "dense", lambda d: d["layers"][1].__setitem__(
        "class", "epynn_jax.compat._builtin:BuiltinLayer")))
case("json/hpars-class-swapped")(lambda b: with_doc(
    b, "dense", lambda d: d["layers"][1]["fields"]["hpars"].__setitem__(
        "__dataclass__", "builtins:dict")))
case("json/unknown-field")(lambda b: with_doc(b, "dense", lambda d: d["layers"][1]["fields"]
                                              .__setitem__("evil", 1)))
case("json/units-string")(lambda b: with_doc(b, "dense", lambda d: d["layers"][1]["fields"]
                                             .__setitem__("units", "3")))
case("json/activation-unknown")(lambda b: with_doc(b, "dense", lambda d: d["layers"][1]["fields"]
                                                   .__setitem__("activate", "rm -rf")))
case("json/input-shape-mismatch")(lambda b: with_doc(
    b, "dense", lambda d: d["layers"][2]["fields"].__setitem__("input_shape",
                                                               {"__tuple__": [4]})))
case("json/index-dtype-object")(lambda b: with_doc(b, "dense", lambda d: d["arrays"][_W]
                                                   .__setitem__("dtype", "|O")))
case("json/index-file-twice")(lambda b: with_doc(b, "dense", lambda d: d["arrays"]["params/1/b"]
                                                 .__setitem__("file", "arrays/0.npy")))
case("json/index-negative-shape")(lambda b: with_doc(b, "dense", lambda d: d["arrays"][_W]
                                                     .__setitem__("shape", [-4, -3])))
case("json/history-wrong-type")(lambda b: with_doc(b, "dense",
                                                   lambda d: d.__setitem__("history", [1])))
case("json/history-strings")(lambda b: with_doc(b, "dense", lambda d: d.__setitem__(
    "history", {"accuracy": {"dtrain": ["a"]}, "MSE": {"dtrain": []}})))
case("json/slot-from-another-module")(lambda b: with_doc(
    b, "custom", lambda d: d["layers"][2].__setitem__("class", "evil.mod:CustomLayerSlot")))

# the extras section (the core's limits)
case("extras/not-object")(lambda b: with_doc(b, "dense", lambda d: d.__setitem__("extras", [1])))
case("extras/deep-nesting-100")(lambda b: with_doc(
    b, "dense", lambda d: section(d).__setitem__("deep", nested(100))))
case("extras/deep-nesting-900")(lambda b: with_doc(
    b, "dense", lambda d: d["extras"].__setitem__("deep", nested(900))))
case("extras/nan")(lambda b: with_text(b, "dense", json.dumps(b["dense"]["doc"]).replace(
    '"epochs": 0', '"epochs": NaN')))
case("extras/infinity-lrate")(lambda b: with_doc(
    b, "dense", lambda d: section(d)["layers"][1].__setitem__("lrate", [float("inf")])))
case("extras/long-string")(lambda b: with_doc(
    b, "dense", lambda d: section(d).__setitem__("uname", "x" * (2**20 + 1))))

# the facade's section (its own fields)
_FACADE_EDITS = {
    "missing": lambda d: d.__setitem__("extras", None),
    "not-object": lambda d: d["extras"].__setitem__(SEC, [1]),
    "version-99": lambda d: section(d).__setitem__("version", 99),
    "version-string": lambda d: section(d).__setitem__("version", "1"),
    "layers-missing": lambda d: section(d).pop("layers"),
    "layers-count": lambda d: section(d)["layers"].pop(),
    "layer-not-object": lambda d: section(d)["layers"].__setitem__(1, 7),
    "kind-unknown": lambda d: section(d)["layers"][1].__setitem__("kind", "evil"),
    "kind-int": lambda d: section(d)["layers"][1].__setitem__("kind", 5),
    "embedding-not-first": lambda d: section(d)["layers"][0].__setitem__("kind", "builtin"),
    "two-embeddings": lambda d: section(d)["layers"][1].__setitem__("kind", "embedding"),
    "class-unknown": lambda d: section(d)["layers"][1].__setitem__("class", "Nope"),
    "class-embedding": lambda d: section(d)["layers"][1].__setitem__("class", "Embedding"),
    "class-other-builtin": lambda d: section(d)["layers"][1].__setitem__("class", "Flatten"),
    "kwargs-unknown": lambda d: section(d)["layers"][1]["kwargs"].__setitem__("evil", 1),
    "kwargs-se_hPars": lambda d: section(d)["layers"][1]["kwargs"].__setitem__("se_hPars", {}),
    "kwargs-activation-unknown": lambda d: section(d)["layers"][1]["kwargs"].__setitem__(
        "activate", "evil"),
    "kwargs-activation-mismatch": lambda d: section(d)["layers"][1]["kwargs"].__setitem__(
        "activate", "tanh"),
    "kwargs-activation-list": lambda d: section(d)["layers"][1]["kwargs"].__setitem__(
        "activate", [1]),
    "kwargs-units-negative": lambda d: section(d)["layers"][1]["kwargs"].__setitem__(
        "units", -3),
    "kwargs-not-object": lambda d: section(d)["layers"][1].__setitem__("kwargs", [1]),
    "kwargs-bad-tag": lambda d: section(d)["layers"][1]["kwargs"].__setitem__(
        "units", {"__float__": "evil"}),
    "lrate-strings": lambda d: section(d)["layers"][1].__setitem__("lrate", ["a"]),
    "lrate-bools": lambda d: section(d)["layers"][1].__setitem__("lrate", [True]),
    "trainable-string": lambda d: section(d)["layers"][1].__setitem__("trainable", "yes"),
    "se_hPars-list": lambda d: section(d)["layers"][1].__setitem__("se_hPars", [1]),
    "se_hPars-nested": lambda d: section(d)["layers"][1].__setitem__("se_hPars", {"a": {}}),
    "se_dataset-missing-key": lambda d: section(d)["layers"][0]["se_dataset"].pop(
        "batch_size"),
    "se_dataset-wrong-type": lambda d: section(d)["layers"][0]["se_dataset"].__setitem__(
        "X_encode", "no"),
    "uname-int": lambda d: section(d).__setitem__("uname", 5),
    "uname-empty": lambda d: section(d).__setitem__("uname", ""),
    "seed-string": lambda d: section(d).__setitem__("seed", "1"),
    "epochs-negative": lambda d: section(d).__setitem__("epochs", -1),
    "epochs-float": lambda d: section(d).__setitem__("epochs", 1.5),
    "label-columns-zero": lambda d: section(d).__setitem__("label_columns", 0),
    "dsets-unknown": lambda d: section(d).__setitem__("dsets", ["evil"]),
    "dsets-repeated": lambda d: section(d).__setitem__("dsets", ["dtrain", "dtrain"]),
    "loss-unknown": lambda d: section(d).__setitem__("loss", "evil"),
    "loss-cce-without-softmax": lambda d: (section(d).__setitem__("loss", "CCE"),
                                           section(d).__setitem__("output", "sigmoid")),
    "history-unknown-metric": lambda d: d.__setitem__("history", {"evil": {"dtrain": []}}),
    "history-other-sets": lambda d: d.__setitem__("history", {"accuracy": {"dtest": []}}),
}
for _name, _edit in _FACADE_EDITS.items():
    case(f"facade/{_name}")(lambda b, e=_edit: with_doc(b, "dense", e))

_VOCAB_EDITS = {
    "vocabulary-bad-tag": lambda d: section(d)["layers"][0]["vocabulary"].__setitem__(
        0, ["evil", "A"]),
    "vocabulary-tag-mismatch": lambda d: section(d)["layers"][0]["vocabulary"].__setitem__(
        0, ["int", "A"]),
    "vocabulary-repeated": lambda d: section(d)["layers"][0]["vocabulary"].__setitem__(
        1, ["str", "A"]),
    "vocabulary-shorter": lambda d: section(d)["layers"][0]["vocabulary"].pop(),
    "vocabulary-not-list": lambda d: section(d)["layers"][0].__setitem__("vocabulary", "ACGT"),
    "vocabulary-pair-too-long": lambda d: section(d)["layers"][0]["vocabulary"].__setitem__(
        0, ["str", "A", 1]),
}
for _name, _edit in _VOCAB_EDITS.items():
    case(f"vocab/{_name}")(lambda b, e=_edit: with_doc(b, "vocab", e))

_CUSTOM_EDITS = {
    "class-not-imported": lambda d: _custom_path(d, "no_such_module_xyz:Scale"),
    "class-not-a-layer": lambda d: _custom_path(d, "builtins:dict"),
    "class-a-module-attribute": lambda d: _custom_path(d, "os:path"),
    "class-builtin-layer": lambda d: _custom_path(d, "epynn_jax.compat.dense.models:Dense"),
    "class-mismatch": lambda d: section(d)["layers"][2].__setitem__(
        "class", "tests.compat.numpy_layers:Take"),
    "class-bad-path": lambda d: _custom_path(d, "not a path"),
    "attrs-dunder": lambda d: section(d)["layers"][2]["attrs"].__setitem__("__class__", 1),
    "attrs-private": lambda d: section(d)["layers"][2]["attrs"].__setitem__("_fl", 1),
    "attrs-p": lambda d: section(d)["layers"][2]["attrs"].__setitem__("p", {}),
    "attrs-not-object": lambda d: section(d)["layers"][2].__setitem__("attrs", [1]),
    "kind-builtin": lambda d: section(d)["layers"][2].__setitem__("kind", "builtin"),
    "builtin-as-custom": lambda d: section(d)["layers"][1].__setitem__("kind", "custom"),
    "slot-params-repeated": lambda d: d["layers"][2]["fields"].__setitem__(
        "params", {"__tuple__": [{"__tuple__": ["s", {"__tuple__": [1, 4]}]}] * 2}),
    "slot-output-shape-negative": lambda d: d["layers"][2]["fields"].__setitem__(
        "output_sample_shape", {"__tuple__": [-4]}),
}


def _custom_path(doc: dict, path: str) -> None:
    section(doc)["layers"][2]["class"] = path
    doc["layers"][2]["fields"]["layer_class"] = path


for _name, _edit in _CUSTOM_EDITS.items():
    case(f"custom/{_name}")(lambda b, e=_edit: with_doc(b, "custom", e))

# other files
case("other/pickle")(lambda b: pickle.dumps({"model": [1, 2, 3]}))
case("other/pickle-protocol-0")(lambda b: pickle.dumps({"model": 1}, protocol=0))
case("other/random-bytes")(lambda b: np.random.default_rng(0).bytes(5000))
case("other/text")(lambda b: b"hello, I am a model file\n" * 10)
case("other/empty-zip")(lambda b: rezip([]))
case("other/first-facade-format")(lambda b: rezip(
    [("model.json", b'{"format": "epynn_jax.compat.model", "version": 1, "layers": []}'),
     ("layers/1/W.npy", npy(np.ones((4, 2))))], zipfile.ZIP_DEFLATED))
case("other/core-file-without-section")(lambda b: with_doc(
    b, "dense", lambda d: d.__setitem__("extras", None)))
case("other/zip-in-zip")(lambda b: rezip([("model.json", b["dense"]["bytes"])]))


# -- running the cases (in the subprocess) ---------------------------------------------------


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux); False when it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_all() -> dict:
    """Build every case, read it with the facade's read_model; report what happened."""
    import resource

    from epynn_jax.compat.commons.library import read_model
    from epynn_jax.errors import ModelFileError

    tmp = Path(tempfile.mkdtemp(prefix="epynn_hostile_"))
    bases = make_bases(tmp)
    for kind in bases:  # warm-up: the tracing caches of valid reads are not what we measure
        read_model(str(tmp / f"{kind}.epynn"))
    base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = {}
    path = tmp / "case.epynn"
    for name, build in CASES.items():
        path.write_bytes(build(bases))
        per_case = _reset_peak()
        before = _rss_kib("VmRSS")
        start = time.perf_counter()
        try:
            read_model(str(path))
            outcome = {"error": None}
        except ModelFileError as err:
            outcome = {"error": "ModelFileError", "type": type(err).__name__,
                       "message": str(err)}
        except BaseException as err:  # noqa: BLE001 - what we are looking for
            outcome = {"error": f"{type(err).__module__}.{type(err).__name__}",
                       "message": str(err)[:500]}
        outcome["seconds"] = time.perf_counter() - start
        peak = _rss_kib("VmHWM") if per_case else None
        outcome["growth_bytes"] = None if peak is None or before is None else \
            max(peak - before, 0) * 1024
        results[name] = outcome
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"cases": results, "peak_growth_bytes": max(peak - base_peak, 0) * 1024}


@pytest.fixture(scope="module")
def report() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EPYNN_JAX_QUIET": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.compat.test_model_files_hostile"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_there_are_at_least_100_cases_that_must_fail():
    assert len(set(CASES) - MAY_LOAD) >= 100


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file(report, name):
    out = report["cases"][name]
    assert out["seconds"] < TIME_LIMIT_S, out
    if out["growth_bytes"] is not None:
        assert out["growth_bytes"] < MEMORY_LIMIT, out
    if name in MAY_LOAD and out["error"] is None:
        return
    assert out["error"] == "ModelFileError", out
    assert out["message"] and "\n" not in out["message"], out


def test_memory_of_the_whole_run(report):
    assert report["peak_growth_bytes"] < MEMORY_LIMIT


def test_what_the_messages_say(report):
    """A few messages, read by a person: they name the problem."""
    msg = {k: v.get("message", "") for k, v in report["cases"].items()}
    assert "compressed" in msg["bomb/deflated-2GiB-weights"]
    assert "NaN or inf" in msg["weights/nan"]
    assert "architecture needs (4, 3)" in msg["weights/transposed"]
    assert "unsupported dtype" in msg["weights/complex"]
    assert "pickle" in msg["other/pickle"]
    assert "first epynn_jax.compat format" in msg["other/first-facade-format"]
    assert "not defined here" in msg["custom/class-not-imported"]
    assert "not a custom layer class" in msg["custom/class-builtin-layer"]
    assert "do not match" in msg["facade/kwargs-activation-mismatch"]
    assert "newer" in msg["facade/version-99"]


if __name__ == "__main__":
    print(json.dumps(run_all()))
