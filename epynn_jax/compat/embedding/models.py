"""``Embedding(X_data=None, Y_data=None, relative_size=(2, 1, 0), batch_size=None,
X_encode=False, Y_encode=False, X_scale=False)``: EpyNN's input and data layer.

The data pipeline, in EpyNN's order:

1. ``X_scale``: one global min-max scaling of X to [0, 1];
2. ``X_encode``: vocabulary of the sorted unique elements (``e2i``, ``i2e``,
   ``d['e']``), X one-hot encoded to (N, steps, vocab);
3. ``Y_encode``: labels 0..K-1 one-hot encoded to (N, K);
4. split **in the given order** by ``relative_size``: train = round(r0/sum*N),
   val = round(r1/sum*N), test = the rest; ``dtrain``, ``dval``, ``dtest``
   are :class:`dataSet` objects and ``dsets`` the non-empty ones.

Batches (``training_batches``): the list of training samples is shuffled in
place by the layer's ``np_rng`` (set by the model) at ``initialize`` and at
every epoch, then cut into ``N // batch_size`` batches, the remainder dropped.
The facade shuffles a list of sample indices with the same generator, so the
batch order is EpyNN's.
"""

from __future__ import annotations

import numpy as np

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat.commons.io import encode_dataset, index_elements_auto, scale_features
from epynn_jax.compat.commons.models import dataSet

__all__ = ["Embedding"]


def _one_hot_labels(Y: np.ndarray) -> np.ndarray:
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
        rs = tuple(relative_size) + (0,) * (3 - len(tuple(relative_size)))
        self.se_dataset = {
            "dtrain_relative": rs[0], "dval_relative": rs[1], "dtest_relative": rs[2],
            "batch_size": batch_size, "X_scale": X_scale, "X_encode": X_encode,
            "Y_encode": Y_encode,
        }
        self.trainable = False
        self._order = np.zeros(0, np.int64)
        self.batch_dtrain: list[dataSet] = []
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
        if X_scale:
            X_data = scale_features(np.asarray(X_data, dtype=np.float64))
        X = np.array(X_data)
        Y = np.array(Y_data)
        if len(X) != len(Y):
            raise ValueError(f"Embedding: X_data has {len(X)} samples but Y_data has {len(Y)}")
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
        if total <= 0:
            raise ValueError(f"Embedding: relative_size must have a positive sum, got {rs}")
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
        return self._order[: n_batch * bs].reshape(n_batch, bs).copy()

    @property
    def dtrain_zip(self) -> list:
        """The (x, y) training pairs in the current shuffled order."""
        return [(self.dtrain.X[i], self.dtrain.Y[i]) for i in self._order]

    def training_batches(self, init: bool = False) -> None:
        """Shuffle and split the training set into ``batch_dtrain`` (a list of dataSets)."""
        idx = self.batch_indices(init)
        self.batch_dtrain = [dataSet(self.dtrain.X[b], self.dtrain.Y[b], name=str(i))
                             for i, b in enumerate(idx)]
