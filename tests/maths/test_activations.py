"""Activations: every derivative against jax.grad / jax.jacobian, finite differences and EpyNN."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax.maths import activations as act
from epynn_jax.maths.activations import ActivationHPars
from epynn_jax.testing import relative_error
from epynn_jax.testing import x64 as enable_x64

ELEMENTWISE = ["identity", "relu", "lrelu", "elu", "sigmoid", "tanh"]
ALL = [*ELEMENTWISE, "softmax"]
HP = ActivationHPars(ELU_alpha=0.7, LRELU_alpha=0.05)


def _Z(shape=(5, 4), seed=0, scale=2.0):
    """Random pre-activations away from the kinks at 0 (relu, lrelu, elu)."""
    z = np.random.default_rng(seed).standard_normal(shape) * scale
    return np.where(np.abs(z) < 1e-3, 0.5, z)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_derivative_matches_jax_grad(x64, name):
    Z = jnp.asarray(_Z())
    expected = jax.vmap(jax.vmap(jax.grad(lambda z: act.activate(name, z, HP))))(Z)
    got = act.derivative(name, Z, HP)
    assert got.shape == Z.shape and got.dtype == Z.dtype
    assert relative_error(got, expected) < 1e-12


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_derivative_matches_finite_differences(x64, name):
    Z = _Z(seed=1)
    eps = 1e-6
    fd = (np.asarray(act.activate(name, jnp.asarray(Z + eps), HP))
          - np.asarray(act.activate(name, jnp.asarray(Z - eps), HP))) / (2 * eps)
    assert relative_error(act.derivative(name, jnp.asarray(Z), HP), fd) < 1e-7


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("T", [1.0, 3.0])
def test_backprop_is_the_vjp(x64, name, T):
    hp = ActivationHPars(ELU_alpha=0.7, LRELU_alpha=0.05, softmax_temperature=T)
    Z = jnp.asarray(_Z(seed=2))
    dA = jnp.asarray(np.random.default_rng(3).standard_normal(Z.shape))
    A, vjp = jax.vjp(lambda z: act.activate(name, z, hp), Z)
    (expected,) = vjp(dA)
    got = act.backprop(name, dA, Z, A, hp)
    assert got.shape == Z.shape
    assert relative_error(got, expected) < 1e-12


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_softmax_jacobian_matches_jax_and_fd(x64, T):
    hp = ActivationHPars(softmax_temperature=T)
    Z = _Z((3, 5), seed=4)
    J = np.asarray(act.derivative("softmax", jnp.asarray(Z), hp))
    assert J.shape == (3, 5, 5)
    jac = jax.vmap(jax.jacobian(lambda z: act.softmax(z, hp)))(jnp.asarray(Z))
    assert relative_error(J, jac) < 1e-12
    # Central differences, all columns at once: J[i, a, b] = dA_ia / dZ_ib.
    eps = 1e-6
    E = np.eye(5) * eps                                   # (b, 5)
    plus = np.asarray(act.softmax(jnp.asarray(Z[:, None, :] + E), hp))   # (i, b, a)
    minus = np.asarray(act.softmax(jnp.asarray(Z[:, None, :] - E), hp))
    fd = np.swapaxes((plus - minus) / (2 * eps), 1, 2)
    assert relative_error(J, fd) < 1e-7
    # Rows of the Jacobian sum to zero (softmax outputs sum to 1).
    np.testing.assert_allclose(J.sum(axis=1), 0, atol=1e-14)


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_epynn_softmax_grad_quirk_is_T_times_exact(x64, T):
    exact = ActivationHPars(softmax_temperature=T)
    quirk = ActivationHPars(softmax_temperature=T, epynn_softmax_grad=True)
    Z = jnp.asarray(_Z((4, 3), seed=5))
    dA = jnp.asarray(np.random.default_rng(6).standard_normal(Z.shape))
    A = act.softmax(Z, exact)
    np.testing.assert_allclose(act.softmax(Z, quirk), A, rtol=0, atol=0)
    np.testing.assert_allclose(act.backprop("softmax", dA, Z, A, quirk),
                               T * act.backprop("softmax", dA, Z, A, exact), rtol=1e-13)
    np.testing.assert_allclose(act.derivative("softmax", Z, quirk),
                               T * act.derivative("softmax", Z, exact), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ALL)
def test_stable_for_large_inputs(name, dtype):
    """No NaN or inf for |Z| = 1000, in the value, derivative and backprop."""
    with enable_x64(dtype == np.float64):
        Z = jnp.asarray(np.array([[1000.0, -1000.0, 0.5], [-1000.0, -999.0, 1000.0]], dtype))
        dA = jnp.ones_like(Z)
        A = act.activate(name, Z, HP)
        outs = {"A": A, "derivative": act.derivative(name, Z, HP),
                "backprop": act.backprop(name, dA, Z, A, HP)}
        for what, v in outs.items():
            assert v.dtype == dtype, (name, what, v.dtype)
            assert np.all(np.isfinite(np.asarray(v))), (name, what, v)


def test_limits_at_large_inputs(x64):
    Z = jnp.asarray([[1000.0, -1000.0]])
    np.testing.assert_array_equal(act.tanh(Z), [[1.0, -1.0]])
    np.testing.assert_array_equal(act.sigmoid(Z), [[1.0, 0.0]])
    np.testing.assert_allclose(act.elu(Z, HP), [[1000.0, -0.7]])
    np.testing.assert_allclose(act.softmax(Z), [[1.0, 0.0]])


@pytest.fixture(scope="module")
def epynn_maths():
    from conftest import load_epynn

    load_epynn()
    from epynn.commons import maths

    maths.activation_tune({"ELU_alpha": 0.7, "LRELU_alpha": 0.05, "softmax_temperature": 3.0})
    return maths


@pytest.mark.parametrize("name", ALL)
def test_forward_and_derivative_match_epynn(x64, epynn_maths, name):
    Z = _Z((6, 4), seed=7, scale=3.0)
    hp = ActivationHPars(ELU_alpha=0.7, LRELU_alpha=0.05, softmax_temperature=3.0,
                         epynn_softmax_grad=True)
    epynn_maths.activation_tune({"ELU_alpha": 0.7, "LRELU_alpha": 0.05,
                                 "softmax_temperature": 3.0})
    fn = getattr(epynn_maths, name)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EpyNN's elu warns on NumPy 2
        ref_A, ref_d = fn(Z.copy()), fn(Z.copy(), deriv=True)
    np.testing.assert_allclose(act.activate(name, jnp.asarray(Z), hp), ref_A, rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(act.derivative(name, jnp.asarray(Z), hp), ref_d, rtol=1e-12,
                               atol=1e-15)


def test_epynn_tanh_overflows_but_ours_does_not(x64, epynn_maths):
    with np.errstate(all="ignore"):
        assert np.isnan(epynn_maths.tanh(np.array([[1000.0]])))[0, 0]
    assert act.tanh(jnp.asarray([[1000.0]]))[0, 0] == 1.0


@pytest.mark.parametrize("bad", ["Relu", "softplus", ""])
def test_unknown_activation_name(bad):
    with pytest.raises(ValueError, match="unknown activation") as err:
        act.check_activation(bad, "Dense")
    assert "Dense" in str(err.value) and repr(bad) in str(err.value)


def test_activation_name_must_be_string():
    with pytest.raises(TypeError, match="activation must be a name"):
        act.check_activation(3)
    assert act.check_activation(act.relu) == "relu"


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="softmax_temperature"):
        ActivationHPars(softmax_temperature=0)


@pytest.mark.parametrize("scalar", [np.float32, np.float64, np.float16])
def test_numpy_scalar_hyperparameters_keep_a_bfloat16_activation_in_bfloat16(scalar):
    hp = ActivationHPars(ELU_alpha=scalar(0.5), LRELU_alpha=scalar(0.25),
                         softmax_temperature=scalar(2.0))
    assert all(type(getattr(hp, f)) is float
               for f in ("ELU_alpha", "LRELU_alpha", "softmax_temperature"))
    assert hp == ActivationHPars(ELU_alpha=0.5, LRELU_alpha=0.25, softmax_temperature=2.0)
    assert hash(hp) == hash(ActivationHPars(ELU_alpha=0.5, LRELU_alpha=0.25,
                                            softmax_temperature=2.0))
    x = jnp.array([-1.0, 0.5, 2.0], jnp.bfloat16)
    for name in ("lrelu", "elu", "softmax"):
        assert act.activate(name, x, hp).dtype == jnp.bfloat16, name
