"""fit's non-finite guard: NonFiniteError naming the layer, with the last good state."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reliability_problem as problem
from reliability_problem import NET

from epynn_jax import network
from epynn_jax.errors import NonFiniteError


@pytest.fixture(scope="module")
def full_run():
    """The uninterrupted reference run of the shared problem."""
    return problem.reference_run()


DATA = problem.data()


def poison(layer: int, from_step: int) -> optax.GradientTransformation:
    """Turns layer ``layer``'s updates into NaN from step ``from_step`` on (the others stay)."""
    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, count, params=None):
        bad = tuple(jax.tree.map(lambda u: jnp.where(count >= from_step, jnp.nan, u), d)
                    if i == layer else d for i, d in enumerate(updates))
        return bad, count + 1

    return optax.chain(optax.sgd(0.01), optax.GradientTransformation(init, update))


POISON = poison(0, 3)  # one object: every fit below shares one compiled epoch


def _fit(data=DATA, **kw):
    # full batch: one step per epoch, so step 3 is the first step of epoch 3
    return network.fit(NET, problem.params0(), data, epochs=6, batch_size=None, loss="CCE",
                       optimizer=POISON, key=problem.train_key(), **kw)


def test_stops_naming_epoch_and_layer_and_keeps_the_last_good_params():
    with pytest.raises(NonFiniteError) as info:
        _fit()
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert (err.epoch, err.step, err.layer_index, err.bad_layers) == (3, 0, 0, (0,))
    assert err.layer_name == "Dense" and "epoch 3" in str(err) and "layer 0 (Dense)" in str(err)
    assert all(len(v) == 3 for d in err.history.values() for v in d.values())
    three = network.fit(NET, problem.params0(), DATA, epochs=3, batch_size=None, loss="CCE",
                        optimizer=POISON, key=problem.train_key())
    # exactly the state after the 3 good epochs
    chex.assert_trees_all_equal(err.params, three.params, strict=True)
    chex.assert_trees_all_equal(err.opt_state, three.opt_state, strict=True)
    assert err.history == three.history


def _overflowing(X: np.ndarray) -> np.ndarray:
    """Finite float32 data whose first Dense product overflows to inf: every feature
    +-3e38 with the sign of one column of the initial W (a column with sum |W| > 1.2).
    (Large but finite outputs no longer do it: a saturated softmax's CCE is clipped.)"""
    W = np.asarray(problem.params0()[0]["W"])
    j = int(np.argmax(np.abs(W).sum(axis=0)))
    assert float(np.abs(W[:, j]).sum()) * 3e38 > 1.2 * float(np.finfo(np.float32).max)
    out = np.tile(np.sign(W[:, j]) * np.float32(3e38), (len(X), 1)).astype(np.float32)
    assert np.isfinite(out).all()
    return out


def test_overflowing_data_stops_at_the_first_step_with_the_initial_params():
    X, Y = DATA["dtrain"]
    with pytest.raises(NonFiniteError) as info:
        _fit({"dtrain": (_overflowing(X), Y), "dval": DATA["dval"]})
    err = info.value
    assert (err.epoch, err.step) == (0, 0)
    assert err.layer_index == max(err.bad_layers) and 2 in err.bad_layers
    chex.assert_trees_all_equal(err.params, problem.params0(), strict=True)
    assert all(v == [] for d in err.history.values() for v in d.values())


def test_debug_mode_reports_through_jax_debug_nans():
    X, Y = DATA["dtrain"]
    with pytest.raises(NonFiniteError, match="debug mode"):
        _fit({"dtrain": (_overflowing(X), Y)}, debug=True)
    assert not jax.config.jax_debug_nans  # switched off again


def test_the_guard_does_not_change_a_healthy_run(full_run):
    plain = network.fit(NET, problem.params0(), DATA, key=problem.train_key(), check_finite=False,
                        **problem.KW)
    if jax.default_backend() == "cpu":
        chex.assert_trees_all_equal(plain.params, full_run.params, strict=True)
    else:  # other backends may fuse the two programs differently
        chex.assert_trees_all_close(plain.params, full_run.params, rtol=1e-5, atol=1e-6)
    assert plain.history == full_run.history or jax.default_backend() != "cpu"


@pytest.mark.parametrize("epochs", [1, 3])
def test_a_non_finite_evaluation_raises_in_every_epoch(epochs):
    """Training is finite but one split's evaluation overflows: the guard covers it in
    every epoch, the last one included."""
    from epynn_jax import layers

    net = network.build([layers.Dense(1, "identity")], (2,))
    params = ({"W": jnp.ones((2, 1)), "b": jnp.zeros((1, 1))},)
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (8, 2)).astype(np.float32)
    data = {"dtrain": (X, X[:, :1]), "dval": (np.full((4, 2), 3e38, np.float32),
                                             np.zeros((4, 1), np.float32))}
    with pytest.raises(NonFiniteError, match=r"evaluation \(MSE on dval\).* after epoch 0") \
            as info:
        network.fit(net, params, data, epochs=epochs, loss="MSE", metrics=(), batch_size=4)
    err = info.value
    assert err.epoch == 0 and err.step is None and err.layer_index is None
    # the state the failed epoch started from
    chex.assert_trees_all_equal(err.params, params, strict=True)
    # without the guard the same run ends and records the overflow
    done = network.fit(net, params, data, epochs=epochs, loss="MSE", metrics=(), batch_size=4,
                       check_finite=False)
    assert not np.isfinite(done.history["MSE"]["dval"][-1])


def test_a_metric_that_is_zero_over_zero_is_recorded_and_training_goes_on():
    """Regression (fuzz): no predicted and no true positives make precision and recall
    0/0 = NaN; that is not divergence, so fit records NaN (as EpyNN does) and trains on,
    while the loss is still guarded."""
    from epynn_jax import layers

    net = network.build([layers.Dense(1, "sigmoid")], (2,))
    params = ({"W": jnp.zeros((2, 1)), "b": jnp.full((1, 1), 5.0)},)  # always predicts 1
    X = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    Y = np.ones((8, 1), np.float32)  # every label is 1: no positive (class 0) anywhere
    result = network.fit(net, params, {"dtrain": (X, Y)}, epochs=2, loss="MSE", batch_size=4,
                         metrics=("precision", "recall", "accuracy"))
    assert result.epochs == 2
    assert all(np.isnan(result.history[m]["dtrain"]).all() for m in ("precision", "recall"))
    assert result.history["accuracy"]["dtrain"] == [1.0, 1.0]
    assert np.isfinite(result.history["MSE"]["dtrain"]).all()
