"""``Embedding(X_data=None, Y_data=None, relative_size=(2, 1, 0), batch_size=None,
X_encode=False, Y_encode=False, X_scale=False)``: EpyNN's input and data layer.

The data pipeline, in EpyNN's order:

1. ``X_scale``: one global min-max scaling of X to [0, 1];
2. ``X_encode``: vocabulary of the sorted unique elements (``e2i``, ``i2e``,
   ``d['e']``), X one-hot encoded to (N, steps, vocab);
3. ``Y_encode``: labels 0..K-1, (N,) or a column (N, 1), one-hot encoded to (N, K);
4. split **in the given order** by ``relative_size``: train = round(r0/sum*N),
   val = round(r1/sum*N), test = the rest; ``dtrain``, ``dval``, ``dtest``
   are :class:`dataSet` objects and ``dsets`` the non-empty ones.

Batches (``training_batches``): the list of training samples is shuffled in
place by the layer's ``np_rng`` (set by the model) at ``initialize`` and at
every epoch, then cut into ``N // batch_size`` batches, the remainder dropped.
The facade shuffles a list of sample indices with the same generator, so the
batch order is EpyNN's.

Inputs are checked when the layer is made, each bad one with one line naming
the argument: ``batch_size`` is ``None`` (one batch of every training sample) or
an int >= 1 (EpyNN silently trains one batch for 0 and misbehaves below);
``relative_size`` holds up to three non-negative numbers with a positive sum;
``X_data`` and ``Y_data`` are non-empty sequences of samples of one shape, real
(complex data would lose its imaginary part), finite, and ``X_data`` holds
numbers unless ``X_encode`` one-hot encodes its elements.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat.commons.io import encode_dataset, index_elements_auto, scale_features
from epynn_jax.compat.commons.models import dataSet

__all__ = ["Embedding"]


def _check_batch_size(batch_size) -> None:
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError("Embedding: batch_size must be an int >= 1, or None for one batch of "
                        f"every training sample; got {batch_size!r}")
    if batch_size < 1:
        raise ValueError("Embedding: batch_size must be >= 1, or None for one batch of every "
                         f"training sample; got {batch_size!r}")


def _check_relative_size(relative_size) -> tuple:
    try:
        rs = tuple(relative_size)
    except TypeError:
        raise TypeError("Embedding: relative_size must be a tuple (train, val, test) of "
                        f"relative sizes, got {relative_size!r}") from None
    if not 1 <= len(rs) <= 3:
        raise ValueError("Embedding: relative_size must hold 1 to 3 relative sizes "
                         f"(train, val, test), got {relative_size!r}")
    for r in rs:
        if isinstance(r, bool) or not isinstance(r, numbers.Real):
            raise TypeError("Embedding: relative_size must hold numbers (train, val, test), "
                            f"got {relative_size!r}")
        if not (math.isfinite(r) and r >= 0):
            raise ValueError("Embedding: relative_size must hold finite numbers >= 0, "
                             f"got {relative_size!r}")
    if sum(rs) <= 0:
        raise ValueError(f"Embedding: relative_size must have a positive sum, got {rs}")
    return rs + (0,) * (3 - len(rs))


def _samples(data, name: str) -> np.ndarray:
    """``data`` as an array of samples: one shape, at least one sample, real values."""
    try:
        arr = np.array(data)
    except ValueError:  # NumPy's "inhomogeneous shape" for ragged nested lists
        raise ValueError(f"Embedding: {name} samples must all have the same shape "
                         "(got nested sequences of different lengths)") from None
    if arr.ndim == 0:
        raise TypeError(f"Embedding: {name} must be a sequence of samples, got "
                        f"{type(data).__name__} {data!r:.40}")
    if len(arr) == 0:
        raise ValueError(f"Embedding: {name} is empty (0 samples)")
    if np.iscomplexobj(arr):
        raise TypeError(f"Embedding: {name} is complex ({arr.dtype}); the layers compute with "
                        "real numbers: pass its real part, modulus or both as features")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = ~np.isfinite(arr.reshape(len(arr), -1))
        first = int(np.argmax(bad.any(axis=1)))
        raise ValueError(f"Embedding: {name} holds NaN or inf ({int(bad.sum())} values, "
                         f"the first in sample {first})")


def _check_features(X: np.ndarray, X_encode: bool) -> None:
    if X.size == 0:
        raise ValueError(f"Embedding: X_data samples have no features (shape {X.shape})")
    if X_encode:
        return  # any hashable elements: they are one-hot encoded
    if X.dtype.kind not in "biuf":
        raise TypeError(f"Embedding: X_data holds {X.dtype} values, not numbers; pass "
                        "X_encode=True to one-hot encode its elements")
    _check_finite(X, "X_data")


def _one_hot_labels(Y: np.ndarray) -> np.ndarray:
    """(N, K) one-hot rows of the labels 0..K-1 given as (N,) or as a column (N, 1)."""
    if Y.ndim == 2 and Y.shape[1] == 1:
        Y = Y[:, 0]
    if Y.ndim != 1:
        raise ValueError(f"Embedding: Y_encode needs one label per sample, shape (N,) or "
                         f"(N, 1), got Y_data of shape {Y.shape}")
    if Y.dtype.kind not in "biuf":
        raise ValueError(f"Embedding: Y_encode needs integer labels 0..K-1, got {Y.dtype} "
                         f"labels {np.unique(Y).tolist()[:10]}")
    labels = np.unique(Y)
    k = len(labels)
    if not (np.issubdtype(Y.dtype, np.integer) or np.issubdtype(Y.dtype, np.bool_)
            or np.all(np.mod(labels, 1) == 0)) or labels.min() < 0 or labels.max() >= k:
        raise ValueError(
            f"Embedding: Y_encode needs integer labels 0..K-1 (K = {k} distinct labels), "
            f"got labels {labels.tolist()[:10]}")
    return np.eye(k)[Y.astype(int)]


class Embedding(BuiltinLayer):
    """The input layer: holds the data sets and passes X through (A = X)."""

    _functional = ("epynn_jax.layers.embedding", "Embedding")

    def __init__(self, X_data=None, Y_data=None, relative_size=(2, 1, 0), batch_size=None,
                 X_encode: bool = False, Y_encode: bool = False, X_scale: bool = False) -> None:
        super().__init__(None)
        _check_batch_size(batch_size)
        rs = _check_relative_size(relative_size)
        self.se_dataset = {
            "dtrain_relative": rs[0], "dval_relative": rs[1], "dtest_relative": rs[2],
            "batch_size": batch_size, "X_scale": X_scale, "X_encode": X_encode,
            "Y_encode": Y_encode,
        }
        self.trainable = False
        self._order = np.zeros(0, np.int64)
        self._batch_idx = None
        self.batch_dtrain = []
        if X_data is None:
            if Y_data is not None:
                raise ValueError("Embedding: Y_data given without X_data")
            self.dtrain = dataSet([], name="dtrain")
            self.dval = dataSet([], name="dval")
            self.dtest = dataSet([], name="dtest")
            self.dsets = []
            return
        if Y_data is None:
            raise ValueError("Embedding: Y_data (labels) is required with X_data; use "
                             "model.predict for unlabeled data")
        X = _samples(X_data, "X_data")
        _check_features(X, X_encode and not X_scale)
        Y = _samples(Y_data, "Y_data")
        if not Y_encode and Y.dtype.kind not in "biuf":
            raise TypeError(f"Embedding: Y_data holds {Y.dtype} values, not numbers; pass "
                            "Y_encode=True for integer class labels")
        _check_finite(Y, "Y_data")
        if len(X) != len(Y):
            raise ValueError(f"Embedding: X_data has {len(X)} samples but Y_data has {len(Y)}")
        if X_scale:
            X = np.array(scale_features(np.asarray(X, dtype=np.float64)))
        if X_encode:
            self.e2i, self.i2e, self.d["e"] = index_elements_auto(X)
            X = np.array(encode_dataset(X, self.e2i, self.d["e"]))
        if Y_encode:
            Y = _one_hot_labels(Y)
        self._split(X, Y, rs)

    def _functional_kwargs(self) -> dict:
        return {"vocabulary_size": self.d.get("e")}

    def _split(self, X, Y, rs) -> None:
        total = sum(rs)
        n = len(X)
        n_train = round(rs[0] / total * n)
        n_val = round(rs[1] / total * n)
        cuts = {"dtrain": (0, n_train), "dval": (n_train, n_train + n_val),
                "dtest": (n_train + n_val, n)}
        for name, (a, b) in cuts.items():
            setattr(self, name, dataSet(X[a:b], Y[a:b], name=name))
        self.dsets = [d for d in (self.dtrain, self.dval, self.dtest) if d.active]
        if not self.dtrain.active:
            raise ValueError(f"Embedding: relative_size {rs} leaves no training sample "
                             f"out of {n}")

    # -- batches ------------------------------------------------------------------------

    def batch_indices(self, init: bool = False) -> np.ndarray:
        """Shuffle the training order like EpyNN and return (n_batches, batch_size) indices."""
        if init or not len(self._order):
            # an index array: NumPy shuffles it with the same draws (and so into the
            # same order) as EpyNN's list of samples, several times faster
            self._order = np.arange(len(self.dtrain.ids))
        rng = getattr(self, "np_rng", None)
        (rng if rng is not None else np.random).shuffle(self._order)
        n = len(self._order)
        bs = self.se_dataset["batch_size"] or n
        n_batch = max(n // bs, 1)
        bs = min(bs, n)
        idx = self._order[: n_batch * bs].reshape(n_batch, bs).copy()
        self._batch_idx, self._batches = idx, None  # batch_dtrain: made when first read
        return idx

    def _shuffle_state(self):
        """What the next :meth:`batch_indices` draws from (the generator's state, the
        order it shuffles in place, the batches of the last draw), for ``train`` to go
        back to when an epoch it drew for was not trained; ``None`` for a generator it
        cannot read (``np_rng`` set to another object)."""
        rng = getattr(self, "np_rng", None)
        if rng is None:
            state = np.random.get_state()
        elif isinstance(rng, np.random.Generator):
            state = rng.bit_generator.state
        elif isinstance(rng, np.random.RandomState):
            state = rng.get_state()
        else:
            return None
        return rng, state, self._order.copy(), self._batch_idx

    def _set_shuffle_state(self, saved) -> None:
        """Back to a :meth:`_shuffle_state` (nothing when the generator was replaced since)."""
        if saved is None or getattr(self, "np_rng", None) is not saved[0]:
            return
        rng, state, order, batch_idx = saved
        if rng is None:
            np.random.set_state(state)
        elif isinstance(rng, np.random.Generator):
            rng.bit_generator.state = state
        else:
            rng.set_state(state)
        self._order, self._batch_idx, self._batches = order, batch_idx, None

    @property
    def batch_dtrain(self) -> list:
        """The training batches of the last shuffle (a list of dataSets named '0', '1',
        ...), as EpyNN's: after ``train``, those of its last epoch. Made when first read
        (``train`` shuffles indices and never needs them)."""
        if self._batches is None:
            idx = self._batch_idx
            self._batches = [] if idx is None else [
                dataSet(self.dtrain.X[b], self.dtrain.Y[b], name=str(i))
                for i, b in enumerate(idx)]
        return self._batches

    @batch_dtrain.setter
    def batch_dtrain(self, value: list) -> None:
        self._batches = value

    @property
    def dtrain_zip(self) -> list:
        """The (x, y) training pairs in the current shuffled order."""
        return [(self.dtrain.X[i], self.dtrain.Y[i]) for i in self._order]

    def training_batches(self, init: bool = False) -> None:
        """Shuffle and split the training set into ``batch_dtrain`` (a list of dataSets)."""
        self.batch_indices(init)
