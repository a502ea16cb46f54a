"""Flatten: reshape (m, d1, ..., dk) to (m, n) with n = d1 * ... * dk.

Forward A = reshape(X, (m, n)); backward dX = reshape(dA, X.shape). No parameters.
"""

from __future__ import annotations

import dataclasses
import math

import jax

from epynn_jax.layers.base import Layer, check_dA, check_input, check_X

__all__ = ["Flatten"]


@dataclasses.dataclass(frozen=True)
class Flatten(Layer):
    """Flatten every axis but the batch axis."""

    uses_key = False  # draws nothing (see Layer.uses_key)


def compute_shapes(layer: Flatten, X_shape: tuple[int, ...]) -> Flatten:
    """Record the input shape (any rank)."""
    check_input(layer, X_shape)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: Flatten, key: jax.Array) -> dict:
    """No parameters."""
    return {}


def forward(layer: Flatten, p: dict, X: jax.Array, key=None, training: bool = False):
    """A = X reshaped to (m, n); ``fc = {'X', 'A'}``."""
    check_X(layer, X)
    A = X.reshape(X.shape[0], math.prod(X.shape[1:]))
    return A, {"X": X, "A": A}


def backward(layer: Flatten, p: dict, fc: dict, dA: jax.Array):
    """dX = dA reshaped to X's shape; ``bc = {'dA', 'dX'}``."""
    check_dA(layer, fc, dA)
    dX = dA.reshape(fc["X"].shape)
    return dX, {"dA": dA, "dX": dX}


def compute_gradients(layer: Flatten, p: dict, fc: dict, bc: dict) -> dict:
    """No parameters."""
    return {}


# Flatten's methods are the five functions above: layer.forward(...) is forward(layer, ...).
Flatten.compute_shapes = compute_shapes
Flatten.initialize_parameters = initialize_parameters
Flatten.forward = forward
Flatten.backward = backward
Flatten.compute_gradients = compute_gradients
