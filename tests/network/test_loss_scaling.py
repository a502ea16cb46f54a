"""Dynamic loss scaling (``network.optim.loss_scaling``) and ``fit`` under float16."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from epynn_jax import Schedule, io, layers, network
from epynn_jax.network import objective, optim


def _tree(*values):
    return ({"W": jnp.asarray(values, jnp.float32)},)


def test_finite_steps_unscale_then_grow():
    tx = optim.loss_scaling(optax.sgd(1.0), initial=8.0, growth_interval=3)
    params = _tree(1.0, 2.0)
    state = tx.init(params)
    assert float(state.scale) == 8.0
    for good in (1, 2):  # the gradients arrive multiplied by S = 8 and leave divided by it
        updates, state = tx.update(_tree(8.0 * 0.5, 8.0 * -1.0), state, params)
        np.testing.assert_array_equal(np.asarray(updates[0]["W"]), [-0.5, 1.0])
        assert float(state.scale) == 8.0 and int(state.good_steps) == good
    updates, state = tx.update(_tree(4.0, -8.0), state, params)  # the third finite step
    np.testing.assert_array_equal(np.asarray(updates[0]["W"]), [-0.5, 1.0])
    assert float(state.scale) == 16.0 and int(state.good_steps) == 0  # grown
    updates, state = tx.update(_tree(16.0, 32.0), state, params)
    np.testing.assert_array_equal(np.asarray(updates[0]["W"]), [-1.0, -2.0])
    assert int(state.good_steps) == 1


def test_non_finite_step_is_skipped_and_the_scale_backs_off():
    tx = optim.loss_scaling(optax.adam(0.1), initial=1024.0, growth_interval=2)
    params = _tree(1.0, 2.0)
    state = tx.init(params)
    _, state = tx.update(_tree(1.0, 1.0), state, params)  # one good step
    assert int(state.good_steps) == 1
    inner_before = state.inner
    updates, state = tx.update(_tree(np.inf, 1.0), state, params)
    np.testing.assert_array_equal(np.asarray(updates[0]["W"]), [0.0, 0.0])
    assert float(state.scale) == 512.0 and int(state.good_steps) == 0
    for new, old in zip(jax.tree.leaves(state.inner), jax.tree.leaves(inner_before)):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))  # adam's count kept
    updates, state = tx.update(_tree(np.nan, 1.0), state, params)
    assert float(state.scale) == 256.0
    np.testing.assert_array_equal(np.asarray(updates[0]["W"]), [0.0, 0.0])


def test_at_the_smallest_scale_a_non_finite_update_goes_through():
    tx = optim.loss_scaling(optax.sgd(1.0), initial=optim.MIN_SCALE)
    params = _tree(1.0)
    updates, state = tx.update(_tree(np.inf), tx.init(params), params)
    assert not np.isfinite(np.asarray(updates[0]["W"])).all()  # the guard sees it
    assert float(state.scale) == optim.MIN_SCALE


@pytest.mark.parametrize("kwargs, words", [
    (dict(initial=0.0), "initial must be"), (dict(initial=2.0**30), "initial must be"),
    (dict(growth_interval=0), "growth_interval"), (dict(growth_interval=True), "growth_interval"),
    (dict(factor=1.0), "factor must be"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        optim.loss_scaling(optax.sgd(1.0), **kwargs)


def _tiny_gradient_problem():
    """Inputs and errors so small that dW = X^T dA is below float16's smallest subnormal
    (6e-8) without scaling: about 1e-4 * 1e-4 per sample."""
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((16, 4)) * 1e-4).astype(np.float32)
    Y = np.zeros((16, 2), np.float32)
    return X, Y


def test_scaling_keeps_float16_gradients_that_underflow_without_it():
    X, Y = _tiny_gradient_problem()
    # the second layer passes its input through (W = I): the first layer's backward runs
    # in float16 (under float16 the output layer's runs in float32, see precision)
    stack = [layers.Dense(2, "identity"), layers.Dense(2, "identity")]
    f32 = network.build(stack, (4,))
    f16 = network.build(stack, (4,), policy="float16")
    params = network.init(f32, 1)
    params = ({"W": params[0]["W"], "b": jnp.full_like(params[0]["b"], 1e-4)},
              {"W": jnp.eye(2, dtype=jnp.float32), "b": jnp.zeros((1, 2), jnp.float32)})
    exact = objective.gradients(f32, params, X, Y, "MSE")[0][0]["W"]
    plain = objective.gradients(f16, params, X, Y, "MSE")[0][0]["W"]
    scale = jnp.asarray(2.0**15, jnp.float32)
    scaled = objective.gradients(f16, params, X, Y, "MSE", scale=scale)[0][0]["W"] / scale
    assert float(jnp.max(jnp.abs(exact))) > 0
    assert float(jnp.max(jnp.abs(plain))) == 0.0 or float(
        jnp.max(jnp.abs(plain - exact) / jnp.max(jnp.abs(exact)))) > 0.1  # underflowed
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(exact),
                               rtol=0, atol=float(jnp.max(jnp.abs(exact))) * 5e-3)


@pytest.fixture(scope="module")
def f16_setup():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((48, 5)).astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[(X[:, 0] > 0).astype(int)]
    net = network.build([layers.Dense(6, "tanh"), layers.Dense(2, "softmax")], (5,),
                        policy="float16")
    return net, network.init(net, 2), {"dtrain": (X, Y)}


def test_fit_under_float16_scales_its_optimizer_and_trains(f16_setup, tmp_path):
    net, params, data = f16_setup
    kw = dict(epochs=4, batch_size=8, loss="CCE", key=1)
    result = network.fit(net, params, data, **kw)
    assert isinstance(result.opt_state, optim.LossScaleState)
    # CCE's dL/dA (about 2 here) times the default 2**15 overflows float16 (65504): the
    # first step is skipped and the scale backs off
    assert 0 < float(result.opt_state.scale) < 2.0**15
    assert result.history["CCE"]["dtrain"][-1] < 0.8 * result.history["CCE"]["dtrain"][0]
    # a checkpointed float16 run resumes bitwise, the loss scale included
    ck = io.Checkpoints(tmp_path)
    network.fit(net, params, data, checkpoints=ck, **{**kw, "epochs": 2})
    resumed = network.fit(net, None, data, resume=io.load_checkpoint(ck.path("last")), **kw)
    assert float(resumed.opt_state.scale) == float(result.opt_state.scale)
    for a, b in zip(result.params, resumed.params):
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_float16_with_scaling_tracks_float32(f16_setup):
    net, params, data = f16_setup
    kw = dict(epochs=4, batch_size=8, loss="CCE", key=1)
    f32 = network.build([layers.Dense(6, "tanh"), layers.Dense(2, "softmax")], (5,))
    plain = network.fit(f32, params, data, **kw)
    assert not isinstance(plain.opt_state, optim.LossScaleState)  # float32: no scaling
    tx = optim.loss_scaling(optim.epynn_sgd(Schedule(), 4, 6), initial=256.0)
    mixed = network.fit(net, params, data, optimizer=tx, **kw)
    assert float(mixed.opt_state.scale) == 256.0  # no step skipped
    for a, b in zip(mixed.params, plain.params):
        for k in a:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=2e-2)


def test_a_given_loss_scaled_optimizer_is_not_wrapped_twice(f16_setup):
    net, params, data = f16_setup
    tx = optim.loss_scaling(optax.sgd(0.01), initial=4.0, growth_interval=10**6)
    result = network.fit(net, params, data, epochs=1, batch_size=8, loss="CCE",
                         optimizer=tx, key=0)
    assert isinstance(result.opt_state, optim.LossScaleState)
    assert not isinstance(result.opt_state.inner, optim.LossScaleState)
    assert float(result.opt_state.scale) == 4.0
