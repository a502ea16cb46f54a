"""Model and checkpoint files: round trips, atomic writes, allow-listed imports, rejections."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
import tempfile
import textwrap
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epynn_jax import layers, network
from epynn_jax.errors import ModelFileError
from epynn_jax.io import checkpoint as ckpt
from epynn_jax.io import load_checkpoint, load_model, save_checkpoint, save_model
from epynn_jax.maths.activations import ActivationHPars

HP = ActivationHPars(ELU_alpha=0.5, softmax_temperature=2.0)


def _net():
    return network.build([
        layers.Embedding(vocabulary_size=3),
        layers.Flatten(),
        layers.Dropout(0.25, axis=(1,)),
        layers.Dense(4, "elu", hpars=HP),
        layers.Dense(3, "softmax", initialization="orthogonal", hpars=HP),
    ], (2, 3))


@pytest.fixture(scope="module")
def model():
    net = _net()
    return net, network.init(net, jax.random.key(7))


def _same_params(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_round_trip_restores_architecture_params_and_metadata(model, tmp_path):
    net, params = model
    history = {"accuracy": {"dtrain": [0.5, float("nan")]}}
    path = save_model(tmp_path / "m.epynn", net, params, metadata={"note": "hi", "n": [1, 2]},
                      history=history)
    m = load_model(path)
    assert m.net == net
    assert m.net.layers[3].hpars == HP and m.net.layers[2].axis == (1,)
    assert _same_params(m.params, params)
    assert m.metadata == {"note": "hi", "n": [1, 2]}
    acc = m.history["accuracy"]["dtrain"]
    assert acc[0] == 0.5 and np.isnan(acc[1])
    assert m.opt_state is None and m.key is None and m.epoch is None
    X = jax.random.uniform(jax.random.key(1), (5, 2, 3))
    np.testing.assert_array_equal(network.predict(m.net, m.params, X),
                                  network.predict(net, params, X))


def test_file_layout_is_json_plus_npy(model, tmp_path):
    net, params = model
    path = save_model(tmp_path / "m.epynn", net, params)
    with zipfile.ZipFile(path) as zf:
        doc = json.loads(zf.read("model.json"))
        assert doc["format"] == "epynn_jax.model" and doc["version"] == 1
        assert doc["layers"][3]["class"] == "epynn_jax.layers.dense:Dense"
        assert doc["layers"][3]["fields"]["hpars"]["__dataclass__"].endswith(":ActivationHPars")
        entry = doc["arrays"]["params/3/W"]
        assert entry["shape"] == [6, 4] and entry["dtype"] == "<f4"
        arr = np.load(io.BytesIO(zf.read(entry["file"])), allow_pickle=False)
    np.testing.assert_array_equal(arr, np.asarray(params[3]["W"]))


def test_float64_round_trip(x64, tmp_path):
    net = network.build([layers.Dense(2, "tanh")], (3,))
    params = network.init(net, jax.random.key(0))
    assert params[0]["W"].dtype == jnp.float64
    m = load_model(save_model(tmp_path / "m.epynn", net, params))
    assert _same_params(m.params, params)


def test_checkpoint_round_trip_with_optimizer_state_and_key(model, tmp_path):
    net, params = model
    opt = optax.adam(1e-3)
    state = jax.tree.map(lambda x: np.asarray(x) + 1, opt.init(params))  # non-trivial values
    key = jax.random.key(42)
    path = save_checkpoint(tmp_path / "c.epynn", net, params, opt_state=state, key=key, epoch=3,
                           history={"MSE": {"dtrain": [1.0, 0.5, 0.25]}})
    c = load_checkpoint(path, opt)
    assert c.epoch == 3 and c.history == {"MSE": {"dtrain": [1.0, 0.5, 0.25]}}
    assert jax.tree.structure(c.opt_state) == jax.tree.structure(state)
    assert _same_params(c.opt_state, state)
    np.testing.assert_array_equal(jax.random.key_data(c.key), jax.random.key_data(key))
    np.testing.assert_array_equal(jax.random.uniform(c.key, (3,)), jax.random.uniform(key, (3,)))
    raw = load_checkpoint(path)  # without an optimizer: the leaves
    assert len(raw.opt_state) == len(jax.tree.leaves(state))


def test_restore_with_another_optimizer_is_rejected(model, tmp_path):
    net, params = model
    path = save_checkpoint(tmp_path / "c.epynn", net, params,
                           opt_state=optax.adam(1e-3).init(params), key=jax.random.key(0), epoch=1)
    with pytest.raises(ModelFileError, match="another optimizer"):
        load_checkpoint(path, optax.sgd(0.1))


def test_load_checkpoint_of_a_plain_model_file_is_rejected(model, tmp_path):
    net, params = model
    path = save_model(tmp_path / "m.epynn", net, params)
    with pytest.raises(ModelFileError, match="not a checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("change, error, match", [
    (lambda p: (p[:3] + ({**p[3], "W": p[3]["W"].at[0, 0].set(jnp.nan)},) + p[4:]), ValueError,
     "NaN"),
    (lambda p: (p[:3] + ({**p[3], "W": p[3]["W"][:, :2]},) + p[4:]), ValueError, "shape"),
    (lambda p: p[:4], ValueError, "sequence of 5"),
    (lambda p: (p[:3] + ({"W": p[3]["W"]},) + p[4:]), ValueError, "expects parameters"),
    (lambda p: (p[:3] + ({**p[3], "W": p[3]["W"].astype(jnp.int32)},) + p[4:]), TypeError,
     "dtype int32"),
])
def test_save_rejects_bad_params_before_writing(model, tmp_path, change, error, match):
    net, params = model
    with pytest.raises(error, match=match):
        save_model(tmp_path / "m.epynn", net, change(params))
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_metadata_that_is_not_json(model, tmp_path):
    net, params = model
    with pytest.raises(TypeError, match="metadata"):
        save_model(tmp_path / "m.epynn", net, params, metadata={"f": object()})


@pytest.mark.parametrize("kwargs, match", [
    ({"history": {"loss": [0.5]}}, "save_model: history must map metric -> split -> list"),
    ({"history": {"loss": {"dtrain": [0.5, 10**400]}}},
     r"save_model: history\['loss'\]\['dtrain'\]: a number too large for a float"),
    ({"metadata": {"notes": "x" * 5000}}, "save_model: model.json would be .* bytes, beyond "
                                          "the 4096 .*; metadata takes"),
    ({"history": {"loss": {"dtrain": [0.5] * 2000}}}, "; history takes"),
    ({"metadata": {1: "a", "1": "b"}}, "save_model: metadata has the key 1 of type int"),
    ({"metadata": {"runs": [{None: 1}]}}, "metadata has the key None of type NoneType"),
    ({"history": {"loss": {0: [0.5]}}}, "save_model: history has the key 0 of type int"),
    ({"extras": {"a": {2.5: 1}}}, "save_model: extras has the key 2.5 of type float"),
], ids=["history-flat", "history-huge-int", "json-size-metadata", "json-size-history",
        "metadata-int-key", "metadata-nested-none-key", "history-int-key", "extras-float-key"])
def test_save_refuses_what_the_loader_would_before_writing(model, tmp_path, monkeypatch,
                                                           kwargs, match):
    """A save never writes a file its own loader refuses (nor one that loads different
    keys): the previous file at the path stays as it was."""
    monkeypatch.setattr(ckpt, "MAX_JSON_BYTES", 4096)  # (the loader's limit too)
    net, params = model
    target = tmp_path / "m.epynn"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError, match=match):
        save_model(target, net, params, **kwargs)
    assert target.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [target]


def test_save_checkpoint_refuses_fit_metadata_load_checkpoint_would(model, tmp_path):
    net, params = model
    state, key = optax.sgd(0.1).init(params), jax.random.key(0)
    for metadata, match in (({"epochs": "3"}, "save_model: metadata 'epochs' must be an int"),
                            ({"epochs": 10**400}, "'epochs' must be an int that fits a float"),
                            ({"schedule": {"learning_rate": -1}}, "'schedule' is no schedule")):
        with pytest.raises(ValueError, match=match):
            save_checkpoint(tmp_path / "c.epynn", net, params, opt_state=state, key=key, epoch=1,
                            metadata=metadata)
    assert list(tmp_path.iterdir()) == []
    # a plain model file keeps any metadata: load_model does not read fit's fields
    path = save_model(tmp_path / "m.epynn", net, params, metadata={"epochs": "3"})
    assert load_model(path).metadata == {"epochs": "3"}


# -- atomic writes ---------------------------------------------------------------------


def test_interrupted_save_keeps_the_previous_file(model, tmp_path, monkeypatch):
    net, params = model
    path = save_model(tmp_path / "m.epynn", net, params, metadata={"v": 1})
    real = np.lib.format.write_array
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", interrupted)
    doubled = jax.tree.map(lambda x: 2 * x, params)
    with pytest.raises(KeyboardInterrupt):
        save_model(path, net, doubled, metadata={"v": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["m.epynn"]  # no temp file left behind
    m = load_model(path)
    assert m.metadata == {"v": 1} and _same_params(m.params, params)


def test_save_fsyncs_and_replaces_in_the_same_directory(model, tmp_path, monkeypatch):
    net, params = model
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b)))
    path = save_model(tmp_path / "m.epynn", net, params)
    assert len(synced) == 2  # the file, then the directory
    ((src, dst),) = replaced
    assert os.path.dirname(src) == str(tmp_path) and dst == path


# -- custom layers: imported only when allowed -------------------------------------------------

CUSTOM = textwrap.dedent('''
    import dataclasses
    import jax.numpy as jnp
    from epynn_jax.layers.base import Layer

    @dataclasses.dataclass(frozen=True)
    class Scale(Layer):
        factor: float = 2.0

    def compute_shapes(layer, X_shape):
        return dataclasses.replace(layer, input_shape=tuple(X_shape))

    def initialize_parameters(layer, key):
        return {"s": jnp.ones((1,) + layer.input_shape)}

    def forward(layer, p, X, key=None, training=False):
        A = X * p["s"] * layer.factor
        return A, {"X": X, "A": A}

    def backward(layer, p, fc, dA):
        dX = dA * p["s"] * layer.factor
        return dX, {"dA": dA, "dX": dX}

    def compute_gradients(layer, p, fc, bc):
        return {"ds": jnp.sum(bc["dA"] * fc["X"] * layer.factor, axis=0, keepdims=True)}

    Scale.compute_shapes = compute_shapes
    Scale.initialize_parameters = initialize_parameters
    Scale.forward = forward
    Scale.backward = backward
    Scale.compute_gradients = compute_gradients
''')


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    name = "epynn_test_custom_scale_layer"
    (tmp_path / f"{name}.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = __import__(name)
    yield name, module
    sys.modules.pop(name, None)


def test_custom_layer_module_is_not_imported_unless_allowed(custom_module, tmp_path):
    name, module = custom_module
    net = network.build([module.Scale(factor=3.0), layers.Dense(2)], (4,))
    path = save_model(tmp_path / "m.epynn", net, network.init(net, jax.random.key(0)))
    del sys.modules[name]
    with pytest.raises(ModelFileError, match=f"module '{name}'.*allow_modules") as err:
        load_model(path)
    assert "layer 0" in str(err.value)
    assert name not in sys.modules  # refused without importing
    m = load_model(path, allow_modules=(name,))
    assert type(m.net.layers[0]).__module__ == name and m.net.layers[0].factor == 3.0
    assert name in sys.modules


def test_custom_layer_given_as_class(custom_module, tmp_path):
    name, module = custom_module
    net = network.build([module.Scale(), layers.Dense(2)], (4,))
    params = network.init(net, jax.random.key(0))
    path = save_model(tmp_path / "m.epynn", net, params)
    m = load_model(path, custom_layers={"Scale": module.Scale})
    assert m.net == net and _same_params(m.params, params)


def test_allowed_but_missing_module_is_named(custom_module, tmp_path):
    name, module = custom_module
    net = network.build([module.Scale()], (4,))
    path = save_model(tmp_path / "m.epynn", net, network.init(net, jax.random.key(0)))
    _rewrite(path, path, {"model.json": lambda b: b.replace(name.encode(), b"no_such_mod_xyz")})
    with pytest.raises(ModelFileError, match="cannot import module 'no_such_mod_xyz'"):
        load_model(path, allow_modules=("no_such_mod_xyz",))


def test_custom_layer_module_that_no_longer_binds_its_functions_is_named(custom_module,
                                                                          tmp_path):
    """A model saved with a layer whose module has since lost its five binding lines (or
    predates them): the loader says which lines the module needs, as a ModelFileError."""
    name, module = custom_module
    net = network.build([module.Scale()], (4,))
    path = save_model(tmp_path / "m.epynn", net, network.init(net, jax.random.key(0)))
    unbound = CUSTOM[:CUSTOM.index("\nScale.compute_shapes =")]
    (tmp_path / f"{name}.py").write_text(unbound)
    sys.modules.pop(name, None)
    with pytest.raises(ModelFileError, match=r"layer 0: layer Scale does not bind compute_shapes"
                                             r"(.|\n)*    Scale\.forward = forward"):
        load_model(path, allow_modules=(name,))


# -- rejections of bad files ------------------------------------------------------------------


def _rewrite(src, dst, changes: dict, add: dict | None = None, rehash: bool = False) -> None:
    """Copy a zip, transforming members (``None`` drops one) and adding members.

    ``rehash`` rewrites the index's checksums to match the new members, as a crafted file
    would, so that the checks behind the checksum are reached.
    """
    with zipfile.ZipFile(src) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    new = {}
    for n, data in members:
        data = changes.get(n, lambda b: b)(data)
        if data is not None:
            new[n] = data
    new.update(add or {})
    if rehash:
        doc = json.loads(new["model.json"])
        for entry in doc["arrays"].values():
            entry["sha256"] = hashlib.sha256(new[entry["file"]]).hexdigest()
        new["model.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(dst, "w") as out:
        for n, data in new.items():
            out.writestr(n, data)


def _edit_json(edit):
    def f(raw: bytes) -> bytes:
        doc = json.loads(raw)
        edit(doc)
        return json.dumps(doc).encode()
    return f


def _npy(arr, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


@pytest.fixture
def saved(model, tmp_path):
    net, params = model
    return save_model(tmp_path / "good.epynn", net, params)


def _member(path, name: str) -> str:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("model.json"))["arrays"][name]["file"]


def _set(keys, value):
    def edit(doc):
        d = doc
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


CASES = {
    "units changed": ({"model.json": _edit_json(_set(["layers", 4, "fields", "units"], 5))},
                      "architecture needs|do not match"),
    "unknown field": ({"model.json": _edit_json(_set(["layers", 3, "fields", "bogus"], 1))},
                      "no field"),
    "bad activation": ({"model.json": _edit_json(_set(["layers", 3, "fields", "activate"],
                                                      "nope"))}, "invalid fields for Dense"),
    "foreign module": ({"model.json": _edit_json(_set(["layers", 0, "class"],
                                                      "subprocess:Popen"))},
                       "module 'subprocess'.*not imported"),
    "not a layer": ({"model.json": _edit_json(_set(
        ["layers", 0, "class"], "epynn_jax.maths.activations:ActivationHPars"))},
        "not a layer class"),
    "bad class path": ({"model.json": _edit_json(_set(["layers", 0, "class"], "os.system()"))},
                       "invalid class path"),
    "input shape": ({"model.json": _edit_json(_set(["input_shape"], [3, 3]))},
                    "shape|do not match"),
    "newer version": ({"model.json": _edit_json(_set(["version"], 99))}, "version 99"),
    "other format": ({"model.json": _edit_json(_set(["format"], "keras"))}, "format 'keras'"),
    "no model.json": ({"model.json": lambda b: None}, "no model.json"),
    "json garbage": ({"model.json": lambda b: b"{not json"}, "not valid JSON"),
    "object dtype in index": ({"model.json": _edit_json(_set(["arrays", "params/3/W", "dtype"],
                                                             "|O"))}, "unsupported dtype"),
    # its member is left behind: found (cheaply) before the architecture is built
    "array left out of the index": ({"model.json": _edit_json(
        lambda d: d["arrays"].pop("params/3/b"))}, "unexpected members.*arrays/"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_files_raise_model_file_error(saved, tmp_path, case):
    changes, match = CASES[case]
    bad = tmp_path / "bad.epynn"
    _rewrite(saved, bad, changes)
    with pytest.raises(ModelFileError, match=match):
        load_model(bad)


def test_missing_array_is_named(saved, tmp_path):
    name = _member(saved, "params/3/b")
    _rewrite(saved, tmp_path / "bad.epynn", {
        "model.json": _edit_json(lambda d: d["arrays"].pop("params/3/b")), name: lambda b: None})
    with pytest.raises(ModelFileError, match="missing \\['params/3/b'\\]"):
        load_model(tmp_path / "bad.epynn")


def test_object_npy_is_refused_without_unpickling(saved, tmp_path):
    name = _member(saved, "params/3/W")
    payload = np.empty((6, 4), dtype=object)
    payload[...] = {"x": 1}
    _rewrite(saved, tmp_path / "bad.epynn", {name: lambda b: _npy(payload, allow_pickle=True)},
             rehash=True)
    with pytest.raises(ModelFileError, match="header says object"):
        load_model(tmp_path / "bad.epynn")


def test_nan_parameters_are_refused(saved, tmp_path):
    name = _member(saved, "params/3/W")
    _rewrite(saved, tmp_path / "bad.epynn",
             {name: lambda b: _npy(np.full((6, 4), np.nan, np.float32))}, rehash=True)
    with pytest.raises(ModelFileError, match="NaN or inf"):
        load_model(tmp_path / "bad.epynn")


def test_extra_member_and_truncated_npy(saved, tmp_path):
    _rewrite(saved, tmp_path / "a.epynn", {}, add={"evil.pkl": pickle.dumps(1)})
    with pytest.raises(ModelFileError, match="unexpected members"):
        load_model(tmp_path / "a.epynn")
    name = _member(saved, "params/3/W")
    _rewrite(saved, tmp_path / "b.epynn", {name: lambda b: b[:-8]})
    with pytest.raises(ModelFileError, match="bytes|truncated"):
        load_model(tmp_path / "b.epynn")


def test_pickle_and_truncated_archive_and_missing_file(saved, tmp_path):
    (tmp_path / "p.epynn").write_bytes(pickle.dumps({"W": np.ones(3)}))
    with pytest.raises(ModelFileError, match="not a zip archive"):
        load_model(tmp_path / "p.epynn")
    (tmp_path / "t.epynn").write_bytes(saved.read_bytes()[:-30])
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "t.epynn")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.epynn")


def test_encode_rejects_unstorable_field(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        ckpt._encode(object(), "Layer.field")


# -- any valid architecture round-trips ----------------------------------------------------------

LAYERS = st.one_of(
    st.builds(layers.Dense, st.integers(1, 4), st.sampled_from(["relu", "softmax", "elu"]),
              st.sampled_from(["xavier", "orthogonal"]),
              hpars=st.builds(ActivationHPars, st.floats(0.1, 2), st.floats(0.01, 1),
                              st.floats(0.5, 3), st.booleans())),
    st.builds(layers.Dropout, st.floats(0, 0.9), st.sampled_from([(), (1,), (-1,)])),
    st.builds(layers.Embedding, st.none() | st.integers(1, 5)),
    st.builds(layers.Flatten),
    st.builds(layers.Template),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=st.lists(LAYERS, min_size=1, max_size=4),
       shape=st.lists(st.integers(1, 3), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_any_valid_architecture_round_trips(stack, shape, seed):
    if any(isinstance(la, layers.Dense) for la in stack) and len(shape) > 1:
        stack = [layers.Flatten(), *stack]
    net = network.build(stack, tuple(shape))
    rng = np.random.default_rng(seed)
    params = tuple({k: rng.normal(size=s).astype(np.float32) for k, s in
                    layer.param_shapes().items()} for layer in net.layers)
    with tempfile.TemporaryDirectory() as d:
        m = load_model(save_model(os.path.join(d, "m.epynn"), net, params))
    assert m.net == net and _same_params(m.params, params)


@pytest.mark.parametrize("stack, shape", [
    (lambda: [layers.RNN(3, sequences=True), layers.LSTM(2, sequences=True), layers.GRU(2),
              layers.Dense(2, "softmax")], (4, 3)),
    (lambda: [layers.Convolution(2, (2, 2), strides=(1, 1), padding=1),
              layers.Pooling((2, 2), pool="mean"), layers.Flatten(), layers.Dense(2)], (5, 5, 1)),
])
def test_recurrent_and_image_layers_round_trip(tmp_path, stack, shape):
    net = network.build(stack(), shape)
    params = network.init(net, jax.random.key(0))
    m = load_model(save_model(tmp_path / "m.epynn", net, params))
    assert m.net == net and _same_params(m.params, params)
