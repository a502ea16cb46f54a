"""What a facade ``initialize``, ``train`` and ``predict`` compile: no small program per
data array or parameter placed on the device (``jnp.asarray`` compiled one conversion per
new shape, about 10 ms each, ten of them in a CNN's first ``train``)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.maths import relu, sigmoid
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.network.models import EpyNN
from tests.network.test_fit_compiles import compiled


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def _model(n: int, features: int, units: int) -> EpyNN:
    rng = np.random.default_rng(features)
    X = rng.normal(size=(n, features))
    Y = (X[:, 0] > 0).astype(int)
    emb = Embedding(X_data=X, Y_data=Y, X_scale=True, Y_encode=True, relative_size=(2, 1, 1),
                    batch_size=8)
    return EpyNN([emb, Dense(units, relu), Dense(2, sigmoid)], name=f"compiles{units}")


def test_placing_data_and_parameters_compiles_nothing():
    # Shapes no other test uses (17 features, 9 and 23 units), so every cache starts cold.
    model = _model(60, 17, 9)
    model.initialize(loss="MSE", seed=1, metrics=["accuracy"])
    jax.random.key(3)  # the key's seeding, compiled once per process (fit's int seeds are
    #                    made once: this process may have made seed 1's key already)
    with compiled() as names:
        model.train(2, init_logs=False)
    assert names == ["jit(run_epoch)"]
    other = _model(44, 17, 23)  # new parameter shapes, new set sizes
    with compiled() as names:
        other.initialize(loss="MSE", seed=2, metrics=["accuracy"])
        other.train(1, init_logs=False)
    assert names == ["jit(run_epoch)"]
    with compiled() as names:  # a new number of samples: the forward alone
        other.predict(np.random.default_rng(0).normal(size=(7, 17)))
    assert names == ["jit(predict_jit)"]
