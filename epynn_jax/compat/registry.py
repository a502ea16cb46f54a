"""The facade's built-in layer classes by name, and their constructor arguments from a file."""

from __future__ import annotations

import importlib

import numpy as np

__all__ = ["BUILTIN", "builtin_class", "constructor_kwargs"]

BUILTIN = {
    "Embedding": "embedding", "Dense": "dense", "RNN": "rnn", "LSTM": "lstm", "GRU": "gru",
    "Convolution": "convolution", "Pooling": "pooling", "Flatten": "flatten",
    "Dropout": "dropout", "Template": "template",
}

_POOLS = {"max": np.max, "min": np.min, "mean": np.mean}


def builtin_class(name: str) -> type:
    """The facade class called ``name`` (``'Dense'`` -> ``compat.dense.models.Dense``)."""
    if name not in BUILTIN:
        raise ValueError(f"unknown built-in layer {name!r}; known: {', '.join(BUILTIN)}")
    module = importlib.import_module(f"epynn_jax.compat.{BUILTIN[name]}.models")
    return getattr(module, name)


def _not_restored(name: str):
    """Stands for a user's initializer named in a model file: the file holds the trained
    weights, not the function, so drawing new weights with it raises a clear error."""

    def initializer(shape, rng=None):
        raise ValueError(
            f"this layer was saved with the initializer {name!r}, a function that model files "
            "do not hold (its trained weights were restored). To draw new weights, assign "
            f"layer.initialization = {name} before model.initialize()")

    initializer.__name__ = initializer.__qualname__ = name
    return initializer


def constructor_kwargs(name: str, config: dict) -> dict:
    """Constructor arguments from a saved config (names turned back into functions)."""
    from epynn_jax.compat.commons import maths

    out = {}
    for k, v in config.items():
        if k.startswith("activate"):
            v = maths.ACTIVATIONS[v]
        elif k == "initialization":
            v = {"xavier": maths.xavier, "orthogonal": maths.orthogonal}.get(v) or _not_restored(v)
        elif k == "pool":
            v = _POOLS[v]
        out[k] = v
    return out
