"""float32 training with a log loss on saturating outputs: no false NonFiniteError.

EpyNN's ``log(1 - A + 1e-16)`` is NaN at float32 once a softmax returns 1.0000001
(1e-16 is below float32's resolution next to 1); the losses clip ``A`` with a
margin taken from the dtype (maths/losses.py), so such a run keeps training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax import Schedule, layers, network
from epynn_jax.data import embed, examples


def test_float32_softmax_bce_run_trains_instead_of_stopping():
    # Full batch, and EpyNN's loss is summed over samples: lr 0.05 on 133 samples
    # drives the softmax to saturation within a few epochs (this run raised
    # NonFiniteError at epoch 1-3 with EpyNN's unclipped BCE, for seeds 0-3).
    X, y = examples.dummy_boolean(n=200, seed=2)
    splits, _ = embed(X, y, Y_encode=True)
    data = {name: (s.X, s.Y) for name, s in splits.items()}
    net = network.build([layers.Dense(2, "softmax")], input_shape=(11,))
    params = network.init(net, jax.random.key(2))
    assert params[0]["W"].dtype == jnp.float32
    result = network.fit(net, params, data, epochs=60, loss="BCE",
                         schedule=Schedule(learning_rate=0.05))
    bce = np.asarray(result.history["BCE"]["dtrain"])
    assert result.epochs == 60 and np.isfinite(bce).all()
    assert bce[-1] < 0.1 < bce[0], bce
    assert result.history["accuracy"]["dtrain"][-1] > 0.95
