"""Facade vs EpyNN 1.2.13 on Dense networks: same seed -> same numbers (float64, 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.compat import helpers

RNG = np.random.default_rng(0)
X = RNG.normal(size=(46, 5))
Y_BIN = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
Y_CLS = (np.digitize(X[:, 2], [-0.5, 0.5])).astype(int)

CASES = [
    # hidden activation, output (units, activation), loss, schedule, Y, encode, batch, temperature
    ("relu", (2, "softmax"), "MSE", "steady", Y_BIN, True, 8, 1),
    ("tanh", (3, "softmax"), "CCE", "exp_decay", Y_CLS, True, 10, 2),
    ("lrelu", (1, "sigmoid"), "BCE", "lin_decay", Y_BIN, False, 16, 1),
    ("elu", (2, "sigmoid"), "MAE", "steady", Y_BIN, True, None, 1),
    ("sigmoid", (2, "sigmoid"), "MSLE", "exp_decay", Y_BIN, True, 7, 1),
    ("identity", (3, "softmax"), "BCE", "steady", Y_CLS, True, 9, 5),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CASES])
def test_dense_parity(case, epynn, x64):
    hidden, (units, out), loss, schedule, Y, encode, batch, T = case

    def make(ns):
        # the first Dense has its own hyperparameters: per-layer rates must be honoured
        own = {**helpers.lib_defaults(ns), "learning_rate": 0.05, "schedule": "steady"}
        return [ns.Dense(4, getattr(ns.maths, hidden), se_hPars=own),
                ns.Dense(units, getattr(ns.maths, out))]

    kw = dict(epochs=4, loss=loss, seed=7,
              hpars={"learning_rate": 0.02, "schedule": schedule, "softmax_temperature": T},
              metrics=["accuracy", "MSE"],
              embedding_kw={"relative_size": (2, 1, 1), "batch_size": batch, "Y_encode": encode},
              predict_X=X[:6])
    theirs = helpers.run(helpers.lib("epynn"), make, X, Y, **kw)
    ours = helpers.run(helpers.lib("epynn_jax.compat"), make, X, Y, **kw)
    helpers.assert_same(ours, theirs)


def test_first_layer_rate_differs_from_model_rate(epynn, x64):
    """Sanity of the per-layer case above: the two Dense layers really use different rates."""
    def make(ns):
        own = {**helpers.lib_defaults(ns), "learning_rate": 0.05}
        return [ns.Dense(3, ns.maths.relu, se_hPars=own), ns.Dense(1)]

    out = helpers.run(helpers.lib("epynn_jax.compat"), make, X, Y_BIN, epochs=2,
                      hpars={"learning_rate": 0.3})
    assert out["lrate"][1] == [0.05, 0.05] and out["lrate"][2] == [0.3, 0.3]
