"""Several epochs per compiled call: ``run_epochs`` and how ``fit`` uses it.

``fit`` runs as many epochs per call as fit in ``BLOCK_SECONDS`` when nothing on the
host needs each epoch; the epochs, their scores and the guard must be those of one
epoch per call, bitwise, and a bad epoch inside a call must be found and named as if it
had run alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from epynn_jax import layers, network
from epynn_jax.errors import NonFiniteError, TrainingInterrupted
from epynn_jax.maths.schedules import Schedule
from epynn_jax.network import epoch as epoch_lib
from epynn_jax.network import fitting
from epynn_jax.network.epoch import EPOCH_BLOCK, TrainState, run_epoch, run_epochs
from epynn_jax.network.optim import epynn_sgd
from epynn_jax.testing import x64

from .test_guard import poison

NET = network.build([layers.Dense(6, "tanh"), layers.Dense(3, "softmax")], (5,))


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), np.eye(3)[rng.integers(0, 3, n)]


DATA = {"dtrain": _data(40, 0), "dval": _data(13, 1)}
KW = dict(batch_size=8, loss="CCE", metrics=("accuracy", "MSE"), key=4)


@pytest.fixture
def blocks(monkeypatch):
    """``fit`` runs ``size`` epochs per call from its first call on (no pacing)."""
    def use(size: int):
        monkeypatch.setattr(fitting._Pacer, "epochs", lambda self, left: min(left, size))
    return use


def _equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_run_epochs_is_run_epoch_after_run_epoch():
    """k epochs in one call: the state and every epoch's scores of k calls of run_epoch
    (float64: the same numbers; bitwise on this CPU is checked through fit below)."""
    with x64():
        X, Y = (jnp.asarray(a) for a in DATA["dtrain"])
        splits = {"dtrain": (X, Y), "dval": tuple(jnp.asarray(a) for a in DATA["dval"])}
        opt = epynn_sgd(Schedule(learning_rate=0.1), 5, 5)
        params = network.init(NET, jax.random.key(0))
        state = TrainState(params, opt.init(params), jax.random.key(1))
        names = ("accuracy", "CCE")
        new, out, bad = run_epochs(NET, opt.update, "CCE", names, 8, state, (X, Y), splits, 3,
                                   True)
        assert all(v.shape == (EPOCH_BLOCK, 2) for v in out.values())
        assert np.all(np.asarray(bad)[:3] == 0)
        s = state
        for i in range(3):
            s, _, scores = run_epoch(NET, opt.update, "CCE", names, 8, s, (X, Y), splits)
            for split in splits:
                np.testing.assert_allclose(np.asarray(out[split][i]),
                                           [scores[split][m] for m in names], rtol=1e-12)
        for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(s.params)):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        assert np.array_equal(jax.random.key_data(new.key), jax.random.key_data(s.key))
        assert not np.asarray(out["dval"])[3:].any()  # rows past the epochs run: zeros


def test_a_nan_batch_cost_marks_its_epoch():
    X, Y = (jnp.asarray(a, jnp.float32) for a in DATA["dtrain"])
    X = X.at[3, 0].set(jnp.nan)  # sample 3's batch has a NaN cost every epoch
    opt = epynn_sgd(Schedule(learning_rate=0.1), 5, 5)
    params = network.init(NET, jax.random.key(0))
    state = TrainState(params, opt.init(params), jax.random.key(1))
    _, _, bad = run_epochs(NET, opt.update, "CCE", ("CCE",), 8, state, (X, Y), {}, 2, True)
    assert np.isnan(np.asarray(bad)[:2]).all() and not np.asarray(bad)[2:].any()
    _, _, none = run_epochs(NET, opt.update, "CCE", ("CCE",), 8, state, (X, Y), {}, 2)
    assert none is None


@pytest.mark.parametrize("size", [3, 32])
def test_fit_in_blocks_is_fit_epoch_by_epoch_bitwise(blocks, size):
    """The same parameters, optimizer state, key and history as one epoch per call (a
    callback makes fit run one per call), including a last call shorter than the others."""
    params = network.init(NET, jax.random.key(0))
    one = network.fit(NET, params, DATA, epochs=11, callbacks=[lambda e, h: None], **KW)
    blocks(size)
    many = network.fit(NET, params, DATA, epochs=11, **KW)
    assert _equal((one.params, one.opt_state), (many.params, many.opt_state))
    assert np.array_equal(jax.random.key_data(one.key), jax.random.key_data(many.key))
    assert one.history == many.history and many.epochs == 11
    assert len(many.history["accuracy"]["dval"]) == 11


@pytest.mark.parametrize(("layer", "step", "epoch"), [(0, 12, 2), (1, 5, 1), (1, 0, 0)])
def test_a_bad_epoch_inside_a_block_is_named_as_alone(blocks, layer, step, epoch):
    """A NaN update at step ``step`` (5 steps per epoch): the error names that epoch,
    batch and layer, and holds the parameters and history of the epochs before it, as
    an epoch-by-epoch fit does."""
    X, Y = (np.asarray(a, np.float32) for a in DATA["dtrain"])
    params = network.init(NET, jax.random.key(0))
    errors = []
    for size in (1, 4):
        blocks(size)
        with pytest.raises(NonFiniteError) as info:
            network.fit(NET, params, {"dtrain": (X, Y)}, epochs=6, optimizer=poison(layer, step),
                        **KW)
        errors.append(info.value)
    one, many = errors
    assert (many.epoch, many.step, many.layer_index) == (epoch, step % 5, layer)
    assert (one.epoch, one.step, one.layer_index) == (many.epoch, many.step, many.layer_index)
    assert _equal(one.params, many.params) and one.history == many.history
    assert len(many.history["CCE"]["dtrain"]) == epoch


def test_a_non_finite_evaluation_inside_a_block_stops_training(blocks):
    """The training loss on an evaluated split turning inf stops fit at that epoch, in a
    block as alone (here outputs near 1e20 on dval: their MSE overflows float32)."""
    net = network.build([layers.Dense(3, "identity")], (5,))
    X, Y = (np.asarray(a, np.float32) for a in DATA["dtrain"])
    Xv = np.full((4, 5), 1e20, np.float32)
    Yv = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    errors = []
    for size in (1, 4):
        blocks(size)
        with pytest.raises(NonFiniteError, match="evaluation") as info:
            network.fit(net, network.init(net, jax.random.key(0)),
                        {"dtrain": (X, Y), "dval": (Xv, Yv)}, epochs=5,
                        **{**KW, "loss": "MSE"})
        errors.append(info.value)
    assert errors[0].epoch == errors[1].epoch == 0
    assert "MSE on dval" in str(errors[1]) and errors[1].history == errors[0].history


def test_the_pacer_fills_the_time_of_a_block():
    pacer = fitting._Pacer(("test_the_pacer", object()))
    assert pacer.epochs(50) == 1                  # never run: compiles
    pacer.record(1, 2.0)
    assert pacer.epochs(50) == 1                  # the compiling call is not timed
    pacer.record(1, fitting.BLOCK_SECONDS / 10)   # a tenth of a block per epoch
    assert pacer.epochs(50) == 10 and pacer.epochs(7) == 7
    pacer.record(10, fitting.BLOCK_SECONDS / 1000)
    assert pacer.epochs(500) == EPOCH_BLOCK
    pacer.record(4, 4 * fitting.BLOCK_SECONDS * 3)  # slower than a block: one per call
    assert pacer.epochs(50) == 1


def test_fit_runs_several_epochs_per_call_after_two(monkeypatch):
    """The epochs per compiled call a fit of small epochs makes: 1 (compiles), 1 (timed),
    then the rest together."""
    net = network.build([layers.Dense(7, "relu"), layers.Dense(3, "softmax")], (5,))
    calls = []
    real = epoch_lib.run_epochs

    def counting(*args, **kw):
        calls.append(int(args[8]))
        return real(*args, **kw)

    monkeypatch.setattr(epoch_lib, "run_epochs", counting)
    monkeypatch.setattr(fitting, "BLOCK_SECONDS", 60.0)
    params = network.init(net, jax.random.key(0))
    network.fit(net, params, DATA, epochs=12, **KW)
    assert calls == [1, 1, 10]
    calls.clear()
    network.fit(net, params, DATA, epochs=40, **KW)  # the pace is remembered across fits
    assert calls == [EPOCH_BLOCK, 40 - EPOCH_BLOCK]
    calls.clear()
    network.fit(net, params, DATA, epochs=3, callbacks=[lambda e, h: None], **KW)
    assert calls == [1, 1, 1]                     # a callback sees every epoch


def test_ctrl_c_during_a_block_keeps_the_epochs_before_it(blocks, monkeypatch):
    """An interrupt while a call of several epochs runs: the result holds the epochs of
    the calls before it (those of the interrupted call are lost, as an interrupted
    epoch is)."""
    blocks(4)
    real, n = epoch_lib.run_epochs, []

    def interrupted(*args, **kw):
        n.append(1)
        if len(n) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(epoch_lib, "run_epochs", interrupted)
    params = network.init(NET, jax.random.key(0))
    with pytest.raises(TrainingInterrupted) as info:
        network.fit(NET, params, DATA, epochs=10, **KW)
    result = info.value.result
    assert result.epochs == 4 and len(result.history["accuracy"]["dtrain"]) == 4
    blocks(1)
    alone = network.fit(NET, params, DATA, epochs=4, **KW)
    assert _equal(alone.params, result.params)


def test_a_user_optimizer_runs_in_blocks_too(blocks):
    blocks(5)
    params = network.init(NET, jax.random.key(0))
    a = network.fit(NET, params, DATA, epochs=7, optimizer=optax.adam(0.01), **KW)
    b = network.fit(NET, params, DATA, epochs=7, optimizer=optax.adam(0.01),
                    callbacks=[lambda e, h: None], **KW)
    assert _equal(a.params, b.params) and a.history == b.history


def test_fit_on_device_data_makes_no_implicit_transfer(blocks):
    """Under ``jax.transfer_guard('disallow')`` a fit on device arrays runs: the epochs per
    call reach the compiled call as a placed array, not a Python int."""
    X, Y = (jnp.asarray(a, jnp.float32) for a in DATA["dtrain"])
    params, key = network.init(NET, jax.random.key(0)), jax.random.key(1)
    blocks(3)
    network.fit(NET, params, {"dtrain": (X, Y)}, epochs=4, batch_size=8, key=key)
    with jax.transfer_guard("disallow"):
        result = network.fit(NET, params, {"dtrain": (X, Y)}, epochs=7, batch_size=8, key=key)
    assert result.epochs == 7


def test_fit_runs_in_blocks_after_x64_is_switched_on(blocks):
    """The epoch counts are placed once (int32 while x64 is off) and still serve once it
    is on, where the loop's own integers are int64."""
    blocks(2)
    network.fit(NET, network.init(NET, jax.random.key(0)), DATA, epochs=3, **KW)
    with x64():
        result = network.fit(NET, network.init(NET, jax.random.key(0)), DATA, epochs=3, **KW)
    assert result.epochs == 3 and result.params[0]["W"].dtype == np.float64


def test_the_pacer_times_the_epochs_not_their_dispatch(monkeypatch):
    """With the guard off and no split evaluated nothing is read back, so a call returns
    as soon as it is dispatched: fit waits for its parameters before it times it (else
    the pace would be the dispatch's and the calls as long as EPOCH_BLOCK epochs)."""
    waited = []
    real = jax.block_until_ready
    monkeypatch.setattr(jax, "block_until_ready", lambda x: waited.append(1) or real(x))
    params = network.init(NET, jax.random.key(0))
    for check in (True, False):
        waited.clear()
        network.fit(NET, params, DATA, epochs=3, check_finite=check, eval_splits=(), **KW)
        assert len(waited) == (0 if check else 3), check  # one per call (1 + 1 + 1 epochs)
