"""Embedding: the input layer.

In EpyNN the Embedding layer holds the data set; here the data live in
:mod:`epynn_jax.data.dataset` (arrays are never layer fields) and the layer is
the identity at the head of a network that records the sample shape.

Shapes: X (m, ...) -> A = X; backward dX = dA. No parameters.
"""

from __future__ import annotations

import dataclasses

import jax

from epynn_jax.layers.base import Layer, check_dA, check_input, check_X, count

__all__ = ["Embedding"]


@dataclasses.dataclass(frozen=True)
class Embedding(Layer):
    """Input layer: A = X.

    ``vocabulary_size`` records EpyNN's ``d['e']`` when inputs are one-hot.
    """

    uses_key = False  # draws nothing (see Layer.uses_key)

    vocabulary_size: int | None = None

    def __post_init__(self) -> None:
        if self.vocabulary_size is not None:
            object.__setattr__(self, "vocabulary_size",
                               count(self.vocabulary_size, "Embedding: vocabulary_size"))

    @property
    def d(self) -> dict:
        d = super().d
        if self.vocabulary_size is not None:
            d["e"] = self.vocabulary_size
        return d


def compute_shapes(layer: Embedding, X_shape: tuple[int, ...]) -> Embedding:
    """Record the sample shape."""
    check_input(layer, X_shape)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: Embedding, key: jax.Array) -> dict:
    """No parameters."""
    return {}


def forward(layer: Embedding, p: dict, X: jax.Array, key=None, training: bool = False):
    """A = X; ``fc = {'X', 'A'}``."""
    check_X(layer, X)
    return X, {"X": X, "A": X}


def backward(layer: Embedding, p: dict, fc: dict, dA: jax.Array):
    """dX = dA; ``bc = {'dA', 'dX'}`` (EpyNN returns None: it is the first layer)."""
    check_dA(layer, fc, dA)
    return dA, {"dA": dA, "dX": dA}


def compute_gradients(layer: Embedding, p: dict, fc: dict, bc: dict) -> dict:
    """No parameters."""
    return {}


# Embedding's methods are the five functions above: layer.forward(...) is forward(layer, ...).
Embedding.compute_shapes = compute_shapes
Embedding.initialize_parameters = initialize_parameters
Embedding.forward = forward
Embedding.backward = backward
Embedding.compute_gradients = compute_gradients
