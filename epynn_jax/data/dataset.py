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
- numeric inputs (``embed`` without encoding, ``scale_features``) must be
  real and finite: NaN, inf, ``None``, complex numbers, strings and ragged
  rows are refused with an error naming the function and the argument;
- ``padding`` zero-pads the two spatial axes of NHWC arrays on both sides.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
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


def _array(X, name: str, where: str) -> np.ndarray:
    """``np.asarray(X)``; ragged rows give a ``ValueError`` naming ``where`` and ``name``."""
    try:
        return np.asarray(X)
    except ValueError as err:
        raise ValueError(f"{where}: {name} must be a rectangular array ({err})") from None


def _holds_numbers(arr: np.ndarray, kinds: str, kind: type) -> bool:
    """Whether ``arr``'s dtype is one of ``kinds``, or it is an object array of ``kind``s."""
    if arr.dtype.kind == "O":
        return all(isinstance(v, kind) for v in arr.ravel().tolist())
    return arr.dtype.kind in kinds


def _flag(value, name: str, where: str) -> bool:
    """A bool argument: a Python or NumPy bool (``"no"``, ``1`` or ``None`` are refused,
    where a truth test would read ``"no"`` as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be True or False, got {value!r}")
    return bool(value)


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


def _numeric(X, name: str, where: str, hint: str = "") -> np.ndarray:
    """``X`` as a float64 array of real, finite numbers, or an error naming ``where`` and ``name``.

    Refused: ragged rows, ``None`` elements, NaN and inf (``ValueError``);
    ``X=None``, complex numbers, strings and other non-numbers (``TypeError``,
    with ``hint`` appended where it helps).
    """
    try:
        arr = np.asarray(X)
    except ValueError as err:
        raise ValueError(f"{where}: {name} must be a rectangular array ({err})") from None
    if arr.dtype.kind == "O":
        if X is None:
            raise TypeError(f"{where}: {name} must be numeric, got None")
        items = arr.ravel().tolist()
        if any(v is None for v in items):
            raise ValueError(f"{where}: {name} contains None")
        bad = next((v for v in items if not isinstance(v, (numbers.Real, bool, np.bool_))), None)
        if bad is not None:
            kind = "complex" if isinstance(bad, numbers.Complex) else "non-numeric"
            raise TypeError(f"{where}: {name} holds a {kind} value {bad!r}; it must be real "
                            f"numbers{hint}")
        arr = arr.astype(np.float64)
    if arr.dtype.kind == "c":
        raise TypeError(f"{where}: {name} is complex ({arr.dtype}); pass real numbers (the "
                        "imaginary part would be lost)")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where}: {name} must be numeric, got dtype {arr.dtype}{hint}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: {name} contains NaN or inf")
    return arr


def _relative(relative_size: Sequence[float], where: str = "split_dataset"
              ) -> tuple[float, float, float]:
    ok = isinstance(relative_size, (tuple, list, np.ndarray)) and all(
        isinstance(r, numbers.Real) and not isinstance(r, bool) for r in relative_size)
    try:
        rs = tuple(float(r) for r in relative_size) if ok else ()
    except OverflowError:  # an int beyond float64's range
        rs = (math.inf,)
    if len(rs) == 2:
        rs = (*rs, 0.0)
    if len(rs) != 3 or any(not np.isfinite(r) or r < 0 for r in rs) or sum(rs) <= 0:
        raise ValueError(
            f"{where}: relative_size must be 2 or 3 finite, non-negative numbers with a "
            f"positive sum, got {relative_size!r}"
        )
    if not math.isfinite(sum(rs)):
        raise ValueError(f"{where}: relative_size {relative_size!r} sums beyond float64's range "
                         "(about 1.8e308); use smaller relative sizes")
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


def _is_nan(value) -> bool:
    return isinstance(value, numbers.Real) and math.isnan(value)


def _sorted_unique(flat, where: str) -> list:
    """The sorted distinct elements; NaN is refused (it is unequal to itself: one entry each)."""
    if any(_is_nan(e) for e in flat):
        raise ValueError(f"{where}: elements contain NaN")
    try:
        return sorted(set(flat))
    except TypeError as err:
        raise TypeError(f"{where}: elements must be hashable and of one sortable kind "
                        f"({err})") from None


def _one_hot(idx: np.ndarray, size: int) -> np.ndarray:
    """float32 one-hot of the indices ``idx`` (any shape) over ``size`` columns: shape
    ``idx.shape + (size,)``. The ones are written into zeros, so memory is the result's
    (``np.eye(size)[idx]`` would first build a size x size matrix)."""
    out = np.zeros((idx.size, size), dtype=np.float32)
    out[np.arange(idx.size), idx.reshape(-1)] = 1.0
    return out.reshape(*idx.shape, size)


def index_elements(X) -> tuple[dict, dict, int]:
    """Vocabulary of the sorted unique elements: ``(element_to_idx, idx_to_element, size)``.

    Raises ``ValueError`` for empty ``X`` or NaN elements, ``TypeError`` for
    unhashable or unsortable ones.
    """
    arr = X if isinstance(X, np.ndarray) else np.asarray(X, dtype=object)
    if X is None or arr.ndim == 0:
        raise TypeError(f"index_elements: X must be an array or a (nested) sequence of "
                        f"elements, got {X!r:.80}")
    flat = arr.reshape(-1)
    if flat.size == 0:
        raise ValueError(f"index_elements: X is empty (shape {np.shape(flat)})")
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
    return _one_hot(idx, len(element_to_idx)), element_to_idx


def decode_sequences(X_encoded, idx_to_element: dict) -> list[list[Hashable]]:
    """Inverse of :func:`one_hot_sequences`: argmax over the last axis, then look up."""
    where = "decode_sequences"
    if not isinstance(idx_to_element, (Mapping, list, tuple)):
        raise TypeError(f"{where}: idx_to_element must be a dict from indices to elements (or "
                        f"a list of the elements), got {idx_to_element!r:.80}")
    X_encoded = _array(X_encoded, "X_encoded", where)
    if X_encoded.ndim != 3 or X_encoded.shape[-1] == 0:
        raise ValueError(f"{where}: expected (m, steps, vocab) with vocab >= 1, got "
                         f"shape {X_encoded.shape}")
    if not _holds_numbers(X_encoded, "biuf", numbers.Real):
        raise TypeError(f"{where}: X_encoded must be real numbers, got dtype {X_encoded.dtype}")
    idx = np.argmax(X_encoded, axis=-1)
    try:
        return [[idx_to_element[int(i)] for i in row] for row in idx]
    except (KeyError, IndexError) as err:
        missing = err.args[0] if isinstance(err, KeyError) else int(idx.max())
        raise ValueError(f"{where}: index {missing} is not in idx_to_element") from None


def one_hot_labels(y, classes: Sequence | None = None) -> tuple[np.ndarray, list]:
    """One-hot encode labels (m,) to (m, K) with K the number of distinct labels.

    Returns the encoded labels (float32) and the sorted class list; with
    ``classes`` given (a list, tuple or 1-D array of distinct hashable
    labels, in the order of the columns), a label outside it raises
    ``ValueError``.
    """
    given = y
    y = np.asarray(y)
    if y.dtype.kind in "US" and not isinstance(given, np.ndarray):
        _one_kind(given, y.dtype.kind)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"one_hot_labels: expected labels of shape (m,) with m >= 1, "
                         f"got {y.shape}")
    labels = y.tolist()
    if (y.dtype.kind == "f" and not np.all(np.isfinite(y))) or (
            y.dtype.kind == "O" and any(map(_not_finite, labels))):
        raise ValueError("one_hot_labels: labels contain NaN or inf")
    if classes is None:
        classes = _sorted_unique(labels, "one_hot_labels")
    else:
        classes = _classes(classes)
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in set(labels) if c not in index]
    if unknown:
        raise ValueError(f"one_hot_labels: labels {unknown!r} not in classes {classes!r}")
    return _one_hot(np.array([index[c] for c in labels], dtype=np.int64), len(classes)), classes


def _one_kind(given, kind: str) -> None:
    """Refuse labels that NumPy turned into strings because strings were mixed with other
    kinds (``[0, "a"]`` would become ``["0", "a"]``), as :func:`index_elements` refuses them."""
    want = str if kind == "U" else bytes
    try:
        items = np.asarray(given, dtype=object).ravel().tolist()
    except ValueError:
        return  # ragged: the shape check reports it
    other = next((v for v in items if not isinstance(v, want)), None)
    if other is not None:
        raise TypeError(f"one_hot_labels: elements must be hashable and of one sortable kind "
                        f"(got {want.__name__} labels mixed with {other!r} of type "
                        f"{type(other).__name__})")


def _not_finite(value) -> bool:
    """True for a NaN or infinite float (Python or NumPy) held in an object array."""
    return (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
            and not math.isfinite(value))


def _classes(classes) -> list:
    """``one_hot_labels``'s ``classes`` as a list of distinct, hashable, non-NaN labels."""
    ok = isinstance(classes, (list, tuple, range)) or (
        isinstance(classes, np.ndarray) and classes.ndim == 1)
    if not ok:
        raise TypeError(f"one_hot_labels: classes must be a list, tuple or 1-D array of "
                        f"labels, got {classes!r}")
    classes = list(classes.tolist() if isinstance(classes, np.ndarray) else classes)
    for c in classes:
        try:
            hash(c)
        except TypeError:
            raise TypeError(f"one_hot_labels: classes must hold hashable labels, got "
                            f"{c!r}") from None
    if not classes or len(set(classes)) != len(classes) or any(map(_is_nan, classes)):
        raise ValueError(f"one_hot_labels: classes must be distinct, non-NaN and non-empty, "
                         f"got {classes!r}")
    return classes


def _bounds(bounds, where: str) -> tuple[float, float]:
    ok = isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(
        isinstance(b, numbers.Real) and not isinstance(b, bool) for b in bounds)
    try:  # (compared as floats: a float32 bound against a huge int overflowed in the cast)
        low, high = (float(b) for b in bounds) if ok else (0.0, 0.0)
    except OverflowError:  # an int beyond the float range
        ok = False
    if not ok or not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"{where}: bounds must be (min, max) finite numbers with min <= max, "
                         f"got {bounds!r}")
    return low, high


def scale_features(X, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Global min-max scaling to [0, 1]: (X - min) / (max - min).

    ``X`` must be real, finite numbers. ``bounds=(min, max)`` reuses the
    training set's bounds (EpyNN rescales new data with its own bounds; values
    outside them land outside [0, 1]). A constant array maps to zeros, and so
    do bounds with min == max (those of a constant training set), but only for
    data equal to that constant: other data cannot be scaled by a zero span
    and is refused with a ``ValueError``.
    """
    X = _numeric(X, "X", "scale_features")
    if X.size == 0:
        raise ValueError(f"scale_features: X is empty (shape {X.shape})")
    lo, hi = (float(X.min()), float(X.max())) if bounds is None else _bounds(bounds,
                                                                              "scale_features")
    if hi == lo:
        if not np.all(X == lo):
            raise ValueError(f"scale_features: bounds ({lo}, {hi}) have no span, which only "
                             f"scales data equal to {lo}; X spans [{X.min()}, {X.max()}]")
        return np.zeros_like(X)
    with np.errstate(over="ignore"):
        out = (X - lo) / (hi - lo)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"scale_features: scaling by bounds ({lo}, {hi}) overflows")
    return out


def padding(X, pad: int, forward: bool = True) -> np.ndarray:
    """Zero-pad (``forward``) or strip ``pad`` rows/cols on both sides of axes 1 and 2 (NHWC)."""
    X = _array(X, "X", "padding")
    if X.ndim < 3 or min(X.shape[1:3]) < 1:
        raise ValueError(f"padding: expected (m, h, w, ...) data with h, w >= 1, got shape "
                         f"{X.shape}")
    if not _holds_numbers(X, "biufc", numbers.Number):
        raise TypeError(f"padding: X must be numeric (it is padded with zeros), got dtype "
                        f"{X.dtype}")
    pad = _int(pad, "pad", "padding")
    if _flag(forward, "forward", "padding"):
        width = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (X.ndim - 3)
        return np.pad(X, width)
    if min(X.shape[1:3]) <= 2 * pad:
        raise ValueError(f"padding: cannot strip {pad} on each side of (h, w) = {X.shape[1:3]}")
    return X[:, pad: X.shape[1] - pad, pad: X.shape[2] - pad] if pad else X


def _generator(rng, where: str) -> np.random.Generator:
    """A NumPy Generator: ``rng`` itself, one seeded with the int ``rng``, or a fresh one."""
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"{where}: rng must be a numpy Generator, an int seed or None, "
                        f"got {rng!r}")
    if rng < 0:
        raise ValueError(f"{where}: the rng seed must be >= 0, got {rng!r}")
    return np.random.default_rng(int(rng))


def batches(X, Y, batch_size: int | None, rng: np.random.Generator | int | None = None
            ) -> list[DataSet]:
    """EpyNN's mini-batches: shuffle, then ``N // batch_size`` batches (at least 1).

    The remainder is dropped. ``batch_size=None`` (or one larger than N) is one
    batch of everything. The shuffle draws from ``rng``: a NumPy
    ``Generator`` (advanced by the call), an int seed >= 0 (the same seed gives
    the same batches, 0 included) or ``None`` (fresh, unseeded randomness).
    (``fit`` does the same on the device; this host version is for inspection.)
    """
    X, Y = _samples(X, Y, "batches")
    n = X.shape[0]
    bs = n if batch_size is None else min(_int(batch_size, "batch_size", "batches", 1), n)
    order = _generator(rng, "batches").permutation(n)
    nb = max(n // bs, 1)
    return [DataSet(X[order[i * bs:(i + 1) * bs]], Y[order[i * bs:(i + 1) * bs]])
            for i in range(nb)]


def _count(A) -> int:
    """Number of samples (length of axis 0); 0 for a scalar."""
    try:
        return len(A)
    except TypeError:
        return 0


def _float32(A: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = np.asarray(A, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"embed: {name} has values beyond float32's range (about 3.4e38)")
    return out


def embed(X, Y, *, relative_size: Sequence[float] = (2, 1, 0), X_encode: bool = False,
          Y_encode: bool = False, X_scale: bool = False) -> tuple[dict[str, DataSet], dict]:
    """EpyNN's Embedding pipeline: scale, encode, split.

    Returns the splits (float32) and an ``info`` dict (``element_to_idx``,
    ``idx_to_element``, ``classes``, ``scale_bounds``) for encoding new data.
    What is not encoded must be real, finite numbers (``X`` also when
    ``X_scale``): NaN, inf, ``None``, complex numbers, strings and ragged rows
    raise an error naming ``X`` or ``Y``.
    """
    where = "embed"
    info: dict = {}
    X_encode = _flag(X_encode, "X_encode", where)
    Y_encode = _flag(Y_encode, "Y_encode", where)
    X_scale = _flag(X_scale, "X_scale", where)
    _relative(relative_size, where)
    if X_scale or not X_encode:
        X = _numeric(X, "X", where, "" if X_encode else
                     "; pass X_encode=True to one-hot encode sequences of symbols")
    if not Y_encode:
        Y = _numeric(Y, "Y", where, "; pass Y_encode=True to one-hot encode labels")
    n, n_y = _count(X), _count(Y)
    if n == 0 or n_y != n:
        raise ValueError(f"embed: X and Y need the same number (>= 1) of samples, got "
                         f"{n} and {n_y}")
    if X_scale:
        info["scale_bounds"] = (float(X.min()), float(X.max()))
        X = scale_features(X, info["scale_bounds"])
    if X_encode:
        X, e2i = one_hot_sequences(X)
        info["element_to_idx"] = e2i
        info["idx_to_element"] = {i: e for e, i in e2i.items()}
    if Y_encode:
        Y, classes = one_hot_labels(Y)
        info["classes"] = classes
    elif Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    return split_dataset(_float32(X, "X"), _float32(Y, "Y"), relative_size), info
