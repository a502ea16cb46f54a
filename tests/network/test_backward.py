"""network.backward (the hand-written chain) vs plain autodiff and vs the custom_vjp path."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.maths import losses
from epynn_jax.maths.activations import ActivationHPars
from epynn_jax.testing import relative_error

# Compiled once per (net, loss), shared by the tests below.
hand = jax.jit(network.gradients, static_argnums=(0, 4, 6))


@jax.jit(static_argnums=(0, 4, 6))
def three_ways(net, params, X, Y, loss, key, train):
    """Hand-written, plain-autodiff and custom_vjp gradients in one compiled call."""
    return (network.gradients(net, params, X, Y, loss, key, train)[0],
            network.autodiff_gradients(net, params, X, Y, loss, key, train, False),
            network.autodiff_gradients(net, params, X, Y, loss, key, train, True))


def _net(out="softmax", k=3, hp=ActivationHPars()):
    return network.build([layers.Embedding(), layers.Flatten(), layers.Dense(5, "tanh", hpars=hp),
                          layers.Dropout(0.3), layers.Dense(4, "elu", hpars=hp),
                          layers.Template(), layers.Dense(k, out, hpars=hp)], (3, 2))


def _setup(net, k=3, m=6, seed=0):
    rng = np.random.default_rng(seed)
    params = network.init(net, jax.random.key(seed))
    params = tuple({n: v + 0.1 * rng.standard_normal(v.shape) for n, v in p.items()}
                   for p in params)
    X = jnp.asarray(rng.standard_normal((m, 3, 2)))
    Y = jnp.asarray(np.eye(k)[rng.integers(0, k, m)])
    return params, X, Y


# Every loss is also checked against EpyNN's gradients in test_parity.py.
@pytest.mark.parametrize("loss,out,train", [("MSE", "softmax", True), ("CCE", "softmax", False)])
def test_backward_matches_autodiff(x64, loss, out, train):
    net = _net(out)
    params, X, Y = _setup(net)
    key = jax.random.key(11)
    grads, plain, vjp = three_ways(net, params, X, Y, loss, key, train)
    for i, (g, a, c) in enumerate(zip(grads, plain, vjp)):
        assert set(g) == set(a) == set(c) == set(params[i])
        for name in g:
            assert relative_error(g[name], a[name]) < 1e-10, (i, name)
            assert relative_error(g[name], c[name]) < 1e-12, (i, name)


def test_gradients_are_of_the_summed_loss(x64):
    """Doubling the batch (two copies) doubles every gradient: no 1/m."""
    net = _net()
    params, X, Y = _setup(net)
    g1 = hand(net, params, X, Y, "MSE", None, False)[0]
    g2 = hand(net, params, jnp.concatenate([X, X]), jnp.concatenate([Y, Y]), "MSE", None,
              False)[0]
    chex.assert_trees_all_close(jax.tree.map(lambda g: 2 * g, g1), g2, rtol=1e-12, atol=1e-15)


def test_dX_matches_autodiff_and_finite_differences(x64):
    net = _net()
    params, X, Y = _setup(net, seed=1)

    @jax.jit
    def chain(params, X):
        A, fcs = network.forward(net, params, X)
        return network.backward(net, params, fcs, losses.loss_deriv("MSE", Y, A))

    dX, gs, bcs = chain(params, X)
    assert dX.shape == X.shape and len(gs) == len(bcs) == len(net)

    @jax.jit
    def objective(x):
        return jnp.sum(losses.loss("MSE", Y, network.forward(net, params, x)[0]))

    assert relative_error(dX, jax.jit(jax.grad(objective))(X)) < 1e-12
    assert relative_error(dX, jax.jit(jax.grad(lambda x: jnp.sum(losses.loss(
        "MSE", Y, network.apply(net, params, x)))))(X)) < 1e-12
    rng = np.random.default_rng(2)
    for _ in range(3):
        v = jnp.asarray(rng.standard_normal(X.shape))
        fd = (objective(X + 1e-6 * v) - objective(X - 1e-6 * v)) / 2e-6
        assert abs(float(jnp.sum(dX * v)) - float(fd)) <= 1e-7 * max(1.0, abs(float(fd)))


def test_custom_vjp_runs_the_hand_written_backward(x64):
    """With EpyNN's softmax quirk the custom_vjp path differs from autodiff by exactly T."""
    T = 3.0
    net = network.build([layers.Dense(3, "softmax", hpars=ActivationHPars(
        softmax_temperature=T, epynn_softmax_grad=True))], (4,))
    params, _, _ = _setup(network.build([layers.Dense(3, "softmax")], (4,)), m=5)
    rng = np.random.default_rng(3)
    X = jnp.asarray(rng.standard_normal((5, 4)))
    Y = jnp.asarray(np.eye(3)[rng.integers(0, 3, 5)])
    hand_g, plain, vjp = three_ways(net, params, X, Y, "MSE", None, False)
    for name in ("W", "b"):
        np.testing.assert_allclose(vjp[0][name], T * np.asarray(plain[0][name]), rtol=1e-12)
        np.testing.assert_allclose(vjp[0][name], hand_g[0][name], rtol=1e-12)


def test_forward_caches_and_backward_caches(x64):
    net = _net()
    params, X, Y = _setup(net)
    A, fcs = network.forward(net, params, X, jax.random.key(0), True)
    assert all("X" in fc for fc in fcs)
    assert fcs[2]["Z"].shape == (6, 5) and fcs[3]["D"].shape == (6, 5)
    np.testing.assert_array_equal(A, network.apply(net, params, X, jax.random.key(0), True))
    _, gs, bcs = network.backward(net, params, fcs, jnp.ones_like(A))
    assert [set(g) for g in gs] == [set(), set(), {"dW", "db"}, set(), {"dW", "db"}, set(),
                                    {"dW", "db"}]
    assert all("dX" in bc for bc in bcs)
