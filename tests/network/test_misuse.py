"""The functional API misused: a clear error naming the argument (and the layer), raised
before anything is traced or trained; and ``predict`` under JAX's transformations."""

from __future__ import annotations

import re
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers, network, testing
from epynn_jax.layers.base import LayerError
from epynn_jax.network import checks

NET = network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (3,))
PARAMS = network.init(NET, jax.random.key(0))
RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 3)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[RNG.integers(0, 2, 16)]


def fit(params=PARAMS, data=None, **kw):
    kw = {"epochs": 1, "loss": "MSE", "batch_size": 8, **kw}
    return network.fit(NET, params, data or {"dtrain": (X, Y)}, **kw)


def with_param(layer: int, key: str, value):
    return tuple({**p, key: value} if i == layer else p for i, p in enumerate(PARAMS))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_16_bit_parameters_are_refused(dtype):
    params = with_param(0, "W", PARAMS[0]["W"].astype(dtype))
    msg = (r"layer 0 \(Dense\) parameter 'W' must be float32 or float64 \(3, 4\), got "
           + dtype.__name__)
    with pytest.raises(ValueError, match=rf"fit: {msg}.*precision policy"):
        fit(params)
    with pytest.raises(ValueError, match=rf"predict: {msg}"):
        network.predict(NET, params, X)


def test_parameters_that_are_not_arrays_are_refused():
    params = with_param(1, "b", [[0.0, 0.0]])
    for call, where in ((lambda: fit(params), "fit"),
                        (lambda: network.predict(NET, params, X), "predict")):
        with pytest.raises(TypeError, match=rf"{where}: layer 1 \(Dense\) parameter 'b' must be "
                                            r"an array \(NumPy or JAX\), got list"):
            call()


def test_non_finite_parameters_are_refused_before_training_or_predicting():
    params = with_param(1, "b", PARAMS[1]["b"].at[0, 1].set(jnp.nan))
    for call, where in ((lambda: fit(params), "fit"),
                        (lambda: network.predict(NET, params, X), "predict")):
        with pytest.raises(ValueError, match=rf"{where}: layer 1 \(Dense\) parameter 'b' holds "
                                            "NaN or inf"):
            call()


def test_a_fits_parameters_are_known_finite_and_not_read_again(monkeypatch):
    result = fit()
    monkeypatch.setattr(checks, "all_finite", lambda a: pytest.fail("read again"))
    checks.check_params_finite(NET, result.params, "predict")  # remembered: nothing read
    fresh = tuple({k: v + 0 for k, v in p.items()} for p in result.params)  # new arrays
    with pytest.raises(pytest.fail.Exception, match="read again"):
        checks.check_params_finite(NET, fresh, "predict")


def test_predict_composes_with_jit_grad_and_vmap():
    eager = np.asarray(network.predict(NET, PARAMS, X))
    np.testing.assert_allclose(jax.jit(lambda X: network.predict(NET, PARAMS, X))(X), eager,
                               rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda p, X: network.predict(NET, p, X))(PARAMS, X),
                               eager, rtol=1e-6)
    sets = jax.vmap(lambda x: network.predict(NET, PARAMS, x))(X.reshape(4, 4, 3))
    np.testing.assert_allclose(sets.reshape(16, 2), eager, rtol=1e-6)
    g = jax.grad(lambda p: network.predict(NET, p, X)[:, 0].sum())(PARAMS)
    auto = jax.grad(lambda p: network.forward(NET, p, jnp.asarray(X))[0][:, 0].sum())(PARAMS)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(auto)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(LayerError, match=r"X: expected shape \(m, 3\)"):  # a sample is not a set
        jax.vmap(lambda x: network.predict(NET, PARAMS, x))(X)


@pytest.mark.parametrize("call", ["fit", "predict", "evaluate", "init", "forward", "apply",
                                  "backward"])
def test_a_list_of_layers_is_not_a_network(call):
    net = [layers.Dense(2, "softmax")]
    with pytest.raises(TypeError, match=rf"{call}: net must be a Network \(from network\.build"):
        {"fit": lambda: network.fit(net, PARAMS, {"dtrain": (X, Y)}, epochs=1),
         "predict": lambda: network.predict(net, PARAMS, X),
         "evaluate": lambda: network.evaluate(net, PARAMS, X, Y, ("accuracy",)),
         "init": lambda: network.init(net, 0),
         "forward": lambda: network.forward(net, PARAMS, X),
         "apply": lambda: network.apply(net, PARAMS, X),
         "backward": lambda: network.backward(net, PARAMS, ({}, {}), Y)}[call]()


def test_msle_labels_must_be_above_minus_one():
    net = network.build([layers.Dense(1, "relu")], (3,))
    with pytest.raises(ValueError, match=r"dtrain Y: loss MSLE needs labels above -1"):
        network.fit(net, network.init(net, 0), {"dtrain": (X, np.full((16, 1), -1.0))},
                    epochs=1, loss="MSLE")


@pytest.mark.parametrize("callbacks", [lambda e, h: None, None, "print"])
def test_callbacks_must_be_a_sequence_of_callables(callbacks):
    with pytest.raises(TypeError, match="fit: callbacks must be a sequence of callables"):
        fit(callbacks=callbacks)


def test_a_ragged_list_is_named():
    with pytest.raises(ValueError, match="dtrain X: not an array of one shape"):
        fit(data={"dtrain": ([[1.0, 2.0, 3.0], [1.0, 2.0]], Y[:2])})


def test_a_0d_streamed_batch_is_named_wherever_it_comes():
    for at in (0, 2):
        batches = [(X[:8], Y[:8])] * 4
        batches[at] = (np.float32(1.0), Y[:8])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(LayerError, match=rf"dtrain batch {at} X: expected shape \(m, 3\)"):
                fit(data={"dtrain": batches})


def test_values_beyond_float16_are_refused_under_a_float16_policy():
    big = X.copy()
    big[3, 1] = 1e5
    net16 = network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (3,),
                          policy="float16")
    msg = r"values up to 100000 do not fit float16 \(at most 65504\).*'float16'; scale the inputs"
    with pytest.raises(ValueError, match="predict X: " + msg):
        network.predict(net16, PARAMS, big)
    with pytest.raises(ValueError, match="dtrain X: " + msg):
        network.fit(net16, PARAMS, {"dtrain": (big, Y)}, epochs=1)
    assert network.predict(net16, PARAMS, X).shape == (16, 2)  # in range: fine


def test_evaluate_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown metric 'foo'"):
        network.evaluate(NET, PARAMS, X, Y, ("foo",))
    one = network.evaluate(NET, PARAMS, X, Y, "accuracy")  # one name, not its letters
    assert set(one) == {"accuracy"}
    assert float(one["accuracy"]) == float(network.evaluate(NET, PARAMS, X, Y, ("accuracy",))[
        "accuracy"])
    with pytest.raises(ValueError, match=re.escape("evaluate Y: labels of sample shape (1,)")):
        network.evaluate(NET, PARAMS, X, Y[:, :1], ("accuracy",))
    with pytest.raises(ValueError, match="evaluate X: contains NaN or inf"):
        network.evaluate(NET, PARAMS, np.full_like(X, np.nan), Y, ("accuracy",))
    with pytest.raises(LayerError, match=re.escape("evaluate X: expected shape (m, 3)")):
        network.evaluate(NET, PARAMS, X[:, :2], Y, ("accuracy",))


def test_evaluate_checks_the_parameters_labels_and_range_as_fit_and_predict_do():
    with pytest.raises(ValueError, match=r"evaluate: layer 1 \(Dense\) parameter 'W' holds NaN"):
        network.evaluate(NET, with_param(1, "W", PARAMS[1]["W"].at[0, 0].set(jnp.nan)), X, Y,
                         ("accuracy",))
    with pytest.raises(ValueError, match=r"evaluate: params must be a tuple of 2 dicts .*got "
                                         r"tuple of 1$"):
        network.evaluate(NET, PARAMS[:1], X, Y, ("accuracy",))  # was layer 0's output scored
    with pytest.raises(ValueError, match=r"evaluate: params must be .*got NoneType$"):
        network.evaluate(NET, None, X, Y, ("accuracy",))
    with pytest.raises(ValueError, match=r"evaluate: layer 1 \(Dense\) parameter 'W' must be "
                                         r"float32 or float64 \(4, 2\)"):
        network.evaluate(NET, with_param(1, "W", PARAMS[1]["W"][:2]), X, Y, ("accuracy",))
    with pytest.raises(ValueError, match=r"evaluate Y: loss BCE needs labels in \[0, 1\]"):
        network.evaluate(NET, PARAMS, X, 3 * Y, ("accuracy", "BCE"))
    net16 = network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (3,),
                          policy="float16")
    with pytest.raises(ValueError, match=r"evaluate X: values up to 100000 do not fit float16"):
        network.evaluate(net16, PARAMS, np.where(X > 0, X, 1e5), Y, ("accuracy",))
    # inside a compiled function the values are not read: the shapes still are
    scores = jax.jit(lambda p: network.evaluate(NET, p, X, Y, ("accuracy", "BCE")))(PARAMS)
    assert 0.0 <= float(scores["accuracy"]) <= 1.0


@pytest.mark.parametrize("fn", [network.loss_value, network.gradients,
                                network.autodiff_gradients])
def test_the_objective_refuses_labels_that_do_not_fit_the_output(fn):
    with pytest.raises(LayerError, match=re.escape(
            f"{fn.__name__}: Y of shape (16, 1) does not fit the output of Dense, of shape "
            "(16, 2)")):
        fn(NET, PARAMS, jnp.asarray(X), jnp.asarray(Y[:, :1]), "MSE")
    with pytest.raises(ValueError, match="unknown loss 'MSEE'"):
        fn(NET, PARAMS, jnp.asarray(X), jnp.asarray(Y), "MSEE")


@pytest.mark.parametrize("kw, match", [
    ({"batch": 0}, "batch must be an int >= 1, got 0"),
    ({"eps": 0}, "eps must be a finite number > 0, got 0"),
    ({"rtol": float("nan")}, "rtol must be a finite number > 0"),
    ({"X": np.zeros((2, 4))},
     re.escape("X must have shape (m >= 1, 3) for Dense, got (2, 4)")),
    ({"X": np.full((2, 3), np.inf)}, "X contains NaN or inf"),
    ({"params": {"W": np.zeros((3, 2))}},
     re.escape("params of Dense must have the keys ['W', 'b'], got ['W']")),
    ({"params": {"W": np.zeros((4, 2)), "b": np.zeros((1, 2))}},
     re.escape("params['W'] of Dense must have shape (3, 2), got (4, 2)")),
])
def test_check_layer_checks_its_arguments(kw, match):
    with pytest.raises(ValueError, match="check_layer: " + match):
        testing.check_layer(layers.Dense(2), (3,), **kw)


@pytest.mark.parametrize("X_shape, kw, error, match", [
    (3, {}, TypeError, re.escape("X_shape must be a tuple of ints, the sample shape without "
                                 "the batch axis (e.g. (4,)), got 3")),
    (None, {}, TypeError, "X_shape must be a tuple of ints.*got None"),
    ((0,), {}, ValueError, re.escape("X_shape must be a tuple of positive ints, got (0,)")),
    ((3,), {"seed": None}, TypeError, "seed must be an int, got None"),
    ((3,), {"seed": "a"}, TypeError, "seed must be an int, got 'a'"),
    ((3,), {"seed": -1}, ValueError, re.escape("seed must be in [0, 2**63), got -1")),
    ((3,), {"seed": 2**70}, ValueError, re.escape("seed must be in [0, 2**63)")),
    ((3,), {"training": "no"}, TypeError, "training must be True or False, got 'no'"),
    ((3,), {"X": np.ones((2, 3)) * 1j}, TypeError,
     "X must hold real numbers .*got dtype complex128"),
    ((3,), {"X": np.full((2, 3), "a")}, TypeError, "X must hold real numbers .*got dtype <U1"),
    ((3,), {"X": [[1, 2, 3], [1, 2]]}, ValueError, "X is not an array of one shape"),
    ((3,), {"params": {"W": np.full((3, 2), "a"), "b": np.zeros((1, 2))}}, TypeError,
     r"params\['W'\] must hold real numbers"),
    ((3,), {"params": {"W": [[1, 2], [3]], "b": np.zeros((1, 2))}}, ValueError,
     r"params\['W'\] is not an array of one shape"),
    ((3,), {"params": {"W": np.full((3, 2), np.nan), "b": np.zeros((1, 2))}}, ValueError,
     r"params\['W'\] contains NaN or inf values"),
])
def test_check_layer_refuses_wrong_arguments_naming_them(X_shape, kw, error, match):
    with pytest.raises(error, match="check_layer: " + match):
        testing.check_layer(layers.Dense(2), X_shape, **kw)


def test_check_layer_refuses_shapes_beyond_memory_before_drawing(monkeypatch):
    """A batch or parameters larger than the memory free are named before anything is
    drawn (X_shape=(10**6,) for a Dense of 10**5 units asked for 750 GiB and filled the
    machine); the limit is the device's free memory, here set to 1 MiB."""
    from epynn_jax import testing as module

    monkeypatch.setattr(module, "memory_limit", lambda: (2**20, "the host"))
    with pytest.raises(ValueError, match=r"check_layer: Dense on a batch of 3 samples of shape "
                                         r"\(5000,\) needs about .* GiB in float64 .*the host "
                                         r"has 0\.0 GiB free"):
        testing.check_layer(layers.Dense(2), (5000,))
    with pytest.raises(ValueError, match=r"parameters 0\.0\d+ GiB"):
        testing.check_layer(layers.Dense(5000), (4,))
    assert testing.check_layer(layers.Dense(2), (3,)).passed  # small: checked as before


def test_check_layer_takes_numpy_ints_in_the_sample_shape():
    """As network.build does."""
    report = testing.check_layer(layers.Dense(2), (np.int64(3),))
    assert report.passed and report["dX"].shape == (3, 3)


def test_check_layer_takes_a_layer():
    with pytest.raises(TypeError, match="check_layer: layer must be a layer"):
        testing.check_layer("Dense", (3,))


def test_the_mesh_batch_size_hint_fits_the_set():
    """(A batch larger than the set is cut to it: 64 for 63 samples would fail again.)"""
    from epynn_jax.network import parallel

    mesh = types.SimpleNamespace(shape={"data": 4}, axis_names=("data",))
    with pytest.raises(ValueError, match=r"\(try batch_size=60\)"):
        parallel.check_batch_size(mesh, 63, 63)
    with pytest.raises(ValueError, match=r"\(try batch_size=60 or 64\)"):
        parallel.check_batch_size(mesh, 63, 100)
    with pytest.raises(ValueError, match=r"\(try batch_size=4 with at least 4 samples\)"):
        parallel.check_batch_size(mesh, 3, 3)
    parallel.check_batch_size(mesh, 8, 8)


def test_bfloat16_data_is_numeric_data():
    """bfloat16 arrays (NumPy kind 'V', from ml_dtypes) are converted like float16 ones;
    were refused as 'expected numeric data'."""
    Xb, Yb = jnp.asarray(X, jnp.bfloat16), np.asarray(Y, jnp.bfloat16)  # JAX and NumPy arrays
    X32, Y32 = np.asarray(Xb, np.float32), np.asarray(Yb, np.float32)
    for stream in (False, True):
        got, want = (fit(data={"dtrain": xy}, key=1, stream=stream)
                     for xy in ((Xb, Yb), (X32, Y32)))
        jax.tree.map(np.testing.assert_array_equal, got.params, want.params)
    np.testing.assert_array_equal(network.predict(NET, PARAMS, Xb),
                                  network.predict(NET, PARAMS, X32))
    with pytest.raises(TypeError, match="dtrain X: expected numeric data, got dtype <U1"):
        fit(data={"dtrain": (np.full((16, 3), "a"), Y)})


@pytest.mark.parametrize("name", ["allow_new_data", "check_finite", "debug"])
def test_fits_flags_are_bools(name):
    with pytest.raises(TypeError, match=rf"fit: {name} must be True or False, got 'no'"):
        fit(**{name: "no"})  # was taken as True
    fit(**{name: np.bool_(name == "check_finite")})  # NumPy's bools are bools


def test_a_schedule_beside_an_optimizer_is_refused():
    import optax

    from epynn_jax import Schedule

    with pytest.raises(ValueError, match="fit: schedule is the learning rate of the default "
                                         "optimizer .* pass one or the other"):
        fit(optimizer=optax.adam(1e-3), schedule=Schedule(0.5))  # was ignored silently
    fit(optimizer=optax.adam(1e-3))


@pytest.mark.parametrize("which", ["X", "Y"])
def test_a_split_of_none_is_named(which):
    pair = (None, Y) if which == "X" else (X, None)
    with pytest.raises(TypeError, match=rf"dtrain {which}: None, not an array"):
        fit(data={"dtrain": pair})  # Y was 'Y has 0 samples'
    with pytest.raises(TypeError, match=rf"evaluate {which}: None, not an array"):
        network.evaluate(NET, PARAMS, *pair, ("accuracy",))
