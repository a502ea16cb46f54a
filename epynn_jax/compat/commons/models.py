"""The base ``Layer`` and the ``dataSet`` container, as in EpyNN.

``Layer`` is what custom layers subclass: it carries EpyNN's dicts ``d``
(dimensions), ``fs`` (forward shapes), ``p`` (parameters), ``fc`` (forward
cache), ``bs`` (backward shapes), ``g`` (gradients), ``bc`` (backward cache),
``o`` (other) and ``activation``, plus ``se_hPars``. The model sets
``name``, ``np_rng`` (a ``numpy.random.Generator``), ``o['seed']``, ``lrate``
(one learning rate per epoch) and ``e`` (the current epoch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Layer", "dataSet"]


class Layer:
    """Base class of every facade layer and of user-written NumPy layers."""

    def __init__(self, se_hPars: dict | None = None) -> None:
        self.d: dict[str, Any] = {}
        self.fs: dict[str, tuple] = {}
        self.p: dict[str, np.ndarray] = {}
        self.fc: dict[str, np.ndarray] = {}
        self.bs: dict[str, tuple] = {}
        self.g: dict[str, np.ndarray] = {}
        self.bc: dict[str, np.ndarray] = {}
        self.o: dict[str, Any] = {}
        self.activation: dict[str, str] = {}
        self.se_hPars = se_hPars

    def update_shapes(self, cache: dict, shapes: dict) -> None:
        """Record ``{key: array.shape}`` of ``cache`` into ``shapes``."""
        shapes.update({k: np.shape(v) for k, v in cache.items()})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} layer>"


class dataSet:  # noqa: N801 - EpyNN's name
    """A named set of samples: ``X``, ``Y`` (2-D), ``y`` (classes), ``b`` (counts), ``ids``.

    ``Y`` given 1-D becomes a column (N, 1); 2-D labels (one-hot) are kept and
    ``y`` is their argmax. ``A`` and ``P`` (outputs and decisions) are filled by
    evaluation and prediction; after training they are computed when first read.
    A set with no samples has ``active = False``.
    """

    def __init__(self, X_data, Y_data=None, name: str = "dummy") -> None:
        self._deferred = None
        self.name = name
        self.active = len(X_data) > 0
        if self.active:
            self.X = np.array(X_data)
        if Y_data is not None and self.active and len(Y_data) > 0:
            Y = np.array(Y_data)
            if Y.ndim == 2:
                self.Y, self.y = Y, np.argmax(Y, axis=1)
            else:
                self.Y, self.y = np.expand_dims(Y, 1), Y
            labels, counts = np.unique(self.y, return_counts=True)
            self.b = {label: int(c) for label, c in zip(labels.tolist(), counts)}
        self.ids = np.arange(len(X_data))
        self.A = np.array([])
        self.P = np.array([])

    # -- outputs, computed on first read after training ------------------------------------

    def _defer(self, outputs, encoded: bool) -> None:
        """``A = outputs()`` and ``P`` its decisions (argmax when ``encoded``), when first read."""
        self._deferred = (outputs, encoded)

    def _fill(self) -> None:
        outputs, encoded = self._deferred
        self._deferred = None
        A = np.asarray(outputs())
        self.__dict__["_A"] = A
        self.__dict__["_P"] = np.argmax(A, axis=1) if encoded else np.around(A)

    A = property(lambda self: self._output("_A"), lambda self, v: self._set_output("_A", v),
                 doc="The model's outputs on the samples.")
    P = property(lambda self: self._output("_P"), lambda self, v: self._set_output("_P", v),
                 doc="The decisions (argmax, or rounded outputs).")

    def _output(self, slot: str) -> np.ndarray:
        if self._deferred is not None:
            self._fill()
        return self.__dict__[slot]

    def _set_output(self, slot: str, value) -> None:
        if self._deferred is not None:
            self._fill()  # the other of A and P must not be computed from newer weights later
        self.__dict__[slot] = value

    def __repr__(self) -> str:
        n = len(self.ids)
        return f"<dataSet {self.name!r}: {n} samples>"
