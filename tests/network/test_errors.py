"""Clear errors for bad input, raised before any tracing, naming the layer or argument."""

from __future__ import annotations

import re
from unittest import mock

import chex
import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.layers import LayerError
from epynn_jax.maths.schedules import Schedule


@pytest.fixture
def no_trace(monkeypatch):
    """Fail the test if fit or predict reaches a compiled function."""
    boom = mock.Mock(side_effect=AssertionError("traced before validating"))
    monkeypatch.setattr(network.fitting, "run_epoch", boom)
    monkeypatch.setattr(network.epoch, "run_epochs", boom)
    monkeypatch.setattr(network.epoch, "predict_jit", boom)
    return boom


def _XY(m=6, shape=(4, 2), k=2):
    rng = np.random.default_rng(0)
    return rng.standard_normal((m, *shape)), np.eye(k)[rng.integers(0, k, m)]


# -- build -------------------------------------------------------------------------------


def test_build_wrong_rank_names_the_layer():
    with pytest.raises(LayerError, match=r"layer 1 \(Dense\).*expected 2-D input.*Flatten"):
        network.build([layers.Template(), layers.Dense(2)], (4, 2))


def test_build_invalid_size():
    with pytest.raises(LayerError, match=r"build: input_shape must be a tuple of positive ints.*"
                                         r"got \(0, 2\)"):
        network.build([layers.Flatten(), layers.Dense(2)], (0, 2))
    with pytest.raises(LayerError, match=r"Flatten: invalid input shape \(0, 2\)"):
        layers.Flatten().compute_shapes((0, 2))


def test_build_needs_layers():
    with pytest.raises(TypeError, match="layer 1 is not a Layer"):
        network.build([layers.Flatten(), "Dense"], (4, 2))
    with pytest.raises(LayerError, match="at least one layer"):
        network.build([], (4,))


def test_unbuilt_layers_in_network():
    with pytest.raises(LayerError, match=r"layer 0 \(Dense\) is not built"):
        network.Network((layers.Dense(2),))


# -- names -----------------------------------------------------------------------------------


def test_unknown_names():
    with pytest.raises(ValueError, match="Dense.activate: unknown activation 'relu6'"):
        layers.Dense(2, "relu6")
    with pytest.raises(ValueError, match="Dense: initialization: unknown initializer 'he_normal'"):
        layers.Dense(2, "relu", "he_normal")
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        Schedule(schedule="cosine")


def test_fit_unknown_loss_and_metric(net, params, no_trace):
    data = {"dtrain": _XY()}
    with pytest.raises(ValueError, match="unknown loss 'XENT'"):
        network.fit(net, params, data, epochs=1, loss="XENT")
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        network.fit(net, params, data, epochs=1, metrics=("accuracy", "auc"))
    no_trace.assert_not_called()


def test_fit_cce_without_softmax(no_trace):
    net = network.build([layers.Dense(2, "sigmoid")], (3,))
    params = network.init(net, jax.random.key(0))
    X, Y = _XY(shape=(3,))
    with pytest.raises(ValueError, match="'CCE' needs a softmax output.*'sigmoid'"):
        network.fit(net, params, {"dtrain": (X, Y)}, epochs=1, loss="CCE")
    tanh = network.build([layers.Dense(2, "tanh")], (3,))
    for loss in ("CCE", "BCE", "MSLE"):
        with pytest.raises(ValueError, match=f"{loss}"):
            network.fit(tanh, network.init(tanh, jax.random.key(0)), {"dtrain": (X, Y)},
                        epochs=1, loss=loss)
    no_trace.assert_not_called()


# -- data --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,msg", [
    ((6, 8), r"dtrain X: expected shape \(m, 4, 2\) for the input layer Flatten, got \(6, 8\)"),
    ((6, 4, 3), r"expected shape \(m, 4, 2\).*got \(6, 4, 3\)"),
    ((6, 4, 2, 1), r"got \(6, 4, 2, 1\)"),
    ((0, 4, 2), r"dtrain X: no samples"),
])
def test_fit_wrong_input_shape(net, params, no_trace, shape, msg):
    X = np.zeros(shape)
    Y = np.eye(2)[np.zeros(shape[0], int)]
    with pytest.raises(LayerError, match=msg):
        network.fit(net, params, {"dtrain": (X, Y)}, epochs=1)
    no_trace.assert_not_called()


def test_fit_wrong_shape_in_validation_split(net, params, no_trace):
    with pytest.raises(LayerError, match=r"dval X: expected shape"):
        network.fit(net, params, {"dtrain": _XY(), "dval": _XY(shape=(2, 4))}, epochs=1)
    no_trace.assert_not_called()


@pytest.mark.parametrize("where", ["X", "Y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fit_nan_or_inf(net, params, no_trace, where, bad):
    X, Y = _XY()
    (X if where == "X" else Y)[2, 0] = bad
    with pytest.raises(ValueError, match=f"dtrain {where}: contains NaN or inf"):
        network.fit(net, params, {"dtrain": (X, Y)}, epochs=1)
    no_trace.assert_not_called()


@pytest.mark.parametrize("Y_shape", [(6, 3), (6,), (6, 2, 1)])
def test_fit_labels_do_not_fit_output(net, params, no_trace, Y_shape):
    X, _ = _XY()
    with pytest.raises(ValueError, match=r"dtrain Y: labels of sample shape .* do not fit the "
                                         r"output of Dense \(sample shape \(2,\)\)"):
        network.fit(net, params, {"dtrain": (X, np.zeros(Y_shape))}, epochs=1)
    no_trace.assert_not_called()


def test_fit_sample_count_mismatch(net, params, no_trace):
    X, Y = _XY()
    with pytest.raises(ValueError, match="dtrain: X has 6 samples but Y has 5"):
        network.fit(net, params, {"dtrain": (X, Y[:5])}, epochs=1)
    no_trace.assert_not_called()


@pytest.mark.parametrize("loss", ["BCE", "CCE"])
def test_fit_labels_out_of_range_for_cross_entropy(net, params, no_trace, loss):
    X, Y = _XY()
    Y[0, 0] = 2.0
    with pytest.raises(ValueError, match=f"dtrain Y: loss {loss} needs labels in"):
        network.fit(net, params, {"dtrain": (X, Y)}, epochs=1, loss=loss)
    no_trace.assert_not_called()


def test_fit_non_numeric_data(net, params, no_trace):
    X, Y = _XY()
    with pytest.raises(TypeError, match="dtrain X: expected numeric data"):
        network.fit(net, params, {"dtrain": (X.astype(str), Y)}, epochs=1)
    no_trace.assert_not_called()


def test_fit_data_structure(net, params, no_trace):
    X, Y = _XY()
    with pytest.raises(ValueError, match="no training split 'dtrain'"):
        network.fit(net, params, {"train": (X, Y)}, epochs=1)
    with pytest.raises(TypeError, match=r"data\['dtrain'\]: expected a pair \(X, Y\)"):
        network.fit(net, params, {"dtrain": X}, epochs=1)
    with pytest.raises(TypeError, match=r"fit: data must map split names to \(X, Y\), got tuple"):
        network.fit(net, params, (X, Y), epochs=1)
    no_trace.assert_not_called()


def test_two_batches_of_nested_lists_are_told_apart_in_the_error(net, params, no_trace):
    # [(X0, Y0), (X1, Y1)] of nested lists reads as one pair (X = (X0, Y0)); it was
    # refused as "dtrain X: not an array of one shape" with no word of batches
    X, Y = _XY(m=2)
    batch = (X.tolist(), Y.tolist())
    with pytest.raises(ValueError, match=r"dtrain X: .*If data\['dtrain'\] is a list of two "
                                         r"\(X, Y\) batches, give their X and Y as arrays"):
        network.fit(net, params, {"dtrain": [batch, batch]}, epochs=1)
    batches = [tuple(np.asarray(a) for a in batch)] * 2  # as arrays: two batches, trained
    assert network.fit(net, params, {"dtrain": batches}, epochs=1, eval_splits=()).epochs == 1
    with pytest.raises(ValueError, match="not an array of one shape") as err:  # no batches
        network.fit(net, params, {"dtrain": ([[1.0], [1.0, 2.0]], Y)}, epochs=1)
    assert "batches" not in str(err.value)


# -- batch size and epochs -----------------------------------------------------------------


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True, None, "3"])
def test_fit_bad_epochs(net, params, no_trace, epochs):
    with pytest.raises(ValueError, match=f"fit: epochs must be a positive int, got {epochs!r}"):
        network.fit(net, params, {"dtrain": _XY()}, epochs=epochs)
    no_trace.assert_not_called()


@pytest.mark.parametrize("batch_size", [0, -4, 2.0, True, "8"])
def test_fit_bad_batch_size(net, params, no_trace, batch_size):
    with pytest.raises(ValueError, match=f"fit: batch_size must be a positive int, got "
                                         f"{re.escape(repr(batch_size))}"):
        network.fit(net, params, {"dtrain": _XY()}, epochs=1, batch_size=batch_size)
    no_trace.assert_not_called()


# -- predict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 8), (5, 2, 4), (4, 2)])
def test_predict_wrong_shape(net, params, no_trace, shape):
    with pytest.raises(LayerError, match=r"X: expected shape \(m, 4, 2\) for the input layer "
                                         r"Flatten"):
        network.predict(net, params, np.zeros(shape))
    no_trace.assert_not_called()


def test_predict_nan(net, params, no_trace):
    X, _ = _XY()
    X[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        network.predict(net, params, X)
    no_trace.assert_not_called()


def test_predict_wrong_params(net, params, no_trace):
    with pytest.raises(ValueError, match="params"):
        network.predict(net, params[:2], _XY()[0])
    no_trace.assert_not_called()


def test_fit_wrong_params(net, params, no_trace):
    data = {"dtrain": _XY()}
    with pytest.raises(ValueError, match=r"fit: params must be a tuple of 3 dicts \(one per layer"):
        network.fit(net, params[1:], data, epochs=1)
    bad = (params[0], {"W": params[1]["W"].T, "b": params[1]["b"]}, params[2])
    with pytest.raises(ValueError, match=r"fit: layer 1 \(Dense\) parameter 'W' must be float32 "
                                         r"or float64 \(8, 3\), got float32 \(3, 8\)"):
        network.fit(net, bad, data, epochs=1)
    with pytest.raises(ValueError, match=r"fit: layer 2 \(Dense\) has parameters \['W', 'b'\], "
                                         r"got \['W'\]"):
        network.fit(net, (*params[:2], {"W": params[2]["W"]}), data, epochs=1)
    no_trace.assert_not_called()


@pytest.mark.parametrize("schedule", ["exp_decay", 0.1, None, {"learning_rate": 0.1}])
def test_fit_bad_schedule(net, params, no_trace, schedule):
    with pytest.raises(TypeError, match="fit: schedule must be a Schedule"):
        network.fit(net, params, {"dtrain": _XY()}, epochs=1, schedule=schedule)
    no_trace.assert_not_called()


@pytest.mark.parametrize("key", ["seed", 1.5, np.zeros(3), True])
def test_fit_bad_key(net, params, no_trace, key):
    with pytest.raises(TypeError, match=r"fit: key must be a PRNG key such as jax.random.key\(0\)"):
        network.fit(net, params, {"dtrain": _XY()}, epochs=1, key=key)
    no_trace.assert_not_called()


def test_fit_negative_int_seed(net, params, no_trace):
    with pytest.raises(ValueError, match=r"fit: an int seed must be in \[0, 2\*\*63\)"):
        network.fit(net, params, {"dtrain": _XY()}, epochs=1, key=-1)
    no_trace.assert_not_called()


def test_fit_int_seed_is_that_key(net, params):
    data = {"dtrain": _XY()}
    a = network.fit(net, params, data, epochs=2, batch_size=2, key=3)
    b = network.fit(net, params, data, epochs=2, batch_size=2, key=jax.random.key(3))
    c = network.fit(net, params, data, epochs=2, batch_size=2, key=4)
    assert np.array_equal(a.params[-1]["W"], b.params[-1]["W"])
    assert not np.array_equal(a.params[-1]["W"], c.params[-1]["W"])


def test_fit_accepts_a_single_metric_name(net, params):
    data = {"dtrain": _XY()}
    a = network.fit(net, params, data, epochs=2, metrics="accuracy", batch_size=2)
    b = network.fit(net, params, data, epochs=2, metrics=("accuracy",), batch_size=2)
    assert set(a.history) == {"accuracy", "MSE"}
    chex.assert_trees_all_equal(a.params, b.params)
