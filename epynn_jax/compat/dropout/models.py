"""``Dropout(drop_prob=0.5, axis=())``.

Fixed from EpyNN: units are dropped only while training, never at
evaluation or prediction.
"""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer

__all__ = ["Dropout"]


class Dropout(BuiltinLayer):
    """Inverted dropout (``epynn_jax.layers.dropout``)."""

    _functional = ("epynn_jax.layers.dropout", "Dropout")
    _uses_key = True

    def __init__(self, drop_prob: float = 0.5, axis=()) -> None:
        axis = tuple(axis) if isinstance(axis, (tuple, list)) else axis
        super().__init__(None, drop_prob=drop_prob, axis=axis)
        self.to_functional()  # checks drop_prob and axis now, naming the layer
        self.d["d"] = drop_prob
        self.d["a"] = axis
        self.trainable = False
