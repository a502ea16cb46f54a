"""Data helpers with EpyNN's names and return values (NumPy, on the host).

- ``index_elements_auto(X)``: vocabulary of the sorted unique elements ->
  ``(element_to_idx, idx_to_element, size)``;
- ``scale_features(X)``: one global min-max scaling to [0, 1];
- ``one_hot_encode(i, size)``, ``one_hot_encode_sequence(seq, e2i, size)``
  (steps, size), ``one_hot_decode_sequence(seq, i2e)``;
- ``encode_dataset(X, e2i, size)``: list of (steps, size) arrays;
- ``padding(X, p, forward=True)``: zero-pad (or strip) axes 1 and 2 of NHWC data.
"""

from __future__ import annotations

import numpy as np

from epynn_jax.data import dataset as _data

__all__ = [
    "index_elements_auto", "scale_features", "one_hot_encode", "one_hot_encode_sequence",
    "one_hot_decode_sequence", "encode_dataset", "padding",
]


def index_elements_auto(X_data) -> tuple[dict, dict, int]:
    """Vocabulary of the sorted unique elements of ``X_data`` (any shape)."""
    return _data.index_elements(np.asarray(X_data))


def scale_features(X_data) -> np.ndarray:
    """(X - min) / (max - min) over the whole array."""
    return _data.scale_features(X_data)


def one_hot_encode(i: int, elements_size: int) -> np.ndarray:
    """A 1-D one-hot vector of length ``elements_size`` with a 1 at ``i``."""
    out = np.zeros(elements_size)
    out[i] = 1.0
    return out


def one_hot_encode_sequence(sequence, element_to_idx: dict, elements_size: int) -> np.ndarray:
    """(steps, elements_size) one-hot encoding of a sequence of known elements."""
    try:
        idx = [element_to_idx[e] for e in sequence]
    except KeyError as err:
        raise ValueError(f"element {err.args[0]!r} is not in the vocabulary "
                         f"({len(element_to_idx)} known elements)") from None
    return np.eye(elements_size)[idx]


def one_hot_decode_sequence(sequence, idx_to_element: dict) -> list:
    """The elements of a (steps, size) one-hot sequence (argmax per step)."""
    return [idx_to_element[int(i)] for i in np.argmax(np.asarray(sequence), axis=-1)]


def encode_dataset(X_data, element_to_idx: dict, elements_size: int) -> list[np.ndarray]:
    """One-hot encode every sample (a sequence of elements) of ``X_data``."""
    X_data = np.asarray(X_data)
    return [one_hot_encode_sequence(x, element_to_idx, elements_size) for x in X_data]


def padding(X_data, padding: int, forward: bool = True) -> np.ndarray:
    """Zero-pad axes 1 and 2 by ``padding`` on both sides, or strip it (``forward=False``)."""
    return _data.padding(X_data, int(padding), bool(forward))  # EpyNN tests its truth
