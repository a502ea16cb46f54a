"""What one call of ``predict`` (functional and facade) does besides the forward: no
``jax.device_put`` of its input or of parameters already placed, no rebuild of a network
built before. (Their cost is measured by ``benchmarks/bench_latency.py``, not here.)"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.maths import relu, softmax
from epynn_jax.compat.dense.models import Dense as CompatDense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.layers.template import Template

RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def net_params():
    net = network.build([layers.Dense(5, "relu"), layers.Dense(3, "softmax")], input_shape=(4,))
    return net, network.init(net, 0)


def _numpy_forward(params, X):
    h = np.maximum(X @ np.asarray(params[0]["W"], np.float64) + params[0]["b"], 0)
    z = h @ np.asarray(params[1]["W"], np.float64) + params[1]["b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _NoDevicePut:
    """Count ``jax.device_put`` calls (patched where ``predict`` would reach it)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = jax.device_put

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(jax, "device_put", counting)


def test_predict_of_host_data_places_it_in_the_compiled_call(net_params, monkeypatch):
    net, params = net_params
    X = RNG.normal(size=(6, 4))  # float64: converted on the host
    expected = _numpy_forward(params, X)
    network.predict(net, params, X)  # compiled before counting
    puts = _NoDevicePut(monkeypatch)
    A = network.predict(net, params, X)
    assert puts.calls == 0
    np.testing.assert_allclose(np.asarray(A), expected, rtol=1e-5, atol=1e-6)


def test_predict_reads_its_own_copy_of_the_input(net_params):
    # The host buffer handed to the compiled call is predict's own: the caller may change
    # (or free) X as soon as predict returns, before the asynchronous call has run.
    net, params = net_params
    X = RNG.normal(size=(256, 4)).astype(np.float32)  # the working dtype: no conversion
    expected = _numpy_forward(params, X.astype(np.float64))
    A = network.predict(net, params, X)
    X[:] = np.nan
    np.testing.assert_allclose(np.asarray(A), expected, rtol=1e-5, atol=1e-6)


def test_predict_of_host_and_device_inputs_agree(net_params):
    net, params = net_params
    X = RNG.normal(size=(9, 4)).astype(np.float32)
    on_host = network.predict(net, params, X)
    on_device = network.predict(net, params, jax.device_put(X))
    np.testing.assert_array_equal(np.asarray(on_host), np.asarray(on_device))


# -- build: the same layers and shape build the same Network once ------------------------


@dataclasses.dataclass(frozen=True)
class _Counted(Template):
    """A Template that counts its compute_shapes calls on its class."""

    calls = [0]

    def compute_shapes(self, X_shape):
        type(self).calls[0] += 1
        return super().compute_shapes(X_shape)


def test_build_of_the_same_layers_and_shape_is_built_once():
    stack = [_Counted(), layers.Dense(2)]
    before = _Counted.calls[0]
    first = network.build(stack, (3,))
    again = network.build(list(stack), (3,))
    assert again is first
    assert _Counted.calls[0] == before + 1
    other = network.build(stack, (4,))  # another shape: built
    assert other.input_shape == (4,) and _Counted.calls[0] == before + 2
    bf16 = network.build(stack, (3,), "bfloat16")  # another policy: built
    assert bf16 is not first and str(bf16.policy) != str(first.policy)


def test_build_of_unhashable_layers_builds_each_time():
    @dataclasses.dataclass(frozen=True, eq=False)
    class Unhashable(Template):
        __hash__ = None
        calls = [0]

        def compute_shapes(self, X_shape):
            type(self).calls[0] += 1
            return super().compute_shapes(X_shape)

    layer = Unhashable()
    a = network.build([layer], (3,))
    b = network.build([layer], (3,))
    assert Unhashable.calls[0] == 2 and a.output_shape == b.output_shape == (3,)


def test_build_errors_are_raised_every_time():
    for _ in range(2):
        with pytest.raises(layers.LayerError, match="layer 0"):
            network.build([layers.Dense(2)], (3, 4))


# -- the facade's predict ------------------------------------------------------------------


@pytest.fixture()
def trained():
    set_quiet(True)
    try:
        X = RNG.normal(size=(24, 4))
        Y = (X[:, 0] > 0).astype(int)
        model = EpyNN([Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=8),
                       CompatDense(5, relu), CompatDense(2, softmax)], name="overhead")
        model.initialize(loss="MSE", seed=3)
        model.train(1, init_logs=False)
        yield model
    finally:
        set_quiet(False)


def _facade_forward(model, X):
    h = np.maximum(X @ model.layers[1].p["W"] + model.layers[1].p["b"], 0)
    z = h @ model.layers[2].p["W"] + model.layers[2].p["b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_facade_predict_places_nothing_the_training_placed(trained, monkeypatch):
    X = RNG.normal(size=(3, 4))
    trained.predict(X)  # compiled before counting
    puts = _NoDevicePut(monkeypatch)
    A = trained.predict(X).A
    assert puts.calls == 0
    np.testing.assert_allclose(A, _facade_forward(trained, X), rtol=1e-5, atol=1e-6)


def test_facade_predict_sees_parameters_assigned_after_training(trained):
    X = RNG.normal(size=(3, 4))
    trained.predict(X)
    W = np.array(trained.layers[1].p["W"])
    W[:, 0] += 1.0
    trained.layers[1].p["W"] = W  # a new array: placed anew
    np.testing.assert_allclose(trained.predict(X).A, _facade_forward(trained, X),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="read-only"):  # what training left cannot change
        trained.layers[2].p["W"][0, 0] = 5.0


# -- evaluate, called eagerly: one compiled program -----------------------------------------


def test_evaluate_called_eagerly_runs_one_compiled_program():
    from tests.network.test_fit_compiles import compiled

    # 7 and 19 units: a network no other test builds, so every cache starts cold for it
    net = network.build([layers.Dense(19, "tanh"), layers.Dense(7, "softmax")], (4,))
    params = network.init(net, 1)
    X = RNG.normal(size=(30, 4))
    Y = np.eye(7)[RNG.integers(0, 7, 30)]
    metrics = ("MSE", "accuracy", "CCE")
    with compiled() as names:
        first = network.evaluate(net, params, X, Y, metrics)
    assert names == ["jit(_evaluate)"]  # op by op, it compiled each operation apart
    with compiled() as names:
        again = network.evaluate(net, params, X, Y, metrics)
    assert names == []
    assert list(first) == list(metrics)  # the caller's order, not the compiled dict's
    A = _numpy_forward_tanh(params, X)
    expected = {"MSE": np.mean((A - Y) ** 2),
                "accuracy": np.mean(A.argmax(1) == Y.argmax(1)),
                "CCE": np.mean(-np.sum(Y * np.log(A), axis=1))}
    for name in metrics:
        assert float(first[name]) == float(again[name])
        np.testing.assert_allclose(float(first[name]), expected[name], rtol=1e-5, atol=1e-6)


def test_evaluate_traced_and_eager_agree():
    net = network.build([layers.Dense(5, "relu"), layers.Dense(3, "softmax")], (4,))
    params = network.init(net, 2)
    X = RNG.normal(size=(10, 4)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 10)]
    eager = network.evaluate(net, params, X, Y, ("accuracy", "MSE"))
    traced = jax.jit(lambda p, X, Y: network.evaluate(net, p, X, Y, ("accuracy", "MSE")))(
        params, X, Y)
    for name in ("accuracy", "MSE"):
        np.testing.assert_allclose(float(eager[name]), float(traced[name]), rtol=1e-6)


def _numpy_forward_tanh(params, X):
    h = np.tanh(X @ np.asarray(params[0]["W"], np.float64) + params[0]["b"])
    z = h @ np.asarray(params[1]["W"], np.float64) + params[1]["b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fit_makes_an_int_seeds_key_once_and_again_if_it_was_deleted(net_params, monkeypatch):
    # fit(key=None) or key=int made jax.random.key(n) eagerly at every call (about
    # 0.15 ms); a key is immutable, so it is made once per seed and PRNG implementation
    from epynn_jax.network import checks

    made = []
    real = jax.random.key
    monkeypatch.setattr(jax.random, "key", lambda seed, **k: (made.append(seed),
                                                               real(seed, **k))[1])
    checks._seed_key.cache_clear()
    net, params = net_params
    X = np.ones((8, 4), np.float32)
    Y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    first = network.fit(net, params, {"dtrain": (X, Y)}, epochs=1, key=7, eval_splits=())
    again = network.fit(net, params, {"dtrain": (X, Y)}, epochs=1, key=7, eval_splits=())
    network.fit(net, params, {"dtrain": (X, Y)}, epochs=1, eval_splits=())  # None: seed 0
    assert made == [7, 0]
    np.testing.assert_array_equal(jax.random.key_data(first.key),
                                  jax.random.key_data(again.key))
    checks.check_key(7).delete()  # a caller may delete the key it was given
    key = checks.check_key(7)
    assert not key.is_deleted() and made == [7, 0, 7]
    np.testing.assert_array_equal(jax.random.key_data(key),
                                  jax.random.key_data(real(7)))
