"""The facade's model files are the core's: round trips of every layer type, custom NumPy
layers, NaN weights refused, the first facade format and the import graph."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

from epynn_jax import errors, network
from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons import library
from epynn_jax.compat.commons.library import ModelFileError, read_model
from epynn_jax.compat.commons.maths import relu, softmax
from epynn_jax.compat.commons.models import Layer
from epynn_jax.compat.convolution.models import Convolution
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.dropout.models import Dropout
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.flatten.models import Flatten
from epynn_jax.compat.gru.models import GRU
from epynn_jax.compat.lstm.models import LSTM
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.compat.pooling.models import Pooling
from epynn_jax.compat.rnn.models import RNN
from epynn_jax.io import checkpoint
from tests.compat.numpy_layers import Scale, Take

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(4)
Y = RNG.integers(0, 2, size=24)
DATA = {"flat": RNG.normal(size=(24, 4)), "seq": RNG.normal(size=(24, 5, 3)),
        "image": RNG.uniform(size=(24, 6, 6, 1))}
MODELS = {
    "dense": ("flat", lambda: [Dense(5, relu), Dense(2, softmax)]),
    "rnn": ("seq", lambda: [RNN(4), Dense(2, softmax)]),
    "lstm": ("seq", lambda: [LSTM(4, sequences=True), Flatten(), Dense(2, softmax)]),
    "gru": ("seq", lambda: [GRU(3), Dense(2, softmax)]),
    "cnn": ("image", lambda: [Convolution(3, (2, 2)), Pooling((2, 2)), Flatten(), Dropout(0.3),
                              Dense(2, softmax)]),
    "custom": ("flat", lambda: [Dense(5, relu), Take(3), Scale(0.5), Dense(2, softmax)]),
}


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def make(kind: str, train: int = 0) -> EpyNN:
    data, layers = MODELS[kind]
    emb = Embedding(X_data=DATA[data], Y_data=Y, Y_encode=True, batch_size=8)
    model = EpyNN([emb, *layers()], name=kind)
    model.initialize(loss="MSE", seed=3, metrics=["accuracy"])
    if train:
        model.train(train, init_logs=False)
    return model


def assert_same_model(a: EpyNN, b: EpyNN) -> None:
    assert [type(x) for x in a.layers] == [type(x) for x in b.layers]
    for la, lb in zip(a.layers, b.layers):
        assert la.p.keys() == lb.p.keys()
        for k in la.p:
            np.testing.assert_array_equal(np.asarray(la.p[k], np.float64), lb.p[k])
        assert list(getattr(la, "lrate", [])) == lb.lrate
        assert la.trainable == lb.trainable and la.se_hPars == lb.se_hPars
    assert (b.uname, b.loss, b.output, b.seed) == (a.uname, a.loss, a.output, a.seed)
    assert b.epochs == getattr(a, "epochs", 0) and b.e == a.e
    assert b.metrics == a.metrics


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_round_trip_predicts_the_same(kind, tmp_path, x64):
    model = make(kind, train=1 if kind in ("dense", "custom") else 0)
    path = tmp_path / "m.epynn"
    model.write(str(path))
    back = read_model(str(path))
    assert_same_model(model, back)
    X = DATA[MODELS[kind][0]][:7]
    np.testing.assert_array_equal(back.predict(X).A, model.predict(X).A)
    # a read model writes again, to the same content
    back.write(str(tmp_path / "again.epynn"))
    again = read_model(str(tmp_path / "again.epynn"))
    assert_same_model(back, again)
    np.testing.assert_array_equal(again.predict(X).A, model.predict(X).A)


def test_round_trip_in_float32(tmp_path):
    """Default dtype: the read model predicts what the written one predicts."""
    model = make("custom", train=1)
    model.write(str(tmp_path / "m.epynn"))
    back = read_model(str(tmp_path / "m.epynn"))
    X = DATA["flat"][:7]
    np.testing.assert_allclose(back.predict(X).A, model.predict(X).A, rtol=1e-6, atol=1e-7)


def test_custom_layer_attributes_and_shapes_are_kept(tmp_path, x64):
    model = make("custom")
    model.write(str(tmp_path / "m.epynn"))
    back = read_model(str(tmp_path / "m.epynn"))
    take, scale = back.layers[2], back.layers[3]
    assert (take.k, scale.factor, scale.trainable, take.trainable) == (3, 0.5, True, False)
    core = checkpoint.load_model(tmp_path / "m.epynn",
                                 allow_modules=("epynn_jax.compat._modelfile",))
    slots = core.net.layers[2:4]
    assert [s.layer_class for s in slots] == ["tests.compat.numpy_layers:Take",
                                              "tests.compat.numpy_layers:Scale"]
    assert slots[0].input_shape == (5,) and slots[0].output_shape == (3,)
    assert slots[1].input_shape == slots[1].output_shape == (3,)
    assert slots[1].param_shapes() == {"s": (1, 3)}


def test_a_facade_file_is_a_core_model_file(tmp_path, x64):
    model = make("cnn")
    model.write(str(tmp_path / "m.epynn"))
    core = checkpoint.load_model(tmp_path / "m.epynn")
    X = DATA["image"][:5]
    np.testing.assert_allclose(np.asarray(network.predict(core.net, core.params, X)),
                               model.predict(X).A, rtol=1e-12)
    assert core.extras["epynn_jax.compat"]["layers"][1]["class"] == "Convolution"


def test_a_core_file_without_the_section_is_refused_clearly(tmp_path):
    from epynn_jax import layers

    net = network.build([layers.Dense(2, "softmax")], (3,))
    checkpoint.save_model(tmp_path / "core.epynn", net, network.init(net, jax.random.key(0)))
    with pytest.raises(ModelFileError, match="without the facade's section.*load_model"):
        read_model(str(tmp_path / "core.epynn"))


def test_a_class_defined_in_a_function_needs_custom_layers(tmp_path, x64):
    class Local(Scale):
        pass

    emb = Embedding(X_data=DATA["flat"], Y_data=Y, Y_encode=True)
    model = EpyNN([emb, Local(), Dense(2, softmax)])
    model.initialize(seed=1)
    model.write(str(tmp_path / "m.epynn"))
    with pytest.raises(ModelFileError, match=r"custom_layers=\{'Local': Local\}") as err:
        read_model(str(tmp_path / "m.epynn"))
    assert "\n" not in str(err.value)
    back = read_model(str(tmp_path / "m.epynn"), custom_layers={"Local": Local})
    assert type(back.layers[1]) is Local
    np.testing.assert_array_equal(back.predict(DATA["flat"][:3]).A,
                                  model.predict(DATA["flat"][:3]).A)
    with pytest.raises(TypeError, match="custom_layers"):
        read_model(str(tmp_path / "m.epynn"), custom_layers={"Local": dict})


# -- write never stores NaN and never breaks an existing file -----------------------------


@pytest.mark.parametrize("layer,key,value", [(2, "W", np.nan), (3, "s", np.inf)])
def test_write_of_non_finite_weights_raises_and_keeps_the_old_file(tmp_path, layer, key, value):
    model = make("custom") if key == "s" else make("dense")
    path = tmp_path / "m.epynn"
    model.write(str(path))
    before = path.read_bytes()
    bad = np.array(model.layers[layer].p[key], dtype=np.float64)
    bad.flat[0] = value
    model.layers[layer].p[key] = bad
    name = type(model.layers[layer]).__name__
    with pytest.raises(ValueError, match=rf"layer {layer} \({name}\) parameter '{key}'.*NaN"):
        model.write(str(path))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.epynn"]


def test_write_of_an_uninitialized_model_says_so(tmp_path):
    emb = Embedding(X_data=DATA["flat"], Y_data=Y, Y_encode=True)
    model = EpyNN([emb, Dense(2, softmax)])
    with pytest.raises(ValueError, match=r"layer 0 \(Embedding\) has no shapes yet.*initialize"):
        model.write(str(tmp_path / "m.epynn"))
    assert not os.listdir(tmp_path)


# -- the facade's first format --------------------------------------------------------------


def write_first_format(path: Path) -> None:
    """A file as the facade's first writer made them: a deflated zip, model.json tagged
    'epynn_jax.compat.model' version 1, one .npy per parameter under layers/<i>/."""
    desc = {"format": "epynn_jax.compat.model", "version": 1, "uname": "1_old", "loss": "MSE",
            "output": "softmax", "seed": 1, "se_hPars": {}, "epochs": 1, "e": 0,
            "done_epochs": 1, "metrics": {}, "dsets": ["dtrain"], "label_columns": 2,
            "embedding": {"se_dataset": {}, "vocabulary": None},
            "layers": [{"class": "Embedding", "module": "epynn_jax.compat.embedding.models",
                        "builtin": True, "se_hPars": {}, "lrate": [], "trainable": False,
                        "params": [], "d": {}, "kwargs": {}, "input_shape": [4]},
                       {"class": "Dense", "module": "epynn_jax.compat.dense.models",
                        "builtin": True, "se_hPars": {}, "lrate": [0.1], "trainable": True,
                        "params": ["W", "b"], "d": {"u": 2},
                        "kwargs": {"units": 2, "activate": "softmax",
                                   "initialization": "xavier"}, "input_shape": [4]}]}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.json", json.dumps(desc, indent=1))
        for k, arr in (("W", np.ones((4, 2))), ("b", np.zeros((1, 2)))):
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            zf.writestr(f"layers/1/{k}.npy", buf.getvalue())


def test_a_first_format_file_gets_a_one_line_explanation(tmp_path):
    path = tmp_path / "old.epynn"
    write_first_format(path)
    with pytest.raises(ModelFileError) as err:
        read_model(str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "'epynn_jax.compat.model', version 1" in msg and "model.write() again" in msg


def test_one_error_class():
    assert library.ModelFileError is errors.ModelFileError is checkpoint.ModelFileError


# -- imports point one way --------------------------------------------------------------------


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_import_loop_between_the_model_and_the_library():
    pkg = ROOT / "epynn_jax" / "compat"
    models = _imported(pkg / "network" / "models.py")
    assert "epynn_jax.compat.commons.library" not in models
    for name in ("_modelfile.py", "_modelread.py"):
        assert not {"epynn_jax.compat.commons.library", "epynn_jax.compat.network.models",
                    "epynn_jax.compat.network"} & _imported(pkg / name), name
    code = ("import sys, epynn_jax.compat.network.models; "
            "print('epynn_jax.compat.commons.library' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == "False"


def test_a_custom_layer_class_is_never_imported(tmp_path, x64):
    """A file naming a module that is not imported fails and leaves it unimported."""
    model = make("custom")
    path = tmp_path / "m.epynn"
    model.write(str(path))
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    text = members["model.json"].decode().replace("tests.compat.numpy_layers:Scale",
                                                  "json.tool:Scale")
    members["model.json"] = text.encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    sys.modules.pop("json.tool", None)
    with pytest.raises(ModelFileError, match="json.tool:Scale.*not defined here"):
        read_model(str(path))
    assert "json.tool" not in sys.modules
    assert issubclass(Scale, Layer)


@pytest.mark.parametrize("init_logs", [True, False])
def test_a_read_model_cannot_train_and_says_what_to_do(tmp_path, init_logs):
    """docs/compat.md: a read model's Embedding holds no data, so it does not train further
    (it raised a bare IndexError or AttributeError '_key', after counting the epochs); the
    error names EpyNN.train and the way: a model with data, initialize(), the read weights."""
    model = make("dense", train=1)
    model.write(str(tmp_path / "m.epynn"))
    back = read_model(str(tmp_path / "m.epynn"))
    with pytest.raises(ValueError, match=r"EpyNN\.train.*read_model") as err:
        back.train(1, init_logs=init_logs)
    assert "initialize()" in str(err.value) and "Embedding" in str(err.value)
    assert back.epochs == model.epochs  # nothing changed
    assert_same_model(model, back)
    X = DATA["flat"][:7]
    np.testing.assert_array_equal(back.predict(X).A, model.predict(X).A)
    # the way the error gives: a model with data, initialized, the read weights assigned
    fresh = make("dense")
    for layer, read in zip(fresh.layers, back.layers):
        layer.p = {k: np.array(v) for k, v in read.p.items()}
    fresh.train(1, init_logs=False)
    assert fresh.epochs == 1


def test_a_read_model_cannot_evaluate_and_says_what_to_do(tmp_path):
    """A read model's evaluate() appended nothing and returned quietly: no data to score."""
    model = make("dense", train=1)
    model.write(str(tmp_path / "m.epynn"))
    back = read_model(str(tmp_path / "m.epynn"))
    before = {k: [list(v) for v in vals] for k, vals in back.metrics.items()}
    with pytest.raises(ValueError, match=r"EpyNN\.evaluate: a model from read_model has no "
                                         r"data sets.*predict\(X\)"):
        back.evaluate()
    assert {k: [list(v) for v in vals] for k, vals in back.metrics.items()} == before
