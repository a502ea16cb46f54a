"""Pooling: hand-written backward vs jax.grad and finite differences, EpyNN's tie rule
(against EpyNN and a direct loop), the corrected mean gradient, and parity with EpyNN."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jit_variants import check_pass

from epynn_jax import testing
from epynn_jax.layers import LayerError, Pooling
from epynn_jax.layers import pooling as pool_module

_jforward = jax.jit(pool_module.forward, static_argnums=4)
_jbackward = jax.jit(pool_module.backward)


class JittedPooling(Pooling):
    """The same layer with forward/backward jitted (fast finite differences in check_layer)."""

    def forward(self, p, X, key=None, training=False):
        return _jforward(self, p, X, key, training)

    def backward(self, p, fc, dA):
        return _jbackward(self, p, fc, dA)


@jax.jit
def _run(layer, X, dA):
    A, fc = pool_module.forward(layer, {}, X)
    dX, bc = pool_module.backward(layer, {}, fc, dA)
    return A, dX, fc, bc


def direct_pool(X, dA, pool_size, strides, pool):
    """Z and dX by the definitions, window by window (NumPy). Max/min: every element equal
    to the window's extremum gets the window's dA; mean: each gets dA / (ph * pw)."""
    (ph, pw), (sh, sw) = pool_size, strides
    m, h, w, c = X.shape
    oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
    Z = np.zeros((m, oh, ow, c))
    dX = np.zeros_like(X, dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            win = X[:, i * sh:i * sh + ph, j * sw:j * sw + pw, :]
            if pool == "mean":
                Z[:, i, j] = win.mean(axis=(1, 2))
                grad = np.broadcast_to(dA[:, i, j][:, None, None] / (ph * pw), win.shape)
            else:
                Z[:, i, j] = win.max(axis=(1, 2)) if pool == "max" else win.min(axis=(1, 2))
                grad = (win == Z[:, i, j][:, None, None]) * dA[:, i, j][:, None, None]
            dX[:, i * sh:i * sh + ph, j * sw:j * sw + pw] += grad
    return Z, dX


# (pool_size, strides, sample shape): strides = pool (None), int 1 (overlapping), tuple,
# non-square pools and inputs, floor remainders.
CASES = [
    ((2, 2), None, (5, 7, 2)),
    ((3, 2), 1, (6, 5, 2)),
    ((2, 3), (1, 2), (5, 8, 1)),
]


def _ids(case):
    return f"p{case[0]}-s{case[1]}".replace(" ", "")


@pytest.mark.parametrize(
    "pool, case",
    [(pool, c) for pool in ("max", "min", "mean") for c in CASES[1:]] + [("max", CASES[0])],
    ids=lambda x: x if isinstance(x, str) else _ids(x),
)
def test_gradients_match_autodiff_and_finite_differences(pool, case):
    ps, st, shape = case
    testing.check_layer(JittedPooling(ps, st, pool), shape, batch=2, max_entries=12,
                        directions=2).assert_ok()


class TestJitVariants(chex.TestCase):
    """The hand-written pass with and without jax.jit (see jit_variants.py)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("max", "min", "mean")
    def test_forward_backward(self, pool):
        ps, st, shape = CASES[1]  # overlapping windows
        check_pass(self.variant, Pooling(ps, st, pool), shape, batch=2)


@pytest.mark.parametrize("pool", ["max", "min", "mean"])
@pytest.mark.parametrize("case", [*CASES, ((2, 2), 3, (7, 8, 2))], ids=_ids)
def test_matches_the_definition_including_ties(pool, case, x64):
    ps, st, shape = case
    rng = np.random.default_rng(3)
    X = rng.integers(0, 3, (2, *shape)).astype(np.float64)  # many ties
    layer = Pooling(ps, st, pool).compute_shapes(shape)
    dA = rng.standard_normal((2, *layer.output_shape))
    A, dX, fc, bc = _run(layer, jnp.asarray(X), jnp.asarray(dA))
    Z, dX_ref = direct_pool(X, dA, layer.pool_size, layer.strides, pool)
    assert testing.relative_error(A, Z) < 1e-12
    assert testing.relative_error(dX, dX_ref) < 1e-12
    assert set(fc) == {"X", "Z", "A"} and set(bc) == {"dA", "dX"}


def _epynn_pool(epynn, pool_size, strides, pool, X, dA):
    from epynn.pooling.models import Pooling as EPool

    layer = EPool(pool_size, strides, {"max": np.max, "min": np.min, "mean": np.mean}[pool])
    A = layer.forward(X)
    dX = layer.backward(dA)
    return layer, A, dX


@pytest.mark.parametrize("pool", ["max", "min"])
@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=_ids)
@pytest.mark.parametrize("ties", [True, False], ids=["ties", "no-ties"])
def test_parity_with_epynn_max_min(epynn, x64, pool, case, ties):
    """EpyNN honours tuple strides (and strides = pool); every tied extremum gets dA."""
    ps, st, shape = case
    rng = np.random.default_rng(5)
    X = (rng.integers(0, 3, (3, *shape)).astype(np.float64) if ties
         else rng.standard_normal((3, *shape)))
    layer = Pooling(ps, st, pool).compute_shapes(shape)
    dA = rng.standard_normal((3, *layer.output_shape))
    elayer, eA, edX = _epynn_pool(epynn, ps, st, pool, X, dA)
    A, dX, fc, bc = _run(layer, jnp.asarray(X), jnp.asarray(dA))
    assert testing.relative_error(A, eA) < 1e-8
    assert testing.relative_error(dX, edX) < 1e-8
    for k in ("X", "Z", "A"):
        assert testing.relative_error(fc[k], elayer.fc[k]) < 1e-8, k
    for k in ("dA", "dX"):
        assert testing.relative_error(bc[k], elayer.bc[k]) < 1e-8, k
    assert {k: v for k, v in elayer.d.items() if k != "m"} == layer.d
    if ties:  # the rule matters here: more gradient than an autodiff max would send
        assert float(np.abs(np.asarray(dX)).sum()) > float(np.abs(dA).sum()) + 1e-6


def test_mean_forward_matches_epynn_and_its_gradient_is_fixed(epynn, x64):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((2, 4, 6, 2))
    layer = Pooling((2, 2), (1, 2), "mean").compute_shapes(X.shape[1:])
    dA = rng.standard_normal((2, *layer.output_shape))
    _, eA, edX = _epynn_pool(epynn, (2, 2), (1, 2), "mean", X, dA)
    A, dX, _, _ = _run(layer, jnp.asarray(X), jnp.asarray(dA))
    assert testing.relative_error(A, eA) < 1e-8
    _, dX_ref = direct_pool(X, dA, (2, 2), (1, 2), "mean")
    assert testing.relative_error(dX, dX_ref) < 1e-12
    assert testing.relative_error(dX, edX) > 0.5  # EpyNN's mean gradient is wrong


def test_int_strides_and_floor_shapes():
    layer = Pooling(2, strides=1).compute_shapes((5, 5, 1))
    assert layer.output_shape == (4, 4, 1)
    assert layer.bs(3)["dX"] == (3, 5, 5, 1)
    layer = Pooling((2, 3)).compute_shapes((5, 7, 2))
    assert layer.output_shape == (2, 2, 2)
    assert layer.d == {"ph": 2, "pw": 3, "sh": 2, "sw": 3, "h": 5, "w": 7, "d": 2,
                       "oh": 2, "ow": 2}
    assert set(layer.fs(2)) == {"X", "Z", "A"}
    assert layer.param_shapes() == {} and not layer.trainable


@pytest.mark.parametrize(
    "pool, name",
    [("max", "max"), (np.max, "max"), (np.amax, "max"), (jnp.max, "max"), ("amin", "min"),
     (np.min, "min"), (jnp.min, "min"), (np.mean, "mean"), (jnp.mean, "mean")],
)
def test_pool_names_and_functions(pool, name):
    layer = Pooling(pool=pool)
    assert layer.pool == name
    assert layer.activation == {"pool": name}
    assert hash(layer) == hash(Pooling((2, 2), (2, 2), name))


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({}, (6, 6), "rank 4"),
        ({}, (1, 6, 6, 1), "rank 4"),
        ({"pool_size": (3, 2)}, (2, 6, 1), "larger than the input"),
    ],
)
def test_bad_input_raises_before_tracing(kwargs, shape, match):
    with pytest.raises(LayerError, match=match):
        Pooling(**kwargs).compute_shapes(shape)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"pool": "median"}, "pool"), ({"pool": np.median}, "pool"), ({"pool": 3}, "pool"),
     ({"pool_size": 0}, "pool_size"), ({"strides": (2,)}, "strides")],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(LayerError, match=match):
        Pooling(**kwargs)


def test_windows_computed_offset_by_offset_are_bounded():
    """Untiled windows are traced one offset (a slice) at a time: a few bytes of a model
    file asked for 90,000 of them (minutes of tracing); more than MAX_OFFSETS are refused."""
    from epynn_jax.layers._windows import MAX_OFFSETS

    with pytest.raises(LayerError, match=r"Pooling: pool_size \(300, 300\) with strides "
                                         r"\(1, 1\).* at most 4096 offsets"):
        Pooling((300, 300), strides=1)
    assert MAX_OFFSETS == 64 * 64
    Pooling((64, 64), strides=1)  # at the bound
    Pooling((300, 300))  # tiled: one reshape, any size
    with pytest.raises(LayerError, match="at most 4096"):
        Pooling((65, 64), strides=(2, 2))
