"""One compilation per distinct input shape: run_epoch and predict are not retraced."""

from __future__ import annotations

import jax
import numpy as np

from epynn_jax import Schedule, layers, network


def _data(m, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 4)).astype(np.float32), np.eye(2, dtype=np.float32)[
        rng.integers(0, 2, m)]


def test_fit_traces_run_epoch_once_per_shape(epoch_traces):
    # Units 7: a network no other test builds, so the jit cache starts cold for it.
    net = network.build([layers.Dense(7, "relu"), layers.Dense(2, "softmax")], (4,))
    params = network.init(net, jax.random.key(0))
    traces = epoch_traces(splits=2)

    def fit(train):
        return network.fit(net, params, {"dtrain": train, "dval": _data(9, 1)}, epochs=3,
                           batch_size=4)

    traces.exactly_once(lambda: fit(_data(20)))  # three epochs, one trace
    # Same shapes, same configuration, new values: no retrace.
    traces.allow(0)
    fit(_data(20, 2))
    # A new training-set size: exactly one more trace, then none for either size.
    traces.exactly_once(lambda: fit(_data(24)))
    traces.allow(0)
    fit(_data(24, 5))
    fit(_data(20, 3))


def test_new_epoch_count_or_learning_rate_does_not_recompile(epoch_traces):
    """The default optimizer keeps the schedule's numbers in its state, not its code."""
    net = network.build([layers.Dense(5, "relu"), layers.Dense(2, "softmax")], (4,))
    params = network.init(net, jax.random.key(0))
    data = {"dtrain": _data(20)}
    traces = epoch_traces(splits=1)

    def fit(epochs, schedule):
        return network.fit(net, params, data, epochs=epochs, batch_size=4, schedule=schedule)

    traces.allow(1)
    a = fit(3, Schedule(0.1, "exp_decay"))
    traces.allow(0)
    b = fit(5, Schedule(0.02, "exp_decay", cycle_epochs=2, cycle_descent=0.5))
    # ... and the new numbers are used: the rates differ, so do the parameters.
    assert not np.allclose(a.params[0]["W"], b.params[0]["W"])
    # Another schedule kind is other code: one more compilation.
    traces.exactly_once(lambda: fit(3, Schedule(0.1, "lin_decay")))


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


def test_epynn_sgd_state_keeps_optax_structure_and_one_step_count(x64):
    """The state is optax's InjectStatefulHyperparamsState (checkpoints keep its leaves in that
    order); the step is the inner count, the outer one (inject_hyperparams', which only
    schedules callable hyperparameters) is left as it is, so a state saved when it was
    advanced continues alike."""
    import jax.numpy as jnp
    import optax

    opt = network.epynn_sgd(Schedule(0.1, "exp_decay", cycle_epochs=2, cycle_descent=0.3),
                            4, 2)
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    assert isinstance(state, optax.InjectStatefulHyperparamsState)
    assert isinstance(state.inner_state, optax.ScaleByScheduleState)
    g = {"w": jnp.ones((), jnp.float64)}
    old = state._replace(count=jnp.asarray(5, jnp.int32))  # as a 0.1 checkpoint holds it
    for _ in range(5):
        upd, state = opt.update(g, state)
        upd_old, old = opt.update(g, old)
        assert float(upd["w"]) == float(upd_old["w"])
    assert int(state.inner_state.count) == 5 and int(state.count) == 0
    assert jax.tree.structure(state) == jax.tree.structure(opt.init(params))


def test_predict_compiles_once_per_shape(trace_budget):
    net = network.build([layers.Dense(9, "tanh"), layers.Dense(2, "softmax")], (4,))
    params = network.init(net, jax.random.key(0))
    network.epoch.eval_chunk(net)  # the chunk's shape facts: one abstract forward, cached
    # predict_jit's body runs the network's forward once per trace.
    traces = trace_budget(network.epoch, "forward")

    def predict(m, seed):
        return network.predict(net, params, _data(m, seed)[0])

    traces.exactly_once(lambda: predict(5, 0))
    traces.allow(0)
    for seed in range(1, 3):
        predict(5, seed)
    traces.exactly_once(lambda: predict(6, 0))
    traces.allow(0)
    predict(5, 9)
    predict(6, 9)


def test_epoch_batches_rule():
    """EpyNN's batching: N // batch_size batches, remainder dropped, a large batch is all."""
    key = jax.random.key(0)
    idx = np.asarray(network.epoch.epoch_batches(key, 23, 5))
    assert idx.shape == (4, 5) and len(set(idx.ravel().tolist())) == 20
    assert set(idx.ravel().tolist()) <= set(range(23))
    assert network.epoch.epoch_batches(key, 7, 20).shape == (1, 7)
    assert sorted(np.asarray(network.epoch.epoch_batches(key, 7, 7)).ravel().tolist()) == list(
        range(7))
