"""The epoch's non-finite guard: ``run_epoch(guard=True)`` watches the epoch as a whole
(one flag, ``epoch_ok``, of its costs and end parameters), :func:`locate_non_finite`
replays a bad epoch with a flag per step and layer, ``epoch_guard`` names the layers whose
end parameters are bad, and ``fit`` compiles the replay only after a bad epoch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from epynn_jax import layers, network
from epynn_jax.errors import NonFiniteError
from epynn_jax.network.epoch import (
    TrainState,
    epoch_guard,
    epoch_ok,
    finite_scores,
    locate_non_finite,
    run_epoch,
)
from epynn_jax.testing import x64

from .test_fit_compiles import compiled

# Units 9 and 5: a network no other test builds (the compile counts start cold).
NET = network.build([layers.Dense(9, "tanh"), layers.Flatten(), layers.Dense(5, "relu"),
                     layers.Dense(2, "softmax")], (4,))


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 4)).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(np.eye(2, dtype=np.float32)[rng.integers(0, 2, 24)])


def poison(layer: int, at_step: int) -> optax.GradientTransformation:
    """SGD whose update of layer ``layer`` is NaN at step ``at_step`` only (a NaN
    parameter stays NaN afterwards: ``p + u`` keeps it)."""
    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, count, params=None):
        bad = tuple(jax.tree.map(lambda u: jnp.where(count == at_step, jnp.nan, u), d)
                    if i == layer else d for i, d in enumerate(updates))
        return bad, count + 1

    return optax.chain(optax.sgd(0.01), optax.GradientTransformation(init, update))


def _state(opt):
    params = network.init(NET, 1)
    return TrainState(params, opt.init(params), jax.random.key(2))


@pytest.mark.parametrize(("layer", "step"), [(0, 0), (2, 3), (3, 5)])
def test_a_bad_epoch_fails_and_the_replay_finds_its_first_step_and_layer(layer, step):
    X, Y = _data()
    opt = poison(layer, step)
    state = _state(opt)
    # 24 samples, batch 4: six steps
    new, costs, _, ok = run_epoch(NET, opt.update, "CCE", ("CCE",), 4, state, (X, Y), {},
                                  guard=True)
    assert costs.shape == (6,) and ok.shape == () and not bool(ok)
    # the epoch's guard: the layer whose END parameters are non-finite, at least
    guard = epoch_guard(new.params, costs)
    assert not bool(guard.ok) and bool(guard.bad_layers[layer])
    located = locate_non_finite(NET, opt.update, "CCE", 4, state, (X, Y))
    assert not bool(located.ok) and int(located.bad_step) == step and int(located.step) == 6
    # only the poisoned layer at its step (the NaN reaches the others one step later)
    assert [i for i, b in enumerate(np.asarray(located.bad_layers)) if b] == [layer]


def test_a_healthy_epoch_passes_both_guards():
    X, Y = _data()
    opt = poison(0, 100)  # never
    state = _state(opt)
    new, costs, _, ok = run_epoch(NET, opt.update, "CCE", ("CCE",), 4, state, (X, Y), {},
                                  guard=True)
    assert bool(ok)
    located = locate_non_finite(NET, opt.update, "CCE", 4, state, (X, Y))
    for g in (epoch_guard(new.params, costs), located):
        assert bool(g.ok) and int(g.bad_step) == -1 and not np.asarray(g.bad_layers).any()


def test_fit_compiles_the_replay_only_after_a_bad_epoch():
    X, Y = (np.asarray(a) for a in _data())
    data = {"dtrain": (X, Y)}
    params = network.init(NET, 1)
    poison(1, 100).init(params)  # this test's optimizer makes its zeros op by op: not fit's
    with compiled() as names:
        network.fit(NET, params, data, epochs=2, batch_size=4, loss="CCE",
                    optimizer=poison(1, 100), key=3)
    assert names == ["jit(run_epochs)"], names  # a healthy fit: one program
    # layer 2's update is NaN at the 9th step: epoch 1, batch 2
    with compiled() as names, pytest.raises(NonFiniteError) as info:
        network.fit(NET, params, data, epochs=3, batch_size=4, loss="CCE",
                    optimizer=poison(2, 8), key=3)
    # the block of epochs stops at the bad one, which is replayed alone, then step by step
    assert names == ["jit(run_epochs)", "jit(run_epoch)", "jit(locate_non_finite)"], names
    err = info.value
    assert (err.epoch, err.step, err.layer_index, err.bad_layers) == (1, 2, 2, (2,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_epoch_ok_flags_nan_and_inf_anywhere_and_never_large_finite_values(dtype):
    """One flag for every parameter and cost: False for a NaN or an inf in any leaf or
    cost, True for finite values however large (their sum overflows; the test's does not)."""
    big = np.finfo(dtype).max / 2
    with x64(dtype == np.float64):
        params = ({"W": jnp.full((3, 4), big, dtype), "b": jnp.full((1, 4), big, dtype)}, {},
                  {"W": jnp.ones((4, 2), dtype)})
        costs = jnp.full((5,), big, dtype)
        assert bool(epoch_ok(params, costs))
        assert bool(epoch_guard(params, costs).ok)
        for bad in (np.nan, np.inf, -np.inf):
            for leaf in (0, 1, 2):
                tree = jax.tree.map(lambda x: x, params)
                key = "b" if leaf == 1 else "W"
                where = 0 if leaf < 2 else 2
                tree[where][key] = tree[where][key].at[0, 1].set(bad)
                assert not bool(epoch_ok(tree, costs)), (bad, leaf)
                g = epoch_guard(tree, costs)
                assert not bool(g.ok) and np.asarray(g.bad_layers).tolist() == [
                    i == where for i in range(3)]
            assert not bool(epoch_ok(params, costs.at[3].set(bad)))
            assert int(epoch_guard(params, costs.at[3].set(bad)).bad_step) == 3


def test_only_the_training_loss_decides_a_split_failed():
    """A metric that is undefined on a split (MSLE of negative outputs: the log of a
    negative) is recorded as NaN, and training goes on; the training loss stops it."""
    net = network.build([layers.Dense(1, "identity")], (4,))
    rng = np.random.default_rng(1)
    X = rng.standard_normal((16, 4)).astype(np.float32)
    Y = X[:, :1] - X[:, 1:2]  # targets (and soon outputs) of both signs
    result = network.fit(net, network.init(net, jax.random.key(0)), {"dtrain": (X, Y)},
                         epochs=2, loss="MSE", metrics=("MSLE",), batch_size=8)
    assert np.isnan(result.history["MSLE"]["dtrain"]).all()
    assert np.isfinite(result.history["MSE"]["dtrain"]).all() and result.epochs == 2
    assert finite_scores({"dtrain": {"MSE": 1.0, "MSLE": np.nan}}, "MSE")
    assert not finite_scores({"dtrain": {"MSE": 1.0}, "dval": {"MSE": np.inf}}, "MSE")
