"""One compilation per distinct input shape: run_epoch and predict are not retraced."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from epynn_jax import Schedule, layers, network


@pytest.fixture
def trace_counter(monkeypatch):
    """Count traces of run_epoch: ``evaluate`` runs once per split, at trace time only."""
    calls = []
    original = network.evaluate

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(network.epoch, "evaluate", counting)
    return calls


def _data(m, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 4)).astype(np.float32), np.eye(2, dtype=np.float32)[
        rng.integers(0, 2, m)]


def test_fit_traces_run_epoch_once_per_shape(trace_counter):
    # Units 7: a network no other test builds, so the jit cache starts cold for it.
    net = network.build([layers.Dense(7, "relu"), layers.Dense(2, "softmax")], (4,))
    params = network.init(net, jax.random.key(0))
    before = network.run_epoch._cache_size()
    data = {"dtrain": _data(20), "dval": _data(9, 1)}
    network.fit(net, params, data, epochs=3, batch_size=4)
    assert len(trace_counter) == 2          # one trace, two splits evaluated
    assert network.run_epoch._cache_size() == before + 1
    # Same shapes, same configuration, new values: no retrace.
    network.fit(net, params, {"dtrain": _data(20, 2), "dval": _data(9, 3)}, epochs=3,
                batch_size=4)
    assert len(trace_counter) == 2
    assert network.run_epoch._cache_size() == before + 1
    # A new training-set size: exactly one more trace.
    network.fit(net, params, {"dtrain": _data(24), "dval": _data(9, 1)}, epochs=3,
                batch_size=4)
    assert len(trace_counter) == 4
    assert network.run_epoch._cache_size() == before + 2


def test_new_epoch_count_or_learning_rate_does_not_recompile(trace_counter):
    """The default optimizer keeps the schedule's numbers in its state, not its code."""
    net = network.build([layers.Dense(5, "relu"), layers.Dense(2, "softmax")], (4,))
    params = network.init(net, jax.random.key(0))
    data = {"dtrain": _data(20)}
    before = network.run_epoch._cache_size()
    a = network.fit(net, params, data, epochs=3, batch_size=4,
                    schedule=Schedule(0.1, "exp_decay"))
    b = network.fit(net, params, data, epochs=5, batch_size=4,
                    schedule=Schedule(0.02, "exp_decay", cycle_epochs=2, cycle_descent=0.5))
    assert network.run_epoch._cache_size() == before + 1 and len(trace_counter) == 1
    # ... and the new numbers are used: the rates differ, so do the parameters.
    assert not np.allclose(a.params[0]["W"], b.params[0]["W"])
    # Another schedule kind is other code: one more compilation.
    network.fit(net, params, data, epochs=3, batch_size=4, schedule=Schedule(0.1, "lin_decay"))
    assert network.run_epoch._cache_size() == before + 2


def test_epynn_sgd_steps_follow_the_per_epoch_rates(x64):
    """Step t uses learning_rates(...)[t // steps_per_epoch], then the last rate."""
    import jax.numpy as jnp

    from epynn_jax.maths.schedules import learning_rates

    for sched in (Schedule(0.1, "steady"), Schedule(0.1, "exp_decay", cycle_epochs=2,
                                                     cycle_descent=0.3),
                  Schedule(0.2, "lin_decay", decay_k=0.01)):
        opt = network.epynn_sgd(sched, 4, 3)
        state = opt.init({"w": jnp.zeros(())})
        seen = []
        for _ in range(15):
            upd, state = opt.update({"w": jnp.ones((), jnp.float64)}, state)
            seen.append(-float(upd["w"]))
        rates = learning_rates(sched, 4)
        expected = [rates[min(t // 3, 3)] for t in range(15)]
        np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_predict_compiles_once_per_shape():
    net = network.build([layers.Dense(9, "tanh"), layers.Dense(2, "softmax")], (4,))
    params = network.init(net, jax.random.key(0))
    before = network.epoch.predict_jit._cache_size()
    for seed in range(3):
        network.predict(net, params, _data(5, seed)[0])
    assert network.epoch.predict_jit._cache_size() == before + 1
    network.predict(net, params, _data(6)[0])
    assert network.epoch.predict_jit._cache_size() == before + 2
    network.predict(net, params, _data(5, 9)[0])
    assert network.epoch.predict_jit._cache_size() == before + 2


def test_epoch_batches_rule():
    """EpyNN's batching: N // batch_size batches, remainder dropped, a large batch is all."""
    key = jax.random.key(0)
    idx = np.asarray(network.epoch.epoch_batches(key, 23, 5))
    assert idx.shape == (4, 5) and len(set(idx.ravel().tolist())) == 20
    assert set(idx.ravel().tolist()) <= set(range(23))
    assert network.epoch.epoch_batches(key, 7, 20).shape == (1, 7)
    assert sorted(np.asarray(network.epoch.epoch_batches(key, 7, 7)).ravel().tolist()) == list(
        range(7))
