"""Dense: hand-written backward vs jax.grad and finite differences, and vs EpyNN's Dense."""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jit_variants import check_pass

from epynn_jax import testing
from epynn_jax.layers import Dense, LayerError
from epynn_jax.layers import dense as dense_mod
from epynn_jax.maths.activations import ActivationHPars

ACTIVATIONS = ["identity", "relu", "lrelu", "elu", "sigmoid", "tanh", "softmax"]
HP = ActivationHPars(ELU_alpha=0.5, LRELU_alpha=0.1)


@pytest.mark.parametrize("activate", ACTIVATIONS)
def test_check_layer_every_activation(activate):
    report = testing.check_layer(Dense(4, activate, hpars=HP), (5,), batch=3)
    report.assert_ok()
    assert {c.key for c in report.checks} == {"dX", "dW", "db"}


class TestJitVariants(chex.TestCase):
    """The hand-written pass with and without jax.jit (see jit_variants.py)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*((a, a) for a in ACTIVATIONS))
    def test_forward_backward(self, activate):
        out = check_pass(self.variant, Dense(4, activate, hpars=HP), (5,))
        assert set(out["fc"]) == {"X", "Z", "A"} and set(out["g"]) == {"dW", "db"}


def test_check_layer_orthogonal_initialization():
    testing.check_layer(Dense(3, "tanh", "orthogonal"), (4,)).assert_ok()


def test_check_layer_softmax_temperature():
    testing.check_layer(Dense(4, "softmax", hpars=ActivationHPars(softmax_temperature=3.0)),
                        (5,)).assert_ok()


def test_check_layer_catches_epynn_softmax_quirk():
    """The checker fails EpyNN's T-times gradient: proof that it can fail."""
    hp = ActivationHPars(softmax_temperature=3.0, epynn_softmax_grad=True)
    report = testing.check_layer(Dense(4, "softmax", hpars=hp), (5,))
    assert not report.passed
    assert set(report.failed) == {"dX", "dW", "db"}
    with pytest.raises(AssertionError, match="Dense"):
        report.assert_ok()


def test_shapes_and_dicts(x64):
    layer = Dense(3, "relu").compute_shapes((5,))
    assert layer.d == {"u": 3, "n": 5}
    assert layer.dims(7) == {"u": 3, "n": 5, "m": 7}
    assert layer.fs(7) == {"X": (7, 5), "W": (5, 3), "b": (1, 3), "Z": (7, 3), "A": (7, 3)}
    assert layer.bs(7) == {"dA": (7, 3), "dZ": (7, 3), "dX": (7, 5)}
    assert layer.output_shape == (3,)
    assert layer.activation == {"activate": "relu"}
    p = layer.initialize_parameters(jax.random.key(0))
    assert p["W"].dtype == jnp.float64 and p["b"].shape == (1, 3)
    np.testing.assert_array_equal(p["b"], 0)


def test_params_float32_by_default():
    p = Dense(2).compute_shapes((3,)).initialize_parameters(jax.random.key(0))
    assert p["W"].dtype == jnp.float32 and p["b"].dtype == jnp.float32


def test_forward_by_hand(x64):
    layer = Dense(2, "identity").compute_shapes((3,))
    p = {"W": jnp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), "b": jnp.asarray([[0.5, -1.0]])}
    A, fc = dense_mod.forward(layer, p, jnp.asarray([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(A, [[4.5, 4.0]])
    assert set(fc) == {"X", "Z", "A"}


@pytest.fixture(scope="module")
def epynn_dense():
    from conftest import load_epynn

    load_epynn()
    from epynn.commons import maths
    from epynn.dense.models import Dense as EDense

    return EDense, maths


@pytest.mark.parametrize("activate", ACTIVATIONS)
def test_matches_epynn_dense(x64, epynn_dense, activate):
    """Same W, b and X: forward caches, backward caches and gradients equal EpyNN's."""
    EDense, maths = epynn_dense
    hpars = {"ELU_alpha": 0.5, "LRELU_alpha": 0.1, "softmax_temperature": 1}
    rng = np.random.default_rng(0)
    X, dA = rng.standard_normal((6, 5)), rng.standard_normal((6, 4))
    theirs = EDense(4, getattr(maths, activate), se_hPars=dict(hpars))
    theirs.np_rng = np.random.default_rng(1)
    theirs.compute_shapes(X)
    theirs.initialize_parameters()
    theirs.p["b"] = rng.standard_normal((1, 4))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        A_e = theirs.forward(X)
        dX_e = theirs.backward(dA)
        theirs.compute_gradients()

    layer = Dense(4, activate, hpars=HP).compute_shapes((5,))
    p = {k: jnp.asarray(v) for k, v in theirs.p.items()}
    A, fc = layer.forward(p, jnp.asarray(X))
    dX, bc = layer.backward(p, fc, jnp.asarray(dA))
    g = layer.compute_gradients(p, fc, bc)
    for k in fc:
        np.testing.assert_allclose(fc[k], theirs.fc[k], rtol=1e-12, atol=1e-14, err_msg=k)
    for k in bc:
        np.testing.assert_allclose(bc[k], theirs.bc[k], rtol=1e-12, atol=1e-14, err_msg=k)
    np.testing.assert_allclose(A, A_e, rtol=1e-12)
    np.testing.assert_allclose(dX, dX_e, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g["dW"], theirs.g["dW"], rtol=1e-12, atol=1e-14)
    # EpyNN's db is (u,), ours is (1, u) like b.
    assert g["db"].shape == (1, 4) and theirs.g["db"].shape == (4,)
    np.testing.assert_allclose(g["db"][0], theirs.g["db"], rtol=1e-12, atol=1e-14)


def test_rejects_higher_rank_input():
    with pytest.raises(LayerError, match=r"Dense: expected 2-D input.*\(4, 3\).*Flatten"):
        Dense(2).compute_shapes((4, 3))


@pytest.mark.parametrize("units", [0, -1, 2.0, True, "3"])
def test_rejects_bad_units(units):
    with pytest.raises(LayerError, match="Dense: units must be a positive int"):
        Dense(units)


def test_rejects_unknown_names():
    with pytest.raises(ValueError, match="Dense.activate: unknown activation 'softplus'"):
        Dense(2, "softplus")
    with pytest.raises(ValueError, match="Dense: initialization: unknown initializer 'he'"):
        Dense(2, "relu", "he")


def test_accepts_function_names():
    from epynn_jax.maths import activations, initializers

    layer = Dense(2, activations.tanh, initializers.orthogonal)
    assert layer.activate == "tanh" and layer.initialization == "orthogonal"
    assert layer == Dense(2, "tanh", "orthogonal")


def test_unbuilt_layer_errors():
    with pytest.raises(LayerError, match="Dense: d needs a built layer"):
        _ = Dense(2).d
