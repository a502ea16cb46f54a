"""Dropout: inverted dropout with an explicit PRNG key and a training flag.

Training: D = (U > drop_prob) with U ~ uniform(0, 1), drawn with shape X.shape
except size 1 on the axes listed in ``axis`` (those share one mask value);
A = X * D / (1 - drop_prob). Backward dX = dA * D / (1 - drop_prob).

Not training (evaluation, prediction): A = X, and D = 1 - drop_prob everywhere,
so that D / (1 - drop_prob) = 1 and the backward is dX = dA. (EpyNN drops units at
evaluation and prediction too; that is a bug we do not reproduce.)

U is drawn in float32 whatever the input's dtype (a bfloat16 draw would round
drop_prob to 8 bits; float64 adds nothing to a coin flip), so a network drops
the same units under every precision policy, and at float64.
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import jax.numpy as jnp

from epynn_jax.layers.base import Layer, LayerError, check_dA, check_input, check_X
from epynn_jax.maths import prng

__all__ = ["Dropout"]


@dataclasses.dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout with drop probability ``drop_prob`` (0 <= p < 1)."""

    drop_prob: float = 0.5
    axis: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", _axes(self.axis))
        p = self.drop_prob
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) < 1.0:
            raise LayerError(f"Dropout: drop_prob must be a number in [0, 1), got {p!r}")
        # A Python float: a NumPy scalar (np.float32(0.3)) would promote a bfloat16 X to
        # float32 in X * D / (1 - p), and hash unlike the equal layer of Dropout(0.3).
        object.__setattr__(self, "drop_prob", float(p))

    @property
    def d(self) -> dict:
        return {**super().d, "d": self.drop_prob, "a": self.axis}


def _axes(axis) -> tuple[int, ...]:
    """``axis`` as a tuple of ints: an int, or a tuple/list of ints (``()``: no shared axis)."""
    items = (axis,) if isinstance(axis, numbers.Integral) else axis
    if isinstance(items, (tuple, list)) and all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in items):
        return tuple(int(a) for a in items)
    raise LayerError(f"Dropout: axis must be an int or a tuple of ints (the axes that share "
                     f"one mask value; () for none), got {axis!r}")


def compute_shapes(layer: Dropout, X_shape: tuple[int, ...]) -> Dropout:
    """Record the input shape; every listed axis must exist (axis 0 is the batch)."""
    check_input(layer, X_shape)
    for a in layer.axis:
        if not (-len(X_shape) - 1 <= a <= len(X_shape)):
            raise LayerError(f"Dropout: axis {a} out of range for input rank {len(X_shape) + 1}")
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: Dropout, key: jax.Array) -> dict:
    """No parameters."""
    return {}


def _mask_shape(layer: Dropout, shape: tuple[int, ...]) -> tuple[int, ...]:
    axes = {a % len(shape) for a in layer.axis}
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def forward(layer: Dropout, p: dict, X: jax.Array, key=None, training: bool = False):
    """A = X * D / (1 - p) when training, else A = X; ``fc = {'X', 'D', 'A'}``."""
    check_X(layer, X)
    if training and layer.drop_prob > 0:
        if key is None:
            raise LayerError("Dropout: training needs a PRNG key")
        U = prng.uniform(key, _mask_shape(layer, X.shape))
        D = (U > layer.drop_prob).astype(X.dtype)
        A = X * D / (1 - layer.drop_prob)
    else:
        D = jnp.ones(_mask_shape(layer, X.shape), X.dtype) * (1 - layer.drop_prob)
        A = X
    return A, {"X": X, "D": D, "A": A}


def backward(layer: Dropout, p: dict, fc: dict, dA: jax.Array):
    """dX = dA * D / (1 - p); ``bc = {'dA', 'dX'}``."""
    check_dA(layer, fc, dA)
    dX = dA * fc["D"] / (1 - layer.drop_prob)
    return dX, {"dA": dA, "dX": dX}


def compute_gradients(layer: Dropout, p: dict, fc: dict, bc: dict) -> dict:
    """No parameters."""
    return {}


# Dropout's methods are the five functions above: layer.forward(...) is forward(layer, ...).
Dropout.compute_shapes = compute_shapes
Dropout.initialize_parameters = initialize_parameters
Dropout.forward = forward
Dropout.backward = backward
Dropout.compute_gradients = compute_gradients
