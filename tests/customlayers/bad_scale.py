"""The Scale layer with a deliberately wrong gradient for ``c``.

Two parameters, ``a`` and ``c``, each of shape (n,). Used by the custom-layer tests.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from epynn_jax.layers.base import Layer, check_input, float_dtype


@dataclasses.dataclass(frozen=True)
class BadScale(Layer):
    """Per-feature affine map: A = X * a + c."""


def compute_shapes(layer: BadScale, X_shape: tuple[int, ...]) -> BadScale:
    check_input(layer, X_shape, 1)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: BadScale, key: jax.Array) -> dict:
    (n,) = layer.input_shape
    return {"a": 1 + 0.1 * jax.random.normal(key, (n,), float_dtype()),
            "c": jnp.zeros((n,), float_dtype())}


def forward(layer: BadScale, p: dict, X: jax.Array, key=None, training: bool = False):
    A = X * p["a"] + p["c"]
    return A, {"X": X, "A": A}


def backward(layer: BadScale, p: dict, fc: dict, dA: jax.Array):
    dX = dA * p["a"]
    return dX, {"dA": dA, "dX": dX}


def compute_gradients(layer: BadScale, p: dict, fc: dict, bc: dict) -> dict:
    # Deliberately wrong: dL/dc is sum(dA); the factor a does not belong here.
    return {"da": jnp.sum(bc["dA"] * fc["X"], axis=0), "dc": jnp.sum(bc["dA"] * p["a"], axis=0)}


# BadScale's methods are the five functions above: layer.forward(...) is forward(layer, ...).
BadScale.compute_shapes = compute_shapes
BadScale.initialize_parameters = initialize_parameters
BadScale.forward = forward
BadScale.backward = backward
BadScale.compute_gradients = compute_gradients
