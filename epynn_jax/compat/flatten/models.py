"""``Flatten()``: (m, ...) -> (m, n)."""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer

__all__ = ["Flatten"]


class Flatten(BuiltinLayer):
    """Reshape every axis but the batch axis into one (``epynn_jax.layers.flatten``)."""

    _functional = ("epynn_jax.layers.flatten", "Flatten")

    def __init__(self) -> None:
        super().__init__(None)
        self.trainable = False
