"""Fuzzing the model loader: whatever the bytes, ``load_model`` returns a valid model or
raises ``ModelFileError`` -- never another exception, never a hang."""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import time
import zipfile
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epynn_jax import layers, network
from epynn_jax.errors import ModelFileError
from epynn_jax.io import Model, load_model, save_checkpoint

# EPYNN_FUZZ_EXAMPLES=5000 fuzzes harder (the default keeps the suite fast).
FUZZ = settings(max_examples=int(os.environ.get("EPYNN_FUZZ_EXAMPLES", 40)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TIME_LIMIT_S = 5.0

_DIR = Path(tempfile.mkdtemp(prefix="epynn_fuzz_"))


def _make_valid() -> bytes:
    net = network.build([layers.Dropout(0.1), layers.Dense(3, "relu"),
                         layers.Dense(2, "softmax")], (4,))
    params = network.init(net, jax.random.key(0))
    opt = optax.adam(1e-2)
    path = save_checkpoint(_DIR / "valid.epynn", net, params, opt_state=opt.init(params),
                           key=jax.random.key(3), epoch=2,
                           history={"accuracy": {"dtrain": [0.5, 0.75]}}, metadata={"a": 1})
    return path.read_bytes()


VALID = _make_valid()
with zipfile.ZipFile(io.BytesIO(VALID)) as _zf:
    MEMBERS = [(n, _zf.read(n)) for n in _zf.namelist()]
DOC = json.loads(dict(MEMBERS)["model.json"])


def _outcome(data: bytes) -> Model | ModelFileError:
    """Load ``data``; fail the test on any exception other than ModelFileError or a slow load."""
    path = _DIR / "case.epynn"
    path.write_bytes(data)
    start = time.perf_counter()
    try:
        out = load_model(path)
    except ModelFileError as err:
        out = err
    assert time.perf_counter() - start < TIME_LIMIT_S
    if isinstance(out, Model):  # whatever loads must be a consistent model
        for layer, p in zip(out.net.layers, out.params):
            shapes = layer.param_shapes()
            assert {k: tuple(v.shape) for k, v in p.items()} == shapes
            assert all(bool(np.all(np.isfinite(np.asarray(v)))) for v in p.values())
    return out


def _zip(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def test_valid_file_loads():
    assert isinstance(_outcome(VALID), Model)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)),
                min_size=1, max_size=8))
def test_random_byte_flips(flips):
    data = bytearray(VALID)
    for pos, xor in flips:
        data[pos] ^= xor
    _outcome(bytes(data))


@FUZZ
@given(st.integers(0, len(VALID) - 1))
def test_truncated_files_are_rejected(n):
    assert isinstance(_outcome(VALID[:n]), ModelFileError)


@FUZZ
@given(st.integers(0, len(MEMBERS) - 1), st.data())
def test_flips_inside_members_with_valid_crc(index, data):
    """Flips inside one member, re-zipped (so the zip CRC does not catch them)."""
    name, content = MEMBERS[index]
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(len(content) - 1, 0)),
                                         st.integers(1, 255)), min_size=1, max_size=6))
    mutated = bytearray(content)
    for pos, xor in flips:
        if mutated:
            mutated[pos] ^= xor
    members = [(n, bytes(mutated) if n == name else c) for n, c in MEMBERS]
    _outcome(_zip(members))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=12) | st.sampled_from(["epynn_jax.layers.dense:Dense", "__tuple__",
                                              "epynn_jax.layers.base:Layer", "<f4", "|O",
                                              "arrays/0.npy", "params/1/W"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["__tuple__", "__float__", "__dataclass__", "fields",
                                       "class", "units", "file", "shape", "dtype"])
                      | st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


PATHS = list(_paths(DOC))


@FUZZ
@given(st.sampled_from(PATHS), JSON)
def test_structural_json_mutations(path, value):
    doc = json.loads(json.dumps(DOC))
    if path:
        target = doc
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
    else:
        doc = value
    members = [(n, json.dumps(doc).encode() if n == "model.json" else c) for n, c in MEMBERS]
    _outcome(_zip(members))


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    assert isinstance(_outcome(data), ModelFileError)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["model.json", "arrays/0.npy", "x", "a/b.npy"]),
                          st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode())),
                max_size=4))
def test_random_zips(members):
    names = [n for n, _ in members]
    if len(names) == len(set(names)):
        assert isinstance(_outcome(_zip(members)), ModelFileError)


def _npy(arr, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


@pytest.mark.parametrize("payload", [
    _npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
    pickle.dumps(np.ones((4, 3), np.float32)),
    _npy(np.ones((4, 3), np.float64)),
    _npy(np.ones((3, 4), np.float32)),
    _npy(np.ones((4, 3), np.float32), allow_pickle=False)[:-4],
    _npy(np.array(["abc"] * 12).reshape(4, 3)),
])
def test_foreign_npy_members(payload):
    file = DOC["arrays"]["params/1/W"]["file"]
    members = [(n, payload if n == file else c) for n, c in MEMBERS]
    assert isinstance(_outcome(_zip(members)), ModelFileError)


def test_pickle_file_is_not_unpickled():
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    assert isinstance(_outcome(pickle.dumps(Boom())), ModelFileError)
