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

import numbers
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


def _int(value, name: str, where: str, minimum: int = 0) -> int:
    """An integer argument (a Python or NumPy int, not a bool) that is >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return int(value)


def _samples(X, Y, where: str) -> tuple[np.ndarray, np.ndarray]:
    """X and Y as arrays with the same number (>= 1) of samples on axis 0."""
    try:
        X, Y = np.asarray(X), np.asarray(Y)
    except ValueError as err:
        raise ValueError(f"{where}: X and Y must be rectangular arrays ({err})") from None
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"{where}: X has no samples (shape {X.shape})")
    if Y.shape[:1] != X.shape[:1]:
        raise ValueError(f"{where}: X has {X.shape[0]} samples but Y has "
                         f"{Y.shape[0] if Y.ndim else 0}")
    return X, Y


def _relative(relative_size: Sequence[float], where: str = "split_dataset"
              ) -> tuple[float, float, float]:
    ok = isinstance(relative_size, (tuple, list, np.ndarray)) and all(
        isinstance(r, numbers.Real) and not isinstance(r, bool) for r in relative_size)
    rs = tuple(float(r) for r in relative_size) if ok else ()
    if len(rs) == 2:
        rs = (*rs, 0.0)
    if len(rs) != 3 or any(not np.isfinite(r) or r < 0 for r in rs) or sum(rs) <= 0:
        raise ValueError(
            f"{where}: relative_size must be 2 or 3 non-negative numbers with a positive sum, "
            f"got {relative_size!r}"
        )
    return rs


def split_dataset(X, Y, relative_size: Sequence[float] = (2, 1, 0)) -> dict[str, DataSet]:
    """Split (X, Y) in order into ``dtrain``, ``dval``, ``dtest`` by relative sizes.

    Empty splits are left out of the result. Raises ``ValueError`` when X and Y
    differ in length, the data is empty, or the training split rounds to zero.
    """
    X, Y = _samples(X, Y, "split_dataset")
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


def _sorted_unique(flat, where: str) -> list:
    try:
        return sorted(set(flat))
    except TypeError as err:
        raise TypeError(f"{where}: elements must be hashable and of one sortable kind "
                        f"({err})") from None


def index_elements(X) -> tuple[dict, dict, int]:
    """Vocabulary of the sorted unique elements: ``(element_to_idx, idx_to_element, size)``."""
    flat = np.asarray(X, dtype=object).reshape(-1) if not isinstance(X, np.ndarray) else X.ravel()
    elements = _sorted_unique(flat.tolist(), "index_elements")
    e2i = {e: i for i, e in enumerate(elements)}
    i2e = dict(enumerate(elements))
    return e2i, i2e, len(elements)


def _check_vocabulary(element_to_idx, where: str) -> dict:
    if not isinstance(element_to_idx, dict) or not element_to_idx:
        raise TypeError(f"{where}: element_to_idx must be a non-empty dict, got "
                        f"{element_to_idx!r}")
    if sorted(element_to_idx.values()) != list(range(len(element_to_idx))):
        raise ValueError(f"{where}: element_to_idx must map elements to 0..{len(element_to_idx)-1}")
    return element_to_idx


def one_hot_sequences(X, element_to_idx: dict | None = None) -> tuple[np.ndarray, dict]:
    """One-hot encode sequences (m, steps) of hashable elements to (m, steps, vocab).

    Returns the encoded array (float32) and the vocabulary used. With a given
    vocabulary, an unknown element raises a ``ValueError`` naming it.
    """
    where = "one_hot_sequences"
    try:
        arr = np.asarray(X, dtype=object) if not isinstance(X, np.ndarray) else X
    except ValueError:
        arr = np.empty(0, dtype=object)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{where}: expected (m, steps) sequences of equal length with m, steps "
                         f">= 1, got shape {np.shape(arr)}")
    if element_to_idx is None:
        element_to_idx = {e: i for i, e in enumerate(_sorted_unique(arr.ravel().tolist(), where))}
    _check_vocabulary(element_to_idx, where)
    try:
        idx = np.vectorize(element_to_idx.__getitem__, otypes=[np.int64])(arr)
    except KeyError as err:
        raise ValueError(f"{where}: element {err.args[0]!r} is not in the "
                         "vocabulary") from None
    except TypeError as err:
        raise TypeError(f"{where}: elements must be hashable ({err})") from None
    return np.eye(len(element_to_idx), dtype=np.float32)[idx], element_to_idx


def decode_sequences(X_encoded, idx_to_element: dict) -> list[list[Hashable]]:
    """Inverse of :func:`one_hot_sequences`: argmax over the last axis, then look up."""
    X_encoded = np.asarray(X_encoded)
    if X_encoded.ndim != 3 or X_encoded.shape[-1] == 0:
        raise ValueError(f"decode_sequences: expected (m, steps, vocab) with vocab >= 1, got "
                         f"shape {X_encoded.shape}")
    idx = np.argmax(X_encoded, axis=-1)
    try:
        return [[idx_to_element[int(i)] for i in row] for row in idx]
    except KeyError as err:
        raise ValueError(f"decode_sequences: index {err.args[0]} is not in idx_to_element"
                         ) from None


def one_hot_labels(y, classes: Sequence | None = None) -> tuple[np.ndarray, list]:
    """One-hot encode labels (m,) to (m, K) with K the number of distinct labels.

    Returns the encoded labels (float32) and the sorted class list; with
    ``classes`` given, a label outside it raises ``ValueError``.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"one_hot_labels: expected labels of shape (m,) with m >= 1, "
                         f"got {y.shape}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("one_hot_labels: labels contain NaN or inf")
    labels = y.tolist()
    if classes is None:
        classes = _sorted_unique(labels, "one_hot_labels")
    else:
        classes = list(classes)
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"one_hot_labels: classes must be distinct and non-empty, "
                             f"got {classes!r}")
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in set(labels) if c not in index]
    if unknown:
        raise ValueError(f"one_hot_labels: labels {unknown!r} not in classes {classes!r}")
    return np.eye(len(classes), dtype=np.float32)[[index[c] for c in labels]], classes


def _bounds(bounds, where: str) -> tuple[float, float]:
    ok = isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(
        isinstance(b, numbers.Real) and not isinstance(b, bool) and np.isfinite(b)
        for b in bounds)
    if not ok or bounds[0] > bounds[1]:
        raise ValueError(f"{where}: bounds must be (min, max) finite numbers with min <= max, "
                         f"got {bounds!r}")
    return float(bounds[0]), float(bounds[1])


def scale_features(X, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Global min-max scaling to [0, 1]: (X - min) / (max - min).

    ``bounds=(min, max)`` reuses the training set's bounds (EpyNN rescales new
    data with its own bounds). A constant array maps to zeros.
    """
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"scale_features: X must be numeric ({err})") from None
    if X.size == 0:
        raise ValueError(f"scale_features: X is empty (shape {X.shape})")
    if not np.all(np.isfinite(X)):
        raise ValueError("scale_features: X contains NaN or inf")
    lo, hi = (float(X.min()), float(X.max())) if bounds is None else _bounds(bounds,
                                                                              "scale_features")
    span = hi - lo
    with np.errstate(over="ignore"):
        out = (X - lo) / span if span > 0 else np.zeros_like(X)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"scale_features: scaling by bounds ({lo}, {hi}) overflows")
    return out


def padding(X, pad: int, forward: bool = True) -> np.ndarray:
    """Zero-pad (``forward``) or strip ``pad`` rows/cols on both sides of axes 1 and 2 (NHWC)."""
    X = np.asarray(X)
    if X.ndim < 3 or min(X.shape[1:3]) < 1:
        raise ValueError(f"padding: expected (m, h, w, ...) data with h, w >= 1, got shape "
                         f"{X.shape}")
    pad = _int(pad, "pad", "padding")
    if forward:
        width = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (X.ndim - 3)
        return np.pad(X, width)
    if min(X.shape[1:3]) <= 2 * pad:
        raise ValueError(f"padding: cannot strip {pad} on each side of (h, w) = {X.shape[1:3]}")
    return X[:, pad: X.shape[1] - pad, pad: X.shape[2] - pad] if pad else X


def batches(X, Y, batch_size: int | None, rng: np.random.Generator | None = None
            ) -> list[DataSet]:
    """EpyNN's mini-batches: shuffle, then ``N // batch_size`` batches (at least 1).

    The remainder is dropped. ``batch_size=None`` (or one larger than N) is one
    batch of everything. (``fit`` does the same on the device; this host
    version is for inspection.)
    """
    X, Y = _samples(X, Y, "batches")
    n = X.shape[0]
    bs = n if batch_size is None else min(_int(batch_size, "batch_size", "batches", 1), n)
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
    n = len(X) if isinstance(X, list) else (np.shape(X)[0] if np.ndim(X) else 0)
    if n == 0 or np.ndim(Y) == 0 or np.shape(Y)[0] != n:
        raise ValueError(f"embed: X and Y need the same number (>= 1) of samples, got "
                         f"{n} and {np.shape(Y)[0] if np.ndim(Y) else 0}")
    _relative(relative_size, "embed")
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
