"""A Dense and an LSTM network learn the digits under bfloat16 as well as under float32.

scikit-learn's 8x8 digits (the ``examples`` extra, no download): 1200 images to train
on, 597 to validate; the LSTM reads each image as 8 steps of 8 pixels. 30 epochs bring
both networks near convergence (97-98 % validation accuracy), where the accuracy of one
run no longer jumps by a point from one epoch to the next: the float32 and bfloat16 runs
(same seeds, same batches) then end within 1 point of each other.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers as L
from epynn_jax import network
from epynn_jax.data import examples
from epynn_jax.maths.schedules import Schedule


@pytest.fixture(scope="module")
def digits():
    X, y = examples.digits()  # DataUnavailable (an error, not a skip) without scikit-learn
    X = X / 16.0
    Y = np.eye(10, dtype=np.float32)[y]
    order = np.random.default_rng(0).permutation(len(X))
    return {"dtrain": (X[order[:1200]], Y[order[:1200]]),
            "dval": (X[order[1200:]], Y[order[1200:]])}


MODELS = {
    "dense": (lambda: [L.Flatten(), L.Dense(32, "relu"), L.Dense(10, "softmax")], 0.01, False),
    "lstm": (lambda: [L.LSTM(32), L.Dense(10, "softmax")], 0.05, True),
}


def _accuracy(data, name, policy):
    make, lr, sequence = MODELS[name]
    if sequence:  # (m, 8, 8, 1) images as (m, 8 steps, 8 features)
        data = {k: (X[..., 0], Y) for k, (X, Y) in data.items()}
    net = network.build(make(), data["dtrain"][0].shape[1:], policy=policy)
    result = network.fit(net, network.init(net, 0), data, epochs=30, loss="CCE",
                         batch_size=32, schedule=Schedule(learning_rate=lr), key=0)
    if policy is not None:
        assert all(p.dtype == jnp.float32 for layer in result.params for p in layer.values())
    return result.history["accuracy"]["dval"][-1]


@pytest.mark.parametrize("name", MODELS)
def test_bfloat16_trains_to_the_float32_accuracy(digits, name):
    full = _accuracy(digits, name, None)
    mixed = _accuracy(digits, name, "bfloat16")
    assert full > 0.95  # both actually learned
    assert abs(mixed - full) <= 0.01, f"{name}: float32 {full:.4f}, bfloat16 {mixed:.4f}"
