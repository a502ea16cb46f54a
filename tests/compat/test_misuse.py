"""What the facade does where a script misuses it, or where EpyNN's answer is a bug: a
clear error, or EpyNN's numbers where EpyNN's are right."""

from __future__ import annotations

import re

import numpy as np
import pytest

from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.maths import softmax, tanh
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.lstm.models import LSTM
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.compat.rnn.models import RNN
from epynn_jax.layers.base import LayerError

from .helpers import assert_same, lib, run

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 5))
LABELS = (X[:, 0] > 0).astype(int)


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def trained(layers, Y=LABELS, **emb):
    model = EpyNN([Embedding(X_data=X, Y_data=Y, batch_size=8, **emb), *layers])
    model.initialize(loss="MSE", seed=1)
    model.train(1, init_logs=False)
    return model


def test_a_nan_metric_does_not_stop_training_as_in_epynn(x64, epynn):
    """MSLE asked for as a metric of outputs of both signs is NaN (log of a negative) in
    both libraries; only the training loss (MSE) decides whether training diverged."""
    Y = (X[:, :2] @ np.array([1.0, -2.0])).reshape(-1, 1)
    make = lambda ns: [ns.Dense(1, ns.maths.identity)]  # noqa: E731
    kw = dict(epochs=3, hpars={"learning_rate": 0.01}, metrics=["MAE", "MSLE"],
              embedding_kw={"batch_size": 10})
    ours = run(lib("epynn_jax.compat"), make, X, Y, **kw)
    theirs = run(lib("epynn"), make, X, Y, **kw)
    assert ours["model"].diverged is None
    assert len(ours["metrics"]["MSE"][0]) == 3 and np.isnan(ours["metrics"]["MSLE"][0]).all()
    assert_same(ours, theirs)


def test_a_function_of_the_users_named_like_a_builtin_is_refused():
    def tanh(x, deriv=False):  # LeCun's scaled tanh: not the library's
        return 1.7159 * np.tanh(2 * x / 3)

    with pytest.raises(ValueError, match=r"Dense: activate: .* is not epynn\.commons\.maths\.tanh"):
        Dense(4, tanh)
    with pytest.raises(ValueError, match=r"LSTM: activate: .* not epynn\.commons\.maths\.tanh"):
        LSTM(3, activate=tanh)
    assert Dense(4, "tanh").activation == Dense(4, globals()["tanh"]).activation == {
        "activate": "tanh"}


def test_a_users_initializer_named_like_a_builtin_draws_the_weights():
    def xavier(shape, rng=None):
        return np.full(shape, 0.125)

    model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True),
                   Dense(2, softmax, initialization=xavier)])
    model.initialize(loss="MSE", seed=1)
    np.testing.assert_array_equal(model.layers[1].p["W"], np.full((5, 2), 0.125))


@pytest.mark.parametrize("Y, units", [(np.eye(2)[LABELS], 3), (LABELS, 2)])
def test_labels_that_do_not_fit_the_output_are_refused_at_initialize(Y, units):
    """(EpyNN broadcasts a label column against two units, and scores it as one-hot.)"""
    model = EpyNN([Embedding(X_data=X, Y_data=Y, batch_size=8), Dense(units, softmax)])
    got = (np.shape(Y)[1] if np.ndim(Y) == 2 else 1,)
    with pytest.raises(ValueError, match=re.escape(
            f"labels of dtrain (Y of sample shape {got}) do not fit the output of layer 1 "
            f"(Dense, sample shape ({units},))")):
        model.initialize(loss="MSE", seed=1)


def test_a_column_of_labels_is_one_hot_encoded_like_a_vector():
    column = Embedding(X_data=X, Y_data=LABELS.reshape(-1, 1), Y_encode=True)
    vector = Embedding(X_data=X, Y_data=LABELS, Y_encode=True)
    np.testing.assert_array_equal(column.dtrain.Y, vector.dtrain.Y)
    assert column.dtrain.Y.shape == (27, 2)
    with pytest.raises(ValueError, match=r"one label per sample, shape \(N,\) or \(N, 1\), got "
                                         r"Y_data of shape \(40, 2\)"):
        Embedding(X_data=X, Y_data=np.stack([LABELS, LABELS], 1), Y_encode=True)


def test_input_that_does_not_fit_the_weights_is_named():
    model = trained([Dense(3, tanh), Dense(2, softmax)], Y_encode=True)
    fits = r"Dense has p\['W'\] of shape \(5, 3\); an input of sample shape \(4,\) needs \(4, 3\)"
    with pytest.raises(LayerError, match=r"EpyNN\.predict: X_data: layer 1: " + fits):
        model.predict(X[:3, :4])
    with pytest.raises(LayerError, match="forward: " + fits):
        model.forward(X[:3, :4])
    assert model.predict(X[:3]).A.shape == (3, 2)  # the right shape still predicts


def test_an_eager_forward_of_another_shape_leaves_predict_and_train_working():
    """EpyNN's eager ``forward`` rebuilds each layer for the input it is given (a
    recurrent layer takes any number of steps); predict and train then run networks
    built for their own inputs, not assembled from the shapes those layers last saw
    (train used to fail in the RNN's backward, and predict in the Embedding)."""
    steps = RNG.normal(size=(40, 6, 2))
    model = EpyNN([Embedding(X_data=steps, Y_data=LABELS, Y_encode=True, batch_size=8),
                   RNN(3), Dense(2, softmax)])
    model.initialize(loss="MSE", seed=1)
    model.train(1, init_logs=False)
    before = model.predict(steps[:3]).A
    assert model.predict(steps[:3, :4]).A.shape == (3, 2)  # fewer steps
    assert model.forward(steps[:3, :4]).shape == (3, 2)
    np.testing.assert_allclose(model.predict(steps[:3]).A, before, rtol=1e-6)
    model.forward(steps[:3, :4])
    model.train(1, init_logs=False)
    assert len(model.metrics["accuracy"][0]) == 2  # two epochs recorded on dtrain


def test_weights_assigned_with_the_wrong_shape_are_named_at_train_and_evaluate():
    model = trained([Dense(2, softmax)], Y_encode=True)
    model.layers[1].p["W"] = np.zeros((4, 2))
    fits = r"layer 1: Dense has p\['W'\] of shape \(4, 2\); an input of sample shape \(5,\)"
    with pytest.raises(LayerError, match=r"EpyNN\.train: " + fits):
        model.train(1, init_logs=False)
    with pytest.raises(LayerError, match=r"EpyNN\.evaluate: " + fits):
        model.evaluate()


@pytest.mark.parametrize("method", ["predict", "evaluate"])
def test_predict_and_evaluate_before_initialize_say_so(method):
    model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True), Dense(2, softmax)])
    args = (X[:3],) if method == "predict" else ()
    with pytest.raises(RuntimeError, match=rf"EpyNN\.{method}: the model is not initialized"):
        getattr(model, method)(*args)


@pytest.fixture(scope="module")
def softmax_model():
    set_quiet(True)
    try:
        model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True, batch_size=8),
                       Dense(2, softmax)])
        model.initialize(loss="CCE", seed=1)
        model.train(1, init_logs=False)
    finally:
        set_quiet(False)
    return model


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_predict_refuses_nan_and_inf_as_the_functional_predict_does(softmax_model, value):
    """(EpyNN, and the facade before, returned NaN outputs without a word.)"""
    bad = X[:2].copy()
    bad[1, 3] = value
    with pytest.raises(ValueError, match=r"EpyNN\.predict: X_data: contains NaN or inf"):
        softmax_model.predict(bad)
    assert np.isfinite(softmax_model.predict(X[:2]).A).all()


@pytest.mark.parametrize("X_data, error, message", [
    (None, TypeError, r"X_data: expected samples, an array of shape \(m, \.\.\.\), got None"),
    (3.0, TypeError, r"X_data: expected samples, an array of shape \(m, \.\.\.\), got float"),
    ([[1.0, 2.0], [3.0]], ValueError, r"X_data: not an array of one shape"),
    ([["a", "b", "c", "d", "e"]], TypeError, r"X_data: expected numeric data, got dtype <U1"),
    (["a", "b", "c", "d", "e"], TypeError, r"X_data: expected numeric data, got dtype <U1"),
    (X[0], ValueError, r"X_data of shape \(5,\) is not a set of samples of shape \(5,\): "
                       r"X_data must have a sample axis first, shape \(m, 5\)"),
])
def test_predict_names_x_data_when_it_is_not_samples(softmax_model, X_data, error, message):
    with pytest.raises(error, match=r"EpyNN\.predict: " + message):
        softmax_model.predict(X_data)


def test_x_data_of_one_number_per_sample_is_named_at_initialize():
    """(The Dense's own error advised a Flatten layer: the data lacks features.)"""
    model = EpyNN([Embedding(X_data=X[:, 0], Y_data=LABELS, Y_encode=True, batch_size=8),
                   Dense(2, softmax)])
    with pytest.raises(LayerError, match=r"EpyNN\.initialize: the Embedding's X_data has one "
                                         r"number per sample .* shape \(m, n, \.\.\.\)") as info:
        model.initialize(loss="CCE", seed=1)
    assert "Flatten" not in str(info.value)


def _column(Y):
    return np.asarray(Y, dtype=float).reshape(-1, 1)


@pytest.mark.parametrize("loss, Y, act, message", [
    ("BCE", _column(2 * LABELS), "sigmoid", r"dtrain \(Y\): loss BCE needs labels in \[0, 1\]"),
    ("CCE", 2 * np.eye(2)[LABELS], "softmax", r"dtrain \(Y\): loss CCE needs labels in \[0, 1\]"),
    ("MSLE", -3 * np.eye(2)[LABELS], "softmax", r"dtrain \(Y\): loss MSLE needs labels above -1"),
    ("BCE", np.r_[_column(LABELS[:39]), [[2.0]]], "sigmoid", r"dval \(Y\): loss BCE"),
])
def test_labels_outside_the_losss_range_are_refused_at_initialize(loss, Y, act, message):
    """The core's check (labels in [0, 1] for BCE and CCE, above -1 for MSLE) on every
    data set. (EpyNN trains on: a negative BCE, a NaN MSLE.)"""
    model = EpyNN([Embedding(X_data=X, Y_data=Y, batch_size=8), Dense(Y.shape[1], act)])
    with pytest.raises(ValueError, match=r"EpyNN\.initialize: the labels of " + message):
        model.initialize(loss=loss, seed=1)
    model.initialize(loss="MSE", seed=1)  # MSE takes any labels


def test_labels_assigned_out_of_range_after_initialize_are_refused_by_train():
    model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True, batch_size=8),
                   Dense(2, softmax)])
    model.initialize(loss="CCE", seed=1)
    model.embedding.dval.Y = model.embedding.dval.Y * 2
    with pytest.raises(ValueError, match=r"EpyNN\.train: the labels of dval \(Y\): loss CCE"):
        model.train(1, init_logs=False)
    assert model.metrics["CCE"] == [[], [], []]  # no epoch ran


@pytest.mark.parametrize("seed, error", [("1", TypeError), (1.5, TypeError), (True, TypeError),
                                         (-5, ValueError), (2**63, ValueError),
                                         (2**64, ValueError)])
def test_a_seed_that_is_not_an_int_in_range_is_named(seed, error):
    """(NumPy's SeedSequence TypeError, its 'expected non-negative integer', JAX's
    OverflowError; True was taken as 1.)"""
    model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True), Dense(2, softmax)])
    with pytest.raises(error, match=r"^EpyNN\.initialize: seed must be None or an int in "
                                    r"\[0, 2\*\*63\), got "):
        model.initialize(loss="MSE", seed=seed)
    assert not model.initialized


def test_a_numpy_int_seed_and_a_large_seed_seed_as_python_ints(tmp_path):
    """(A NumPy int seed was kept as it was, and write() failed on it: not JSON.)"""
    def initialized(seed):
        model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True), Dense(2, softmax)])
        model.initialize(loss="MSE", seed=seed)
        return model

    model = initialized(np.int64(3))
    np.testing.assert_array_equal(model.layers[1].p["W"], initialized(3).layers[1].p["W"])
    assert type(model.seed) is int
    model.write(str(tmp_path / "m.epynn"))
    assert initialized(2**63 - 1).seed == 2**63 - 1


def test_se_hpars_none_means_the_defaults():
    """(EpyNN fails on None with a TypeError deep in its dry run.)"""
    from epynn_jax.compat.settings import se_hPars as defaults

    model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True), Dense(2, softmax)])
    model.initialize(loss="MSE", seed=1, se_hPars=None)
    assert model.se_hPars == defaults and model.layers[1].se_hPars == defaults
    with pytest.raises(TypeError, match=r"EpyNN\.initialize: se_hPars must be a dict of "
                                        r"hyperparameters .* or None for the defaults, got str"):
        model.initialize(loss="MSE", seed=1, se_hPars="defaults")


def test_report_before_initialize_or_training_says_so():
    model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True), Dense(2, softmax)])
    with pytest.raises(RuntimeError, match=r"EpyNN\.report: the model is not initialized"):
        model.report()
    model.initialize(loss="MSE", seed=1)
    with pytest.raises(RuntimeError, match=r"EpyNN\.report: no epoch to report; call "
                                           r"model\.train"):
        model.report()


@pytest.mark.parametrize("verbose, error", [("x", TypeError), (2.5, TypeError),
                                            (-1, ValueError)])
def test_a_verbose_that_is_not_a_count_of_epochs_is_named(verbose, error):
    model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True), Dense(2, softmax)])
    model.initialize(loss="MSE", seed=1)
    with pytest.raises(error, match=r"^EpyNN\.train: verbose must be None or an int"):
        model.train(2, verbose=verbose, init_logs=False)
    assert not hasattr(model, "epochs")  # refused before anything changed


def test_verbose_true_is_every_epoch_as_in_epynn():
    model = EpyNN([Embedding(X_data=X, Y_data=LABELS, Y_encode=True), Dense(2, softmax)])
    model.initialize(loss="MSE", seed=1)
    model.train(3, verbose=True, init_logs=False)
    assert model.verbose == 1
    model.train(1, verbose=False, init_logs=False)  # False: the default (a tenth, at least 1)
    assert model.verbose == 1


def test_padding_takes_epynns_truthy_forward():
    """EpyNN's padding tests forward's truth; the core's refuses what is not a bool."""
    from epynn_jax.compat.commons.io import padding

    X = np.ones((2, 3, 3, 1))
    np.testing.assert_array_equal(padding(X, 1, forward=1), padding(X, 1, forward=True))
    np.testing.assert_array_equal(padding(padding(X, 1), 1, forward=0), X)


def test_softmax_on_a_recurrent_gate_names_the_gate():
    from epynn_jax.compat.commons.maths import sigmoid

    model = EpyNN([Embedding(X_data=X[:, :, None], Y_data=LABELS, Y_encode=True, batch_size=8),
                   LSTM(3, activate_forget=softmax, activate_input=sigmoid), Dense(2, softmax)])
    with pytest.raises(ValueError, match=r"layer 1 \(LSTM\): activate_forget='softmax'"):
        model.initialize(loss="MSE", seed=1)
