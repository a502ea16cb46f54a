"""Layer hyperparameters at their edges, in the functional API: values that broke a layer
quietly (a NumPy scalar that changed the output dtype, a filter size whose program took
minutes to compile) now behave, or are refused with an error naming the layer and the
argument. The facade's side, and its parity with EpyNN 1.2.13 at the edges, is
``tests/compat/test_attack_layer_edges.py``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers
from epynn_jax.layers import Convolution, Dropout, LayerError
from epynn_jax.layers import convolution as conv_module

# -- Dropout: drop_prob given as a NumPy scalar ------------------------------------------


@pytest.mark.parametrize("p", [np.float32(0.25), np.float64(0.25), np.float16(0.25)],
                         ids=lambda p: type(p).__name__)
def test_dropout_numpy_drop_prob_keeps_the_inputs_dtype(p):
    """A NumPy scalar drop_prob made X * D / (1 - p) a float32 array for a bfloat16 X (the
    layer computed in float32 under a bfloat16 policy, its dX too)."""
    layer = Dropout(p).compute_shapes((8,))
    X = jnp.ones((4, 8), jnp.bfloat16)
    A, fc = layer.forward({}, X, jax.random.key(0), True)
    dX, _ = layer.backward({}, fc, jnp.ones_like(A))
    assert (A.dtype, dX.dtype) == (jnp.bfloat16, jnp.bfloat16)
    assert type(layer.drop_prob) is float and layer.drop_prob == 0.25
    # the dict holds a plain float, and an equal layer hashes alike (a static argument)
    assert hash(layer) == hash(Dropout(0.25).compute_shapes((8,)))
    kept = np.asarray(A, np.float32)
    assert set(np.unique(kept)) <= {0.0, np.float32(jnp.bfloat16(1 / 0.75))}


# -- Convolution: large filters whose windows do not tile the input ----------------------


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setattr(conv_module.jax, "default_backend", lambda: "cpu")


@pytest.mark.parametrize("filter_size, strides, impl", [
    ((3, 3), 1, "patches"),        # the common case: patches
    ((16, 16), 1, "patches"),      # 256 offsets, the most patches take on a CPU
    ((17, 16), 1, "lax"),          # 272 offsets, overlapping windows
    ((20, 20), (21, 25), "lax"),   # windows that skip rows and columns (strides > filter)
    ((40, 40), None, "patches"),   # tiling windows are one reshape, whatever their size
])
def test_auto_on_cpu_leaves_patches_for_lax_beyond_256_kernel_offsets(
        on_cpu, filter_size, strides, impl):
    """The patches are one strided slice per kernel offset; on a CPU their compile time grew
    faster than their number (16 x 16: 14 s against lax's 0.5 s, 64 x 64 stride 1 over four
    minutes for the forward alone), for a layer a model file describes in a few bytes."""
    layer = Convolution(2, filter_size, strides).compute_shapes((45, 45, 1))
    assert layer.resolved_impl == impl


def test_patches_by_name_are_refused_beyond_4096_offsets_unless_the_windows_tile():
    with pytest.raises(LayerError, match=r"Convolution: impl='patches' with filter_size "
                                         r"\(65, 64\) and strides \(1, 1\): .* at most 4096 "
                                         r"offsets .* use impl='lax' or 'auto'"):
        Convolution(1, (65, 64), 1, impl="patches")
    Convolution(1, (64, 64), 1, impl="patches")  # 4096: allowed, as for Pooling
    Convolution(1, (65, 64), impl="patches")      # tiling windows: one reshape


def _direct(X, W, strides):
    """Z (no bias) and dW for dA = 1, by the definition, one output position at a time."""
    fh, fw, _, u = W.shape
    sh, sw = strides
    oh, ow = (X.shape[1] - fh) // sh + 1, (X.shape[2] - fw) // sw + 1
    Z = np.zeros((X.shape[0], oh, ow, u))
    dW = np.zeros_like(W)
    for i in range(oh):
        for j in range(ow):
            win = X[:, i * sh:i * sh + fh, j * sw:j * sw + fw, :]
            Z[:, i, j] = np.tensordot(win, W, axes=([1, 2, 3], [0, 1, 2]))
            dW += win.sum(axis=0)[..., None]
    return Z, dW


def test_a_large_overlapping_filter_on_cpu_computes_the_definition(on_cpu, x64):
    """The 'auto' layer beyond 256 offsets (lax) gives the convolution's numbers."""
    layer = Convolution(2, (17, 18), (2, 3), activate="identity").compute_shapes((20, 24, 2))
    assert layer.resolved_impl == "lax"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 20, 24, 2))
    p = {"W": jnp.asarray(rng.normal(size=(17, 18, 2, 2))), "b": jnp.zeros(2)}
    A, fc = jax.jit(layer.forward)(p, jnp.asarray(X))
    dX, bc = layer.backward(p, fc, jnp.ones_like(A))
    g = layer.compute_gradients(p, fc, bc)
    Z, dW = _direct(X, np.asarray(p["W"]), (2, 3))
    assert A.shape == (2, 2, 3, 2)
    np.testing.assert_allclose(A, Z, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g["dW"], dW, rtol=1e-10, atol=1e-10)


# -- initialization: an unknown or wrongly-typed one -------------------------------------


@pytest.mark.parametrize("make", [
    lambda i: layers.Dense(2, initialization=i), lambda i: layers.RNN(2, initialization=i),
    lambda i: layers.LSTM(2, initialization=i), lambda i: layers.GRU(2, initialization=i),
    lambda i: layers.Convolution(2, initialization=i)],
    ids=["Dense", "RNN", "LSTM", "GRU", "Convolution"])
@pytest.mark.parametrize("bad", ["he", "Xavier", 3, None, ["xavier"], lambda k, s: k],
                         ids=["he", "Xavier", "int", "None", "list", "lambda"])
def test_an_unknown_initialization_is_a_layer_error_naming_layer_and_argument(make, bad):
    """It was a bare ValueError from maths.initializers naming the layer only; the other
    hyperparameters are refused with a LayerError naming the layer and the argument."""
    with pytest.raises(LayerError) as err:
        make(bad)
    name = make("xavier").name
    assert str(err.value).startswith(f"{name}: initialization")
    assert "xavier" in str(err.value)  # the known ones


def test_a_known_initialization_is_kept_by_name():
    assert layers.Dense(2, initialization="zeros").initialization == "zeros"
    assert layers.GRU(2, initialization="xavier").initialization == "xavier"


@pytest.mark.parametrize("make, where", [
    (lambda a: layers.Dense(2, a), "Dense.activate"),
    (lambda a: layers.Convolution(2, (2, 2), activate=a), "Convolution.activate"),
    (lambda a: layers.RNN(2, activate=a), "RNN.activate"),
])
def test_an_unknown_activation_names_the_layer_and_the_argument(make, where):
    with pytest.raises(ValueError, match=rf"^{where}: unknown activation 'softplus'"):
        make("softplus")
    with pytest.raises(TypeError, match=rf"^{where}: activation must be a name"):
        make(3)
