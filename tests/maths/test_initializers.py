"""Initializers: the NumPy variants bit-identical to EpyNN; the JAX ones by their statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax.maths import initializers as init


@pytest.fixture(scope="module")
def epynn_maths():
    from conftest import load_epynn

    load_epynn()
    from epynn.commons import maths

    return maths


SHAPES = [(5, 3), (3, 5), (4, 4), (7, 1), (1, 6)]


@pytest.mark.parametrize("shape", SHAPES + [(3, 3, 2, 4)])
def test_xavier_np_bit_identical_to_epynn(epynn_maths, shape):
    ours = init.xavier_np(np.random.default_rng(42), shape)
    theirs = epynn_maths.xavier(shape, rng=np.random.default_rng(42))
    assert ours.dtype == theirs.dtype == np.float64
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("shape", SHAPES)
def test_orthogonal_np_bit_identical_to_epynn(epynn_maths, shape):
    ours = init.orthogonal_np(np.random.default_rng(7), shape)
    theirs = epynn_maths.orthogonal(shape, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(ours, theirs)


def test_np_variants_consume_the_generator_like_epynn(epynn_maths):
    """Successive draws from one generator stay in step (same number of values consumed)."""
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    for shape in [(4, 2), (2, 4), (3, 3)]:
        np.testing.assert_array_equal(init.xavier_np(r1, shape), epynn_maths.xavier(shape, r2))
        np.testing.assert_array_equal(init.orthogonal_np(r1, shape),
                                      epynn_maths.orthogonal(shape, r2))


@pytest.mark.parametrize("name", ["xavier", "orthogonal", "zeros"])
@pytest.mark.parametrize("shape", [(6, 3), (3, 6)])
def test_shape_and_dtype(name, shape):
    fn = init.INITIALIZERS[name]
    W = fn(jax.random.key(0), shape)
    assert W.shape == shape and W.dtype == jnp.float32


@pytest.mark.parametrize("name", ["xavier", "orthogonal", "zeros"])
def test_float64_under_x64(x64, name):
    W = init.INITIALIZERS[name](jax.random.key(0), (4, 3))
    assert W.dtype == jnp.float64
    assert np.all(np.isfinite(np.asarray(W)))


@pytest.mark.parametrize("shape", [(8, 8), (12, 5), (5, 12)])
def test_orthogonal_is_orthogonal(x64, shape):
    W = np.asarray(init.orthogonal(jax.random.key(1), shape))
    small = min(shape)
    G = W.T @ W if shape[0] >= shape[1] else W @ W.T
    np.testing.assert_allclose(G, np.eye(small), atol=1e-12)


def test_orthogonal_needs_2d():
    with pytest.raises(ValueError, match="2-D"):
        init.orthogonal(jax.random.key(0), (2, 2, 2))


def test_xavier_scale_statistics(x64):
    shape = (300, 500)
    W = np.asarray(init.xavier(jax.random.key(2), shape))
    target = np.sqrt(2 / sum(shape))
    assert abs(W.mean()) < 5 * target / np.sqrt(W.size)
    assert abs(W.std() / target - 1) < 0.01
    # Gaussian tails: about 4.55 % beyond 2 standard deviations.
    assert abs(np.mean(np.abs(W) > 2 * target) - 0.0455) < 0.003


def test_xavier_sums_all_dimensions(x64):
    """EpyNN's scale for a 4-D kernel uses the sum of all four dimensions."""
    shape = (4, 4, 30, 40)
    W = np.asarray(init.xavier(jax.random.key(3), shape))
    assert abs(W.std() / np.sqrt(2 / sum(shape)) - 1) < 0.02


def test_orthogonal_is_not_constant_sign_biased(x64):
    """Sign correction by diag(R) makes the diagonal of Q symmetric around 0 over many draws."""
    keys = jax.random.split(jax.random.key(4), 200)
    draws = jax.jit(jax.vmap(lambda k: init.orthogonal(k, (3, 3))))(keys)
    diag = np.asarray(draws)[:, 0, 0]
    assert 0.3 < np.mean(diag > 0) < 0.7


def test_different_keys_differ_same_key_repeats():
    a = init.xavier(jax.random.key(0), (3, 3))
    np.testing.assert_array_equal(a, init.xavier(jax.random.key(0), (3, 3)))
    assert not np.array_equal(a, init.xavier(jax.random.key(1), (3, 3)))


def test_zeros_ignores_key():
    np.testing.assert_array_equal(init.zeros(jax.random.key(5), (2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize("bad", ["glorot", "Xavier", 3])
def test_unknown_initializer(bad):
    with pytest.raises(ValueError, match="unknown initializer") as err:
        init.check_initializer(bad, "Dense")
    assert "Dense" in str(err.value)


def test_initializer_by_function():
    assert init.check_initializer(init.orthogonal) == "orthogonal"
