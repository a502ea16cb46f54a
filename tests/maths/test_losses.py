"""Losses: per-sample values and dL/dA against jax.grad, finite differences and EpyNN."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax.maths import losses
from epynn_jax.testing import relative_error

NAMES = ["MSE", "MAE", "MSLE", "CCE", "BCE"]


def _YA(name, m=6, u=3, seed=0):
    """Labels and outputs in the domain of each loss (A strictly inside (0, 1))."""
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.05, 0.95, (m, u))
    if name == "CCE":
        A = A / A.sum(axis=1, keepdims=True)
        Y = np.eye(u)[rng.integers(0, u, m)]
    elif name == "BCE":
        Y = rng.integers(0, 2, (m, u)).astype(float)
    else:
        Y = rng.uniform(0, 1, (m, u))
    return Y, A


@pytest.mark.parametrize("name", NAMES)
def test_value_shape_and_derivative_vs_jax_grad(x64, name):
    Y, A = _YA(name)
    Y, A = jnp.asarray(Y), jnp.asarray(A)
    L = losses.loss(name, Y, A)
    assert L.shape == (6,)
    dA = losses.loss_deriv(name, Y, A)
    assert dA.shape == A.shape
    # Each sample's loss depends on its own row only: grad of the sum is the per-sample dL_i/dA_i.
    expected = jax.grad(lambda a: jnp.sum(losses.loss(name, Y, a)))(A)
    assert relative_error(dA, expected) < 1e-8


@pytest.mark.parametrize("name", NAMES)
def test_derivative_vs_finite_differences(x64, name):
    Y, A = _YA(name, seed=1)
    eps = 1e-6
    fd = np.empty_like(A)
    for idx in np.ndindex(A.shape):
        e = np.zeros_like(A)
        e[idx] = eps
        Lp = np.asarray(losses.loss(name, jnp.asarray(Y), jnp.asarray(A + e)))
        Lm = np.asarray(losses.loss(name, jnp.asarray(Y), jnp.asarray(A - e)))
        fd[idx] = (Lp - Lm)[idx[0]] / (2 * eps)
    assert relative_error(losses.loss_deriv(name, jnp.asarray(Y), jnp.asarray(A)), fd) < 1e-7


def test_values_by_hand(x64):
    Y = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    A = jnp.asarray([[0.75, 0.25], [0.5, 0.5]])
    np.testing.assert_allclose(losses.loss("MSE", Y, A), [0.0625, 0.25])
    np.testing.assert_allclose(losses.loss("MAE", Y, A), [0.25, 0.5])
    np.testing.assert_allclose(losses.loss("CCE", Y, A), [-np.log(0.75), -np.log(0.5)])
    np.testing.assert_allclose(losses.loss("BCE", Y, A), [-np.log(0.75), -np.log(0.5)])
    np.testing.assert_allclose(
        losses.loss("MSLE", Y, A),
        [((np.log(2) - np.log(1.75)) ** 2 + np.log(1.25) ** 2) / 2,
         (np.log(1.5) ** 2 + (np.log(2) - np.log(1.5)) ** 2) / 2])


@pytest.fixture(scope="module")
def epynn_loss():
    from conftest import load_epynn

    load_epynn()
    from epynn.commons import loss

    return loss


@pytest.mark.parametrize("name", NAMES)
def test_matches_epynn(x64, epynn_loss, name):
    Y, A = _YA(name, m=7, u=4, seed=2)
    fn = epynn_loss.loss_functions(name, "softmax")
    np.testing.assert_allclose(losses.loss(name, jnp.asarray(Y), jnp.asarray(A)), fn(Y, A),
                               rtol=1e-13, atol=0)
    np.testing.assert_allclose(losses.loss_deriv(name, jnp.asarray(Y), jnp.asarray(A)),
                               fn(Y, A, deriv=True), rtol=1e-13, atol=0)


def test_rank3_outputs_count_every_unit(x64):
    """For outputs (m, s, u), U = s * u and the loss sums over both axes."""
    rng = np.random.default_rng(3)
    Y, A = rng.uniform(size=(2, 3, 4)), rng.uniform(size=(2, 3, 4))
    flat = losses.loss("MSE", jnp.asarray(Y.reshape(2, 12)), jnp.asarray(A.reshape(2, 12)))
    np.testing.assert_allclose(losses.loss("MSE", jnp.asarray(Y), jnp.asarray(A)), flat)


@pytest.mark.parametrize("name,out", [("CCE", "sigmoid"), ("CCE", "tanh"), ("CCE", "relu"),
                                      ("BCE", "tanh"), ("MSLE", "tanh")])
def test_incompatible_output_activation(name, out):
    with pytest.raises(ValueError) as err:
        losses.check_loss(name, out)
    assert name in str(err.value) and out in str(err.value)


@pytest.mark.parametrize("name,out", [("CCE", "softmax"), ("BCE", "sigmoid"), ("MSE", "tanh"),
                                      ("MAE", "tanh"), ("MSLE", "relu"), ("BCE", "softmax")])
def test_compatible_output_activation(name, out):
    assert losses.check_loss(name, out) == name


def test_compatibility_agrees_with_epynn(epynn_loss):
    for name in NAMES:
        for out in ["identity", "relu", "lrelu", "elu", "sigmoid", "tanh", "softmax"]:
            try:
                epynn_loss.loss_functions(name, out)
                epynn_ok = True
            except Exception:
                epynn_ok = False
            try:
                losses.check_loss(name, out)
                ours_ok = True
            except ValueError:
                ours_ok = False
            assert ours_ok == epynn_ok, (name, out)


def test_unknown_loss_names():
    with pytest.raises(ValueError, match="unknown loss 'mse'.*MSE"):
        losses.check_loss("mse")
    with pytest.raises(TypeError, match="loss must be a name"):
        losses.check_loss(None)


# -- float32: outputs one ulp outside [0, 1] and saturated outputs ----------------------------

_ONE_UP = np.nextafter(np.float32(1), np.float32(2))      # 1.0000001: a float32 softmax sum
_ZERO_DOWN = -np.float32(np.finfo(np.float32).tiny)        # just below 0


@pytest.mark.parametrize("name", ["MSLE", "CCE", "BCE"])
@pytest.mark.parametrize("edge", [_ONE_UP, np.float32(1), np.float32(0), _ZERO_DOWN,
                                  np.float32(-1e-7)])
def test_float32_log_losses_finite_at_the_edges(name, edge):
    """Every loss that takes a log is finite, value and derivative, for outputs at the
    edges of [0, 1] and one float32 step beyond them, against both labels."""
    Y = jnp.asarray([[1.0, 0.0], [0.0, 1.0]], jnp.float32)
    A = jnp.asarray([[edge, 1 - edge], [edge, 1 - edge]], jnp.float32)
    assert A.dtype == jnp.float32
    L, dA = losses.loss(name, Y, A), losses.loss_deriv(name, Y, A)
    assert L.dtype == jnp.float32 and dA.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(L))), (name, edge, L)
    assert np.all(np.isfinite(np.asarray(dA))), (name, edge, dA)
    assert np.all(np.asarray(L) >= -1e-6), (name, edge, L)  # a loss never goes negative


@pytest.mark.parametrize("name", NAMES)
def test_float32_derivative_points_the_right_way_beyond_the_edges(name):
    """One float32 step past 1 with label 0, the loss falls as A falls (dL/dA > 0; CCE
    ignores a label-0 output: dL/dA = 0); just below 0 with label 1, the loss falls as A
    rises (dL/dA < 0)."""
    above = losses.loss_deriv(name, jnp.asarray([[0.0]], jnp.float32),
                              jnp.asarray([[_ONE_UP]], jnp.float32))
    below = losses.loss_deriv(name, jnp.asarray([[1.0]], jnp.float32),
                              jnp.asarray([[_ZERO_DOWN]], jnp.float32))
    above, below = np.asarray(above), np.asarray(below)
    assert np.isfinite(above).all() and np.isfinite(below).all(), (name, above, below)
    assert (above == 0).all() if name == "CCE" else (above > 0).all(), (name, above)
    assert (below < 0).all(), (name, below)


def test_float32_bce_saturated_gradient_is_bounded_by_the_resolution():
    """The clip uses float32's resolution, not 1e-16: |dL/dA| stays below 1 / eps32."""
    Y = jnp.asarray([[0.0, 1.0]], jnp.float32)
    A = jnp.asarray([[1.0, 0.0]], jnp.float32)
    dA = np.asarray(losses.loss_deriv("BCE", Y, A))
    assert np.all(np.abs(dA) <= 1.0 / np.finfo(np.float32).eps), dA


@pytest.mark.parametrize("name", NAMES)
def test_float64_edges_keep_epynns_values(x64, epynn_loss, name):
    """Inside [0, 1] at float64 the values stay EpyNN's, also close to the edges."""
    Y = np.asarray([[1.0, 0.0], [0.0, 1.0]])
    A = np.asarray([[1e-9, 1 - 1e-9], [1 - 1e-12, 1e-12]])
    if name == "CCE":
        A = A / A.sum(axis=1, keepdims=True)
    fn = epynn_loss.loss_functions(name, "softmax")
    np.testing.assert_allclose(losses.loss(name, jnp.asarray(Y), jnp.asarray(A)), fn(Y, A),
                               rtol=1e-8, atol=0)
    np.testing.assert_allclose(losses.loss_deriv(name, jnp.asarray(Y), jnp.asarray(A)),
                               fn(Y, A, deriv=True), rtol=1e-8, atol=0)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_values_and_derivatives_finite(name, dtype):
    """Where 1e-16 underflows to 0 (float16), MAE's |Y - A| + eps still never divides by 0."""
    Y = jnp.asarray([[1.0, 0.0], [0.0, 1.0]], dtype)
    A = jnp.asarray([[1.0, 0.0], [0.5, 0.5]], dtype)  # first row: A == Y exactly
    L, dA = losses.loss(name, Y, A), losses.loss_deriv(name, Y, A)
    assert np.isfinite(np.asarray(L, np.float32)).all(), (name, L)
    assert np.isfinite(np.asarray(dA, np.float32)).all(), (name, dA)
