"""Custom functional layers work everywhere a built-in layer does (issue 9, functional API)."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from customlayers.bad_scale import BadScale
from customlayers.scale import Scale

from epynn_jax import network, testing
from epynn_jax.layers import Dense, Flatten
from epynn_jax.layers.base import LayerError
from epynn_jax.maths.schedules import Schedule


def _data(m=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 3, 2))
    Y = np.eye(2)[(X.sum((1, 2)) > 0).astype(int)]
    return X, Y


def test_checker_passes_a_correct_custom_layer():
    report = testing.check_layer(Scale(), (5,))
    assert report.passed, str(report)
    assert {c.key for c in report.checks} == {"dX", "da", "dc"}


def test_checker_catches_a_wrong_backward_and_names_the_key():
    report = testing.check_layer(BadScale(), (5,))
    assert not report.passed
    assert report.failed == ("dc",)
    assert report["dc"].error_vs_autodiff > 1e-3
    assert report["dc"].error_vs_finite_differences > 1e-3
    with pytest.raises(AssertionError, match="BadScale.*dc"):
        report.assert_ok()
    assert "FAIL" in str(report)


def _broken(function, fn):
    """A Scale whose ``function`` (one of the five) is ``fn``: a learner's broken layer."""
    import dataclasses

    cls = dataclasses.dataclass(frozen=True)(type("Broken", (Scale,), {}))
    setattr(cls, function, fn)
    return cls()


@pytest.mark.parametrize("fn, shape", [
    (lambda layer, p, fc, dA: (jnp.sum(dA, 1, keepdims=True), {"dA": dA}), (3, 1)),
    (lambda layer, p, fc, dA: (jnp.concatenate([dA, dA], 1), {"dA": dA}), (3, 4)),
])
def test_checker_reports_a_dx_of_the_wrong_shape_as_a_failing_row(fn, shape):
    report = testing.check_layer(_broken("backward", fn), (2,))
    assert report.failed == ("dX",)
    assert report["dX"].shape == shape and report["dX"].error_vs_autodiff == float("inf")
    why = f"backward: dX has shape {shape}, X has (3, 2)"
    assert report["dX"].problem == why
    assert f"FAIL  {why}" in str(report)
    with pytest.raises(AssertionError, match=re.escape(why)):
        report.assert_ok()


@pytest.mark.parametrize("da, why", [
    (lambda dA, X: dA * X, "compute_gradients: da has shape (3, 2), a has (2,)"),
    (lambda dA, X: jnp.sum(dA * X, axis=0, keepdims=True),  # a network refuses it too
     "compute_gradients: da has shape (1, 2), a has (2,)"),
    (None, "compute_gradients: no 'da' for the parameter 'a' (g has the keys ['a', 'dc'])"),
])
def test_checker_reports_a_misshapen_or_missing_gradient_as_a_failing_row(da, why):
    def grads(layer, p, fc, bc):
        a = {"a": 0 * p["a"]} if da is None else {"da": da(bc["dA"], fc["X"])}
        return {**a, "dc": jnp.sum(bc["dA"], axis=0)}

    report = testing.check_layer(_broken("compute_gradients", grads), (2,))
    assert report.failed == ("da",)
    assert report["da"].problem == why and f"FAIL  {why}" in str(report)
    assert report["dc"].problem is None and report["dc"].passed


_TUPLE = r"\(dataclasses.replace\(layer, input_shape=tuple\(X_shape\)\)\)"


@pytest.mark.parametrize("function, fn, error, match", [
    ("compute_shapes", lambda layer, X_shape: None, TypeError,
     rf"Broken.compute_shapes must return the layer with its input_shape set {_TUPLE}, "
     r"got None"),
    ("compute_shapes", lambda layer, X_shape: layer, TypeError,
     "Broken.compute_shapes must return .*got the layer with input_shape None"),
    ("initialize_parameters", lambda layer, key: None, TypeError,
     r"Broken.initialize_parameters must return p, a dict of arrays, got None"),
    ("initialize_parameters", lambda layer, key: [jnp.ones(2)], TypeError,
     "Broken.initialize_parameters must return p, a dict of arrays, got a list of 1 item$"),
    ("initialize_parameters", lambda layer, key: {"a": 0.5, "c": jnp.zeros(2)}, TypeError,
     r"Broken.initialize_parameters must return p, a dict of arrays \(such as "
     r"jnp.zeros\(shape, float_dtype\(\)\)\), got p\['a'\] a float"),
    ("initialize_parameters", lambda layer, key: {"a": {"w": jnp.ones(2)}}, TypeError,
     r"Broken.initialize_parameters must return p, a dict of arrays .*got p\['a'\] a dict"),
    ("forward", lambda layer, p, X, key=None, training=False: X * p["a"], TypeError,
     r"Broken.forward must return \(A, fc\), got an array of shape \(3, 2\)"),
    ("forward", lambda layer, p, X, key=None, training=False: (X, {"X": X}, None), TypeError,
     r"Broken.forward must return \(A, fc\), got a tuple of 3 items"),
    ("forward", lambda layer, p, X, key=None, training=False: (X, [X]), TypeError,
     r"Broken.forward must return \(A, fc\) with fc a dict .*got fc a list of 1 item"),
    ("backward", lambda layer, p, fc, dA: dA * p["a"], TypeError,
     r"Broken.backward must return \(dX, bc\), got an array of shape \(3, 2\)"),
    ("backward", lambda layer, p, fc, dA: None, TypeError,
     r"Broken.backward must return \(dX, bc\), got None"),
    ("compute_gradients", lambda layer, p, fc, bc: None, TypeError,
     r"Broken.compute_gradients must return g, a dict such as \{'dW': dW\}, got None"),
])
def test_checker_names_the_function_that_breaks_the_contract(function, fn, error, match):
    with pytest.raises(error, match="check_layer: " + match):
        testing.check_layer(_broken(function, fn), (2,))


def test_checker_refuses_a_forward_that_drops_the_batch_axis():
    """Also when the sample size equals the batch size (3 here), where A's first axis
    happens to have the batch's length: another batch size shows it."""
    def forward(layer, p, X, key=None, training=False):
        A = jnp.sum(X * p["a"], axis=0)
        return A, {"X": X, "A": A}

    with pytest.raises(LayerError, match=re.escape(
            "check_layer: Broken.forward must return A with the batch axis first: X of shape "
            "(3, 3) gave A of shape (3,), X of shape (4, 3) gave (3,)")):
        testing.check_layer(_broken("forward", forward), (3,))


def test_custom_layer_is_static_and_hashable():
    layer = Scale().compute_shapes((4,))
    assert hash(layer) == hash(Scale(input_shape=(4,)))
    assert layer.param_shapes() == {"a": (4,), "c": (4,)}
    assert layer.fs(7)["X"] == (7, 4) and layer.bs(7)["dX"] == (7, 4)


def test_custom_layer_in_a_network_matches_autodiff(x64):
    X, Y = _data()
    net = network.build([Flatten(), Scale(), Dense(4, "tanh"), Scale(), Dense(2, "softmax")],
                        (3, 2))
    params = network.init(net, jax.random.key(1))
    hand = jax.jit(lambda p: network.gradients(net, p, X, Y, "BCE")[0])(params)
    plain = jax.jit(lambda p: network.autodiff_gradients(net, p, X, Y, "BCE",
                                                         custom_vjp=False))(params)
    via_vjp = jax.jit(lambda p: network.autodiff_gradients(net, p, X, Y, "BCE"))(params)
    chex.assert_trees_all_close(plain, hand, via_vjp, rtol=1e-10, atol=1e-12)  # each vs plain


def test_custom_layer_trains_with_fit_inside_one_compiled_epoch(epoch_traces):
    X, Y = _data(48)
    net = network.build([Flatten(), Scale(), Dense(2, "softmax")], (3, 2))
    params = network.init(net, jax.random.key(0))
    # One compiled program for the whole run (one trace), however many epochs.
    epoch_traces(splits=1).allow(1)
    result = network.fit(net, params, {"dtrain": (X, Y)}, epochs=30, batch_size=8,
                         loss="MSE", schedule=Schedule(learning_rate=0.05))
    mse = result.history["MSE"]["dtrain"]
    assert mse[-1] < 0.5 * mse[0]
    assert not np.allclose(result.params[1]["a"], params[1]["a"])


def test_custom_layer_rejects_bad_input_before_tracing():
    with pytest.raises(LayerError, match="Scale"):
        network.build([Scale()], (3, 2))


def test_layer_class_without_functions_gets_a_clear_error_when_made():
    import dataclasses

    from epynn_jax.layers.base import Layer

    @dataclasses.dataclass(frozen=True)
    class Orphan(Layer):
        pass

    with pytest.raises(TypeError, match=r"Orphan does not bind compute_shapes(.|\n)*"
                                        r"Orphan\.compute_shapes = compute_shapes"):
        Orphan()


def test_grad_of_a_jnp_custom_layer_is_compiled():
    X, Y = _data()
    net = network.build([Flatten(), Scale(), Dense(2, "sigmoid")], (3, 2))
    params = network.init(net, jax.random.key(0))
    g = jax.jit(lambda p: network.autodiff_gradients(net, p, jnp.asarray(X, jnp.float32),
                                                     jnp.asarray(Y, jnp.float32)))(params)
    assert set(g[1]) == {"a", "c"} and np.all(np.isfinite(g[1]["a"]))


def test_a_model_with_a_custom_layer_saves_and_loads(tmp_path):
    import sys

    from epynn_jax.errors import ModelFileError
    from epynn_jax.io.checkpoint import load_model, save_model

    net = network.build([Flatten(), Scale(), Dense(2, "softmax")], (3, 2))
    params = network.init(net, jax.random.key(3))
    path = save_model(tmp_path / "custom.epynn", net, params)

    # Not imported unless the user allows the module: a clear error naming it.
    with pytest.raises(ModelFileError, match="customlayers.scale"):
        load_model(path)
    loaded = load_model(path, allow_modules=("customlayers.scale",))
    assert loaded.net == net
    for p, q in zip(params, loaded.params, strict=True):
        for k in p:
            np.testing.assert_array_equal(np.asarray(p[k]), np.asarray(q[k]))
    X = np.random.default_rng(0).standard_normal((4, 3, 2))
    np.testing.assert_allclose(network.predict(loaded.net, loaded.params, X),
                               network.predict(net, params, X), rtol=1e-6)
    assert "customlayers.scale" in sys.modules  # imported only once allowed


def test_a_custom_layer_whose_module_is_gone_fails_clearly(tmp_path):
    import json
    import zipfile

    from epynn_jax.errors import ModelFileError
    from epynn_jax.io.checkpoint import load_model, save_model

    net = network.build([Flatten(), Scale(), Dense(2, "softmax")], (3, 2))
    path = save_model(tmp_path / "custom.epynn", net, network.init(net, jax.random.key(0)))
    # Rewrite the file so the layer points to a module that does not exist.
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    doc = json.loads(members["model.json"])
    text = json.dumps(doc).replace("customlayers.scale", "no_such_pkg.scale")
    members["model.json"] = text.encode()
    broken = tmp_path / "broken.epynn"
    with zipfile.ZipFile(broken, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    with pytest.raises(ModelFileError, match="no_such_pkg"):
        load_model(broken, allow_modules=("no_such_pkg",))


_MULTI_DEVICE = r"""
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["EPYNN_JAX_NO_CACHE"] = "1"
import jax, numpy as np
from customlayers.scale import Scale
from epynn_jax import Schedule, network
from epynn_jax.layers import Dense, Flatten
rng = np.random.default_rng(0)
X = rng.standard_normal((32, 3, 2)).astype("f4")
Y = np.eye(2, dtype="f4")[(X.sum((1, 2)) > 0).astype(int)]
net = network.build([Flatten(), Scale(), Dense(2, "softmax")], (3, 2))
params = network.init(net, jax.random.key(0))
kw = dict(epochs=3, batch_size=8, schedule=Schedule(learning_rate=0.05), key=jax.random.key(1))
one = network.fit(net, params, {"dtrain": (X, Y)}, **kw)
two = network.fit(net, params, {"dtrain": (X, Y)}, mesh=jax.devices()[:2], **kw)
assert len(jax.devices()) == 2
for p, q in zip(one.params, two.params):
    for k in p:
        np.testing.assert_allclose(np.asarray(p[k]), np.asarray(q[k]), rtol=1e-5, atol=1e-6)
print("OK")
"""


def test_custom_layer_trains_data_parallel_on_two_devices():
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    out = subprocess.run([sys.executable, "-c", _MULTI_DEVICE], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]


# -- a custom layer that breaks the contract: named where the network runs it -----------------

def _variant(base, name: str, **functions):
    """A frozen subclass of ``base`` named ``name`` with some of its functions replaced."""
    import dataclasses

    cls = dataclasses.make_dataclass(name, [], bases=(base,), frozen=True)
    for attr, fn in functions.items():
        setattr(cls, attr, fn)
    return cls


def _broken_stacks():
    from epynn_jax.layers import Template, dense

    g = dense.compute_gradients
    ident = {"forward": lambda layer, p, X, key=None, training=False: (X, {"X": X})}
    return {
        # were silent: the layer before trained on a broadcast dX, a transposed gradient
        # was reshaped (scrambled), a misnamed one left its parameter untrained
        "dX of another shape": ([Dense(3, "tanh"), _variant(Template, "SmallDX", **ident, backward=(
            lambda layer, p, fc, dA: (jnp.sum(dA, 1, keepdims=True), {"dA": dA})))(), Dense(1)],
            r"SmallDX: backward's dX must have the shape of the layer's input X, \(4, 3\); got "
            r"an array of shape \(4, 1\)"),
        "a transposed gradient": ([_variant(Dense, "DenseT", compute_gradients=lambda layer, p, fc,
                                            bc: {**g(layer, p, fc, bc),
                                                 "dW": g(layer, p, fc, bc)["dW"].T})(2), Dense(1)],
                                  r"DenseT: compute_gradients' 'dW' must have the shape of the "
                                  r"parameter 'W', \(3, 2\); got an array of shape \(2, 3\)"),
        "a misnamed gradient": ([_variant(Dense, "Typo", compute_gradients=lambda layer, p, fc,
                                          bc: {"W": g(layer, p, fc, bc)["dW"],
                                               "db": g(layer, p, fc, bc)["db"]})(2), Dense(1)],
            r"Typo: compute_gradients returned no 'dW' for the parameter 'W' \(its keys: "
            r"\['W', 'db'\]\)"),
        "a batch axis dropped": ([Dense(3), _variant(Template, "Drop", forward=(
            lambda layer, p, X, key=None, training=False: (jnp.sum(X, 0), {"X": X})))()],
            r"layer 1 \(Drop\): Drop: forward's A must keep the batch axis first"),
        # were bare Python errors from inside the library
        "forward returns A alone": ([_variant(Template, "NoPair", forward=(
            lambda layer, p, X, key=None, training=False: X))(), Dense(1)],
            r"layer 0 \(NoPair\): NoPair: forward must return the pair \(A, fc\), got an array"),
        "backward returns dX alone": ([Dense(3), _variant(Template, "OnlyDX", **ident, backward=(
            lambda layer, p, fc, dA: dA))(), Dense(1)],
            r"OnlyDX: backward must return the pair \(dX, bc\), got an array of shape \(4, 3\)"),
        "compute_gradients returns None": ([_variant(Dense, "NoGrads", compute_gradients=(
            lambda layer, p, fc, bc: None))(2), Dense(1)],
            r"NoGrads: compute_gradients must return a dict .*got NoneType"),
        "compute_shapes returns None": ([_variant(Template, "NoShapes", compute_shapes=(
            lambda layer, shape: None))(), Dense(1)],
            r"layer 0 \(NoShapes\): NoShapes: compute_shapes must return the layer built"),
        "compute_shapes sets a list": ([_variant(Template, "ListShape", compute_shapes=(
            lambda layer, shape: __import__("dataclasses").replace(layer, input_shape=list(
                shape))))(), Dense(1)],
            r"ListShape: compute_shapes must set input_shape to the sample shape it was given, "
            r"the tuple \(3,\); got \[3\]"),
    }


@pytest.mark.parametrize("case", list(_broken_stacks()))
def test_a_layer_that_breaks_the_contract_is_named_with_what_it_broke(case):
    stack, match = _broken_stacks()[case]
    X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    with pytest.raises(LayerError, match=match):
        net = network.build(stack, (3,))
        network.fit(net, network.init(net, 0), {"dtrain": (X, X[:, :1])}, epochs=1,
                    batch_size=4)


def test_a_layer_with_an_unhashable_field_is_named_by_fit_and_predict():
    import dataclasses

    from epynn_jax.layers import Template

    @dataclasses.dataclass(frozen=True)
    class Sizes(Template):
        sizes: list = dataclasses.field(default_factory=lambda: [1, 2])

    net = network.build([Sizes(), Dense(1)], (3,))
    params, X = network.init(net, 0), np.ones((4, 3), np.float32)
    msg = r"layer 0 \(Sizes\) field 'sizes' holds an unhashable list; .*\(a tuple, not a list\)"
    with pytest.raises(TypeError, match="fit: " + msg):
        network.fit(net, params, {"dtrain": (X, X[:, :1])}, epochs=1)
    with pytest.raises(TypeError, match="predict: " + msg):
        network.predict(net, params, X)
