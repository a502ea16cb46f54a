"""Template: the identity layer, and the pattern for writing your own.

Copy this module to start a custom layer: keep the frozen dataclass, the
five functions in this order and the five lines at the end that bind them
as the class's methods (rename ``Template`` there too), then fill in the math.

Shapes (m = batch size): X (m, ...) -> A (m, ...), dA (m, ...) -> dX (m, ...).
Forward A = X; backward dX = dA; no parameters, no gradients.
"""

from __future__ import annotations

import dataclasses

import jax

from epynn_jax.layers.base import Layer, check_dA, check_input, check_X

__all__ = ["Template"]


@dataclasses.dataclass(frozen=True)
class Template(Layer):
    """Pass-through layer: A = X."""

    # forward reads no key; a layer that draws from it (as Dropout does) leaves this
    # True, the default (see Layer.uses_key)
    uses_key = False


def compute_shapes(layer: Template, X_shape: tuple[int, ...]) -> Template:
    """Record the input shape (any rank)."""
    check_input(layer, X_shape)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: Template, key: jax.Array) -> dict:
    """No parameters: ``p = {}``."""
    return {}


def forward(layer: Template, p: dict, X: jax.Array, key=None, training: bool = False):
    """A = X; ``fc = {'X', 'A'}``."""
    check_X(layer, X)
    A = X
    return A, {"X": X, "A": A}


def backward(layer: Template, p: dict, fc: dict, dA: jax.Array):
    """dX = dA; ``bc = {'dA', 'dX'}``."""
    check_dA(layer, fc, dA)
    dX = dA
    return dX, {"dA": dA, "dX": dX}


def compute_gradients(layer: Template, p: dict, fc: dict, bc: dict) -> dict:
    """No parameters: ``g = {}``."""
    return {}


# Template's methods are the five functions above: layer.forward(...) is forward(layer, ...).
Template.compute_shapes = compute_shapes
Template.initialize_parameters = initialize_parameters
Template.forward = forward
Template.backward = backward
Template.compute_gradients = compute_gradients
