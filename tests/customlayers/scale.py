"""A custom layer written by copying layers/template.py: A = X * a + c (per feature).

Two parameters, ``a`` and ``c``, each of shape (n,). Used by the custom-layer tests.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from epynn_jax.layers.base import Layer, check_input, float_dtype


@dataclasses.dataclass(frozen=True)
class Scale(Layer):
    """Per-feature affine map: A = X * a + c."""


def compute_shapes(layer: Scale, X_shape: tuple[int, ...]) -> Scale:
    check_input(layer, X_shape, 1)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: Scale, key: jax.Array) -> dict:
    (n,) = layer.input_shape
    return {"a": 1 + 0.1 * jax.random.normal(key, (n,), float_dtype()),
            "c": jnp.zeros((n,), float_dtype())}


def forward(layer: Scale, p: dict, X: jax.Array, key=None, training: bool = False):
    A = X * p["a"] + p["c"]
    return A, {"X": X, "A": A}


def backward(layer: Scale, p: dict, fc: dict, dA: jax.Array):
    dX = dA * p["a"]
    return dX, {"dA": dA, "dX": dX}


def compute_gradients(layer: Scale, p: dict, fc: dict, bc: dict) -> dict:
    return {"da": jnp.sum(bc["dA"] * fc["X"], axis=0), "dc": jnp.sum(bc["dA"], axis=0)}


# Scale's methods are the five functions above: layer.forward(...) is forward(layer, ...).
Scale.compute_shapes = compute_shapes
Scale.initialize_parameters = initialize_parameters
Scale.forward = forward
Scale.backward = backward
Scale.compute_gradients = compute_gradients
