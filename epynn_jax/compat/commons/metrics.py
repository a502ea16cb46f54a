"""Metrics with EpyNN's signature ``f(Y, A)`` (NumPy in, NumPy out).

Decisions: one-hot labels (``Y.shape[1] > 1``) use argmax, otherwise
``round(A)``. ``accuracy`` returns the per-sample booleans (EpyNN averages
them); ``recall``, ``precision``, ``fscore``, ``specificity`` and ``NPV`` are
binary with class 0 as positive (NaN on an empty denominator), computed by
:mod:`epynn_jax.maths.metrics`.
"""

from __future__ import annotations

import numpy as np

from epynn_jax.maths import metrics as _metrics

__all__ = ["metrics_functions", "accuracy", "recall", "precision", "fscore", "specificity",
           "NPV", "MetricFunction"]


def _decisions(Y, A):
    Y, A = np.asarray(Y), np.asarray(A)
    if Y.shape[1] > 1:
        return np.argmax(A, axis=1), np.argmax(Y, axis=1)
    return np.around(A), Y


class MetricFunction:
    """A named metric ``f(Y, A)``."""

    def __init__(self, name: str) -> None:
        self.__name__ = self.__qualname__ = name

    def __call__(self, Y, A) -> np.ndarray:
        if self.__name__ == "accuracy":
            P, y = _decisions(Y, A)
            return P == y
        Y, A = np.asarray(Y, dtype=float), np.asarray(A, dtype=float)
        return np.asarray(_metrics.metric(self.__name__, Y, A))

    def __repr__(self) -> str:
        return f"<metric {self.__name__}>"


accuracy, recall, precision, fscore, specificity, NPV = (
    MetricFunction(k) for k in ("accuracy", "recall", "precision", "fscore", "specificity", "NPV")
)
_ALL = {f.__name__: f for f in (accuracy, recall, precision, fscore, specificity, NPV)}


def metrics_functions(key: str | None = None):
    """All metrics as a dict, or the one called ``key``."""
    if key is None:
        return dict(_ALL)
    if key not in _ALL:
        raise ValueError(f"unknown metric {key!r}; known: {', '.join(_ALL)}")
    return _ALL[key]
