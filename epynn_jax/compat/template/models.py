"""``Template()``: the identity layer EpyNN offers as the pattern for custom layers.

To write your own NumPy layer, subclass :class:`epynn.commons.models.Layer`
(see ``docs/compat.md``); this class wraps the functional template instead.
"""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer

__all__ = ["Template"]


class Template(BuiltinLayer):
    """Pass-through layer (``epynn_jax.layers.template``)."""

    _functional = ("epynn_jax.layers.template", "Template")

    def __init__(self) -> None:
        super().__init__(None)
        self.trainable = True
