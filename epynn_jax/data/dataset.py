"""Data utilities: splitting, encoding, scaling, padding and batching.

These run on the host (NumPy) before training, once; the arrays they return
go to the device for the whole of ``fit``. They follow EpyNN's rules:

- ``split_dataset`` splits **in the given order** (no shuffle) by relative
  sizes: train = round(r0 / sum(r) * N), val = round(r1 / sum(r) * N), test = rest;
- ``index_elements`` builds a vocabulary from the **sorted** unique elements;
- ``one_hot_labels`` encodes labels with ``K`` = number of distinct labels
  (labels are mapped through their sorted order, so labels {1, 2} work, which
  EpyNN rejects);
- ``scale_features`` is one global min-max scaling to [0, 1];
- ``padding`` zero-pads the two spatial axes of NHWC arrays on both sides.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "DataSet",
    "split_dataset",
    "index_elements",
    "one_hot_labels",
    "one_hot_sequences",
    "decode_sequences",
    "scale_features",
    "padding",
    "batches",
    "embed",
]


class DataSet(NamedTuple):
    """A named pair of arrays."""

    X: np.ndarray
    Y: np.ndarray


def _relative(relative_size: Sequence[float]) -> tuple[float, float, float]:
    rs = tuple(float(r) for r in relative_size)
    if len(rs) == 2:
        rs = (*rs, 0.0)
    if len(rs) != 3 or any(not np.isfinite(r) or r < 0 for r in rs) or sum(rs) <= 0:
        raise ValueError(
            f"relative_size must be 2 or 3 non-negative numbers with a positive sum, "
            f"got {tuple(relative_size)!r}"
        )
    return rs


def split_dataset(X, Y, relative_size: Sequence[float] = (2, 1, 0)) -> dict[str, DataSet]:
    """Split (X, Y) in order into ``dtrain``, ``dval``, ``dtest`` by relative sizes.

    Empty splits are left out of the result. Raises ``ValueError`` when X and Y
    differ in length, the data is empty, or the training split rounds to zero.
    """
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError("split_dataset: X has no samples")
    if Y.shape[:1] != X.shape[:1]:
        raise ValueError(f"split_dataset: X has {X.shape[0]} samples but Y has "
                         f"{Y.shape[0] if Y.ndim else 0}")
    r = _relative(relative_size)
    n = X.shape[0]
    n_train = int(round(r[0] / sum(r) * n))
    n_val = min(int(round(r[1] / sum(r) * n)), n - n_train)
    if n_train < 1:
        raise ValueError(f"split_dataset: relative_size {tuple(relative_size)} gives no training "
                         f"sample out of {n}")
    bounds = {"dtrain": (0, n_train), "dval": (n_train, n_train + n_val),
              "dtest": (n_train + n_val, n)}
    return {k: DataSet(X[a:b], Y[a:b]) for k, (a, b) in bounds.items() if b > a}


def index_elements(X) -> tuple[dict, dict, int]:
    """Vocabulary of the sorted unique elements: ``(element_to_idx, idx_to_element, size)``."""
    flat = np.asarray(X, dtype=object).reshape(-1) if not isinstance(X, np.ndarray) else X.ravel()
    try:
        elements = sorted(set(flat.tolist()))
    except TypeError as err:
        raise TypeError(f"index_elements: elements cannot be sorted ({err})") from None
    e2i = {e: i for i, e in enumerate(elements)}
    i2e = dict(enumerate(elements))
    return e2i, i2e, len(elements)


def one_hot_sequences(X, element_to_idx: dict | None = None) -> tuple[np.ndarray, dict]:
    """One-hot encode sequences (m, steps) of hashable elements to (m, steps, vocab).

    Returns the encoded array (float32) and the vocabulary used. With a given
    vocabulary, an unknown element raises a ``ValueError`` naming it.
    """
    arr = np.asarray(X, dtype=object) if not isinstance(X, np.ndarray) else X
    if arr.ndim != 2:
        raise ValueError(f"one_hot_sequences: expected (m, steps) sequences, got shape {arr.shape}")
    if element_to_idx is None:
        element_to_idx = index_elements(arr)[0]
    try:
        idx = np.vectorize(element_to_idx.__getitem__, otypes=[np.int64])(arr)
    except KeyError as err:
        raise ValueError(f"one_hot_sequences: element {err.args[0]!r} is not in the "
                         "vocabulary") from None
    return np.eye(len(element_to_idx), dtype=np.float32)[idx], element_to_idx


def decode_sequences(X_encoded, idx_to_element: dict) -> list[list[Hashable]]:
    """Inverse of :func:`one_hot_sequences`: argmax over the last axis, then look up."""
    idx = np.argmax(np.asarray(X_encoded), axis=-1)
    return [[idx_to_element[int(i)] for i in row] for row in idx]


def one_hot_labels(y, classes: Sequence | None = None) -> tuple[np.ndarray, list]:
    """One-hot encode labels (m,) to (m, K) with K the number of distinct labels.

    Returns the encoded labels (float32) and the sorted class list; with
    ``classes`` given, a label outside it raises ``ValueError``.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"one_hot_labels: expected labels of shape (m,), got {y.shape}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("one_hot_labels: labels contain NaN or inf")
    classes = sorted(set(y.tolist())) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in set(y.tolist()) if c not in index]
    if unknown:
        raise ValueError(f"one_hot_labels: labels {sorted(unknown)!r} not in classes {classes!r}")
    return np.eye(len(classes), dtype=np.float32)[[index[c] for c in y.tolist()]], classes


def scale_features(X, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Global min-max scaling to [0, 1]: (X - min) / (max - min).

    ``bounds=(min, max)`` reuses the training set's bounds (EpyNN rescales new
    data with its own bounds). A constant array maps to zeros.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.size and not np.all(np.isfinite(X)):
        raise ValueError("scale_features: X contains NaN or inf")
    lo, hi = (float(X.min()), float(X.max())) if bounds is None else bounds
    span = hi - lo
    return (X - lo) / span if span > 0 else np.zeros_like(X)


def padding(X, pad: int, forward: bool = True) -> np.ndarray:
    """Zero-pad (``forward``) or strip ``pad`` rows/cols on both sides of axes 1 and 2 (NHWC)."""
    X = np.asarray(X)
    if X.ndim < 3:
        raise ValueError(f"padding: expected (m, h, w, ...) data, got shape {X.shape}")
    if pad < 0:
        raise ValueError(f"padding: pad must be >= 0, got {pad}")
    if forward:
        width = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (X.ndim - 3)
        return np.pad(X, width)
    return X[:, pad: X.shape[1] - pad, pad: X.shape[2] - pad] if pad else X


def batches(X, Y, batch_size: int | None, rng: np.random.Generator | None = None
            ) -> list[DataSet]:
    """EpyNN's mini-batches: shuffle, then ``N // batch_size`` batches (at least 1).

    The remainder is dropped. ``batch_size=None`` is one batch of everything.
    (``fit`` does the same on the device; this host version is for inspection.)
    """
    X, Y = np.asarray(X), np.asarray(Y)
    n = X.shape[0]
    bs = n if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size!r}")
    order = (rng or np.random.default_rng()).permutation(n)
    nb = max(n // bs, 1)
    return [DataSet(X[order[i * bs:(i + 1) * bs]], Y[order[i * bs:(i + 1) * bs]])
            for i in range(nb)]


def embed(X, Y, *, relative_size: Sequence[float] = (2, 1, 0), X_encode: bool = False,
          Y_encode: bool = False, X_scale: bool = False) -> tuple[dict[str, DataSet], dict]:
    """EpyNN's Embedding pipeline: scale, encode, split.

    Returns the splits and an ``info`` dict (``element_to_idx``,
    ``idx_to_element``, ``classes``, ``scale_bounds``) for encoding new data.
    """
    info: dict = {}
    X = np.asarray(X) if not isinstance(X, list) else X
    if X_scale:
        arr = np.asarray(X, dtype=np.float64)
        info["scale_bounds"] = (float(arr.min()), float(arr.max()))
        X = scale_features(arr, info["scale_bounds"])
    if X_encode:
        X, e2i = one_hot_sequences(X)
        info["element_to_idx"] = e2i
        info["idx_to_element"] = {i: e for e, i in e2i.items()}
    Y = np.asarray(Y)
    if Y_encode:
        Y, classes = one_hot_labels(Y)
        info["classes"] = classes
    elif Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    return split_dataset(np.asarray(X, dtype=np.float32), np.asarray(Y, dtype=np.float32),
                         relative_size), info
