"""The facade's layers at the edges of their hyperparameters, against EpyNN 1.2.13.

Where EpyNN accepts a value and computes the right thing, the facade's model trains to
EpyNN's weights and metrics (float64, one epoch, the same seed). Where EpyNN crashes on a
value, or trains on garbage without a word, the facade refuses it with an error naming the
layer and the argument, when the layer is made or at ``initialize``.
"""

from __future__ import annotations

import numpy as np
import pytest

from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.maths import softmax
from epynn_jax.compat.convolution.models import Convolution
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.gru.models import GRU
from epynn_jax.compat.lstm.models import LSTM
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.compat.pooling.models import Pooling
from epynn_jax.compat.rnn.models import RNN
from epynn_jax.layers.base import LayerError

from . import helpers

RNG = np.random.default_rng(7)
FLAT = RNG.normal(size=(12, 4))
SEQ1 = RNG.normal(size=(12, 1, 1))   # sequences of one step of one feature
IMG = RNG.uniform(size=(12, 5, 7, 2))  # non-square, two channels
LABELS = (FLAT[:, 0] > 0).astype(int)


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


# -- what EpyNN computes right: the same numbers ------------------------------------------

def _head(ns):
    return [ns.Flatten(), ns.Dense(2, ns.maths.softmax)]


EDGES = {
    # strides larger than the filter (rows and columns skipped), non-square filter
    "conv-strides-over-filter": (IMG, lambda ns: [
        ns.Convolution(2, (2, 3), strides=(3, 4)), *_head(ns)]),
    # one filter over two channels, strides that leave a remainder, then a filter that
    # covers the whole remaining image
    "conv-one-filter-remainder": (IMG, lambda ns: [
        ns.Convolution(1, (3, 2), strides=(2, 2), activate=ns.maths.tanh),
        ns.Convolution(3, (2, 3), activate=ns.maths.elu), *_head(ns)]),
    # overlapping min pooling with strides that do not divide, then a pool larger than the
    # strides' remainder and strides larger than the image
    "pool-overlap-remainder": (IMG, lambda ns: [
        ns.Pooling((2, 3), strides=(2, 1), pool=np.min),
        ns.Pooling((1, 2), strides=(9, 9)), *_head(ns)]),
    "lstm-one-step-one-feature": (SEQ1, lambda ns: [
        ns.LSTM(1, activate_forget=ns.maths.relu, activate_candidate=ns.maths.lrelu,
                sequences=True, clip_gradients=True), *_head(ns)]),
    "gru-one-step-gates": (SEQ1, lambda ns: [
        ns.GRU(2, activate_update=ns.maths.elu, activate_reset=ns.maths.identity),
        ns.Dense(2, ns.maths.softmax)]),
    "rnn-identity-no-clip": (SEQ1, lambda ns: [
        ns.RNN(2, activate=ns.maths.identity, clip_gradients=False, sequences=True),
        *_head(ns)]),
    "dropout-0-flatten-template": (FLAT, lambda ns: [
        ns.Dense(3, ns.maths.relu, initialization=ns.maths.orthogonal), ns.Dropout(0),
        ns.Flatten(), ns.Template(), ns.Dense(2, ns.maths.softmax)]),
}


@pytest.mark.parametrize("case", sorted(EDGES))
def test_edges_epynn_computes_train_to_its_weights(case, epynn, x64):
    X, make = EDGES[case]
    kw = {"epochs": 1, "seed": 5, "hpars": {"learning_rate": 0.05, "LRELU_alpha": 0.2,
                                            "ELU_alpha": 0.7},
          "embedding_kw": {"relative_size": (2, 1, 0), "Y_encode": True, "batch_size": 4}}
    theirs = helpers.run(helpers.lib("epynn"), make, X, LABELS, **kw)
    ours = helpers.run(helpers.lib("epynn_jax.compat"), make, X, LABELS, **kw)
    helpers.assert_same(ours, theirs)


# -- what EpyNN crashes on or trains into garbage: named ----------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: Convolution(2, (2, 2), strides=(1, 1, 1)),
     r"Convolution: strides must be a positive int or a pair of them, got \(1, 1, 1\)"),
    (lambda: Convolution(2, (2, 2, 2)),
     r"Convolution: filter_size must be a positive int or a pair of them, got \(2, 2, 2\)"),
    (lambda: Pooling((2, 2, 2)),
     r"Pooling: pool_size must be a positive int or a pair of them, got \(2, 2, 2\)"),
    (lambda: Pooling(2, strides=(1, 1, 1)),
     r"Pooling: strides must be a positive int or a pair of them, got \(1, 1, 1\)"),
    (lambda: Pooling(0), r"Pooling: pool_size must be a positive int"),
    (lambda: Convolution(0, 2), r"Convolution: unit_filters must be a positive int, got 0"),
    (lambda: Convolution(2, 2, padding=-1), r"Convolution: padding must be an int >= 0"),
    (lambda: Convolution(2, (0, 2)), r"Convolution: filter_size must be a positive int"),
])
def test_window_arguments_are_named_when_the_layer_is_made(make, message):
    """(Three values failed in the facade's unpacking with "too many values to unpack", as
    in EpyNN; the others passed the constructor, and EpyNN trains zero filters on nothing.)"""
    with pytest.raises(LayerError, match=message):
        make()


LAYERS = {"Dense": lambda i: Dense(2, softmax, initialization=i),
          "RNN": lambda i: RNN(2, initialization=i),
          "LSTM": lambda i: LSTM(2, initialization=i),
          "GRU": lambda i: GRU(2, initialization=i),
          "Convolution": lambda i: Convolution(2, 2, initialization=i)}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("init, error", [("he", ValueError), ("Xavier", ValueError),
                                         ("zeros", ValueError), (None, TypeError),
                                         (3, TypeError)])
def test_an_initializer_that_is_not_one_is_named_when_the_layer_is_made(name, init, error):
    """(An unknown name raised a bare KeyError at initialize, None a TypeError about
    activations naming no layer; EpyNN fails in its dry run and exits with status 0.)"""
    with pytest.raises(error, match=rf"^{name}: initialization must be an initializer "
                                    rf"function .* or one of the names 'xavier', "
                                    rf"'orthogonal'; got {init!r}$"):
        LAYERS[name](init)


def test_an_initializer_assigned_after_the_constructor_is_named_at_initialize():
    layer = Dense(2, softmax)
    layer.initialization = "he_normal"
    model = EpyNN([Embedding(X_data=FLAT, Y_data=LABELS, Y_encode=True), layer])
    with pytest.raises(ValueError, match=r"Dense: initialization must be .* got 'he_normal'"):
        model.initialize(loss="MSE", seed=1)


@pytest.mark.parametrize("make, epynn_result, message", [
    (lambda ns: [ns.Dense(0, ns.maths.relu), ns.Dense(2, ns.maths.softmax)],
     "no features", r"Dense: units must be a positive int, got 0"),
    (lambda ns: [ns.LSTM(0), ns.Dense(2, ns.maths.softmax)],
     "no features", r"LSTM: unit_cells must be a positive int, got 0"),
    (lambda ns: [ns.Dense(3, ns.maths.relu), ns.Dropout(1.0), ns.Dense(2, ns.maths.softmax)],
     "NaN", r"Dropout: drop_prob must be a number in \[0, 1\), got 1.0"),
])
def test_values_epynn_trains_into_garbage_are_refused(make, epynn_result, message, epynn,
                                                      x64):
    X = RNG.normal(size=(12, 3, 2)) if "LSTM" in message else FLAT
    kw = {"epochs": 1, "seed": 5, "embedding_kw": {"Y_encode": True}}
    theirs = helpers.run(helpers.lib("epynn"), make, X, LABELS, **kw)  # no error at all
    if epynn_result == "NaN":
        assert np.isnan(theirs["metrics"]["MSE"][0][0])
    else:
        assert theirs["p"][2]["W"].shape == (0, 2)  # the output layer reads zero features
    with pytest.raises(LayerError, match=message):
        helpers.run(helpers.lib("epynn_jax.compat"), make, X, LABELS, **kw)
