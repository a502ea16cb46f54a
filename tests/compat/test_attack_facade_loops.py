"""What EpyNN users do with a model between and around ``train`` calls, against EpyNN
1.2.13 (the oracle) in float64: continue training, edit the hyperparameters a layer
holds, change an activation's hyperparameter between calls.

EpyNN repeats the last epoch when ``train`` is called again (a bug the facade fixes,
see docs/compat.md); the oracle is made to continue at the next epoch as the facade
does by setting its ``e`` (``train(n)`` after ``e = k`` runs epochs ``k .. k + n - 1``),
so the numbers of both can be compared.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.compat import helpers

RNG = np.random.default_rng(11)
X = RNG.normal(size=(46, 5))
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


def _model(ns, hpars, own=None):
    emb = ns.Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=10, relative_size=(2, 1, 1))
    first = ns.Dense(4, ns.maths.tanh, se_hPars=own) if own else ns.Dense(4, ns.maths.tanh)
    model = ns.EpyNN([emb, first, ns.Dense(2, ns.maths.softmax)], name="loops")
    helpers.quiet_call(model.initialize, loss="MSE", seed=3, metrics=["accuracy"],
                       se_hPars={**helpers.lib_defaults(ns), **hpars})
    return model


def _continue(ns, model, done: int, epochs: int) -> None:
    """``epochs`` more epochs after ``done``: the facade's own ``train``; EpyNN's ``train``
    told to start at epoch ``done`` (it would repeat epoch ``done - 1``)."""
    if ns.EpyNN.__module__.startswith("epynn."):
        model.e = done
        epochs -= 1  # (EpyNN counts epochs + e + 1 when e > 0)
    helpers.quiet_call(model.train, epochs, init_logs=False)


def _state(model) -> dict:
    return {
        "p": [{k: np.array(v, dtype=np.float64) for k, v in layer.p.items()}
              for layer in model.layers],
        "lrate": [[float(r) for r in layer.lrate] for layer in model.layers],
        "metrics": {k: [[float(x) for x in v] for v in vals] for k, vals in model.metrics.items()},
        "A": np.array(helpers.quiet_call(model.predict, X[:6]).A, dtype=np.float64),
    }


def _assert_same(ours: dict, theirs: dict) -> None:
    for i, (a, b) in enumerate(zip(ours["lrate"], theirs["lrate"])):
        np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=f"lrate of layer {i}")
    assert ours["metrics"].keys() == theirs["metrics"].keys()
    for k in ours["metrics"]:
        for a, b in zip(ours["metrics"][k], theirs["metrics"][k]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12, err_msg=f"metric {k}")
    for i, (pa, pb) in enumerate(zip(ours["p"], theirs["p"])):
        for k in pa:
            assert helpers.rel_err(pa[k], pb[k]) < 1e-6, f"trained {k} of layer {i}"
    assert helpers.rel_err(ours["A"], theirs["A"]) < 1e-6


def _both(scenario):
    return [scenario(helpers.lib(root)) for root in ("epynn_jax.compat", "epynn")]


@pytest.mark.parametrize("hpars", [
    {"schedule": "exp_decay", "learning_rate": 0.2},                    # default decay_k
    {"schedule": "lin_decay", "learning_rate": 0.2},
    {"schedule": "exp_decay", "learning_rate": 0.2, "cycle_epochs": 2, "cycle_descent": 0.3},
], ids=["exp_decay", "lin_decay", "exp_decay-cycles"])
def test_a_continued_training_goes_on_down_the_first_calls_schedule(hpars, epynn, x64):
    """EpyNN writes the default ``decay_k = 5 / epochs`` of the first ``train`` into the
    dict the layers hold, so ``train(3)`` then ``train(3)`` decays on along the first
    curve. The facade recomputed it for the new total (5 / 6): the rate jumped back up
    at the second call (exp_decay: 0.0071 at epoch 2, then 0.0164 at epoch 3, where
    EpyNN has 0.0013), and ``lrate`` no longer held the rates epochs 1-2 had used."""
    def scenario(ns):
        model = _model(ns, hpars)
        helpers.quiet_call(model.train, 3, init_logs=False)
        first = [list(layer.lrate) for layer in model.layers]
        _continue(ns, model, 3, 3)
        out = _state(model)
        out["first"] = first
        out["hp"] = dict(model.se_hPars)
        return out

    ours, theirs = _both(scenario)
    _assert_same(ours, theirs)
    for a, b in zip(ours["lrate"], ours["first"]):  # the epochs trained keep their rates
        np.testing.assert_allclose(a[:3], b, rtol=1e-12)
    assert ours["hp"] == theirs["hp"]  # completed with epochs, cycle_number and decay_k


def test_a_layer_with_its_own_hyperparameters_continues_its_own_schedule(epynn, x64):
    def scenario(ns):
        own = {**helpers.lib_defaults(ns), "learning_rate": 0.3, "schedule": "lin_decay"}
        model = _model(ns, {"schedule": "exp_decay", "learning_rate": 0.2}, own=own)
        helpers.quiet_call(model.train, 2, init_logs=False)
        _continue(ns, model, 2, 2)
        return _state(model)

    ours, theirs = _both(scenario)
    _assert_same(ours, theirs)


def test_an_edit_of_a_layers_hyperparameters_reaches_the_next_train(epynn, x64):
    """A layer without hyperparameters of its own holds the model's dict (EpyNN: the same
    object), so ``model.layers[1].se_hPars['learning_rate'] = 0.01`` sets the rate of
    every layer sharing it from the next ``train`` on. The facade's layers held a copy
    made by ``train``, and the next ``train`` rebuilt it from ``initialize``'s: the edit
    was silently dropped."""
    def scenario(ns):
        model = _model(ns, {"learning_rate": 0.2})
        helpers.quiet_call(model.train, 2, init_logs=False)
        model.layers[1].se_hPars["learning_rate"] = 0.01
        _continue(ns, model, 2, 2)
        out = _state(model)
        out["shared"] = all(layer.se_hPars is model.se_hPars for layer in model.layers)
        return out

    ours, theirs = _both(scenario)
    _assert_same(ours, theirs)
    assert ours["lrate"][2][2:] == [0.01, 0.01]
    assert ours["shared"] and theirs["shared"]


def test_a_softmax_temperature_edited_after_initialize_is_used(epynn, x64):
    """EpyNN reads ``softmax_temperature`` (and the ELU/LReLU alphas) from the layer's
    ``se_hPars`` at every forward and backward; the facade's functional layers kept
    the values of ``initialize``: predictions and the next training ignored the edit."""
    def scenario(ns):
        model = _model(ns, {"learning_rate": 0.2})
        helpers.quiet_call(model.train, 2, init_logs=False)
        model.se_hPars["softmax_temperature"] = 3
        before = np.array(helpers.quiet_call(model.predict, X[:6]).A, dtype=np.float64)
        _continue(ns, model, 2, 2)
        out = _state(model)
        out["before"] = before
        return out

    ours, theirs = _both(scenario)
    assert helpers.rel_err(ours["before"], theirs["before"]) < 1e-6  # no train in between
    _assert_same(ours, theirs)


def test_the_batches_after_train_are_those_of_its_last_epoch(epynn, x64):
    """EpyNN's ``embedding.batch_dtrain`` holds the batches of the last epoch trained (a
    script may inspect or re-run the last batch). The facade's ``train`` shuffled index
    arrays and left ``batch_dtrain`` as ``initialize``'s dry run had made it."""
    def scenario(ns):
        model = _model(ns, {"learning_rate": 0.2})
        helpers.quiet_call(model.train, 2, init_logs=False)
        return [(b.name, np.array(b.X), np.array(b.Y)) for b in model.embedding.batch_dtrain]

    ours, theirs = _both(scenario)
    assert [b[0] for b in ours] == [b[0] for b in theirs] == ["0", "1"]
    for (_, xa, ya), (_, xb, yb) in zip(ours, theirs):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
