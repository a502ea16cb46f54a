"""Dense: the fully connected layer.

Shapes (m = batch, n = input features, u = units):
X (m, n), W (n, u), b (1, u), Z and A (m, u).

Forward::

    Z = X . W + b
    A = f(Z)

Backward (dA = dL/dA from the next layer)::

    dZ = dA * f'(Z)            (softmax: dZ = A * (dA - sum(dA * A)) / T)
    dX = dZ . W^T
    dW = X^T . dZ
    db = sum_m dZ              (shape (1, u), like b)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from epynn_jax.layers.base import (
    Layer,
    LayerError,
    check_dA,
    check_input,
    check_X,
    count,
    float_dtype,
    initialization,
)
from epynn_jax.maths import activations, initializers

__all__ = ["Dense"]


@dataclasses.dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer with ``units`` outputs and activation ``activate``."""

    uses_key = False  # draws nothing (see Layer.uses_key)

    units: int = 1
    activate: str = "sigmoid"
    initialization: str = "xavier"

    def __post_init__(self) -> None:
        activate = activations.check_activation(self.activate, "Dense.activate")
        object.__setattr__(self, "activate", activate)
        object.__setattr__(self, "initialization", initialization(self.initialization, "Dense"))
        object.__setattr__(self, "units", count(self.units, "Dense: units"))

    @property
    def d(self) -> dict:
        return {"u": self.units, "n": self._require_built("d")[0]}


def compute_shapes(layer: Dense, X_shape: tuple[int, ...]) -> Dense:
    """Input must be (m, n): put a Flatten before a Dense for higher ranks."""
    if len(X_shape) != 1:
        raise LayerError(
            f"Dense: expected 2-D input (m, n) but got sample shape {tuple(X_shape)}; "
            "add a Flatten layer before Dense"
        )
    check_input(layer, X_shape, 1)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: Dense, key: jax.Array) -> dict:
    """W (n, u) by ``initialization``; b (1, u) zeros."""
    (n,) = layer._require_built("initialize_parameters")
    init = initializers.INITIALIZERS[layer.initialization]
    return {
        "W": init(key, (n, layer.units), float_dtype()),
        "b": jnp.zeros((1, layer.units), float_dtype()),
    }


def forward(layer: Dense, p: dict, X: jax.Array, key=None, training: bool = False):
    """Z = X . W + b; A = f(Z). ``fc = {'X', 'Z', 'A'}``."""
    check_X(layer, X)
    Z = jnp.dot(X, p["W"]) + p["b"]
    A = activations.activate(layer.activate, Z, layer.hpars)
    return A, {"X": X, "Z": Z, "A": A}


def backward(layer: Dense, p: dict, fc: dict, dA: jax.Array):
    """dZ = dA * f'(Z); dX = dZ . W^T. ``bc = {'dA', 'dZ', 'dX'}``."""
    check_dA(layer, fc, dA)
    dZ = activations.backprop(layer.activate, dA, fc["Z"], fc["A"], layer.hpars)
    dX = jnp.dot(dZ, p["W"].T)
    return dX, {"dA": dA, "dZ": dZ, "dX": dX}


def compute_gradients(layer: Dense, p: dict, fc: dict, bc: dict) -> dict:
    """dW = X^T . dZ; db = sum over the batch of dZ."""
    dZ = bc["dZ"]
    return {"dW": jnp.dot(fc["X"].T, dZ), "db": jnp.sum(dZ, axis=0, keepdims=True)}


# Dense's methods are the five functions above: layer.forward(...) is forward(layer, ...).
Dense.compute_shapes = compute_shapes
Dense.initialize_parameters = initialize_parameters
Dense.forward = forward
Dense.backward = backward
Dense.compute_gradients = compute_gradients
