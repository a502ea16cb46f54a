"""Loss functions with EpyNN's signature ``f(Y, A, deriv=False)`` (NumPy in, NumPy out).

Each returns the per-sample loss (m,), or dL/dA (m, U) with ``deriv=True``,
computed by :mod:`epynn_jax.maths.losses` (see its table of formulas). The
gradient of the summed loss is used for training (no 1/m), as in EpyNN.
"""

from __future__ import annotations

import numpy as np

from epynn_jax.maths import losses as _losses

__all__ = ["E_SAFE", "loss_functions", "MSE", "MAE", "MSLE", "CCE", "BCE", "LossFunction"]

E_SAFE = _losses.E_SAFE


class LossFunction:
    """A named loss ``f(Y, A, deriv=False)``."""

    def __init__(self, name: str) -> None:
        self.__name__ = self.__qualname__ = name

    def __call__(self, Y, A, deriv: bool = False) -> np.ndarray:
        Y, A = np.asarray(Y, dtype=float), np.asarray(A, dtype=float)
        fn = _losses.loss_deriv if deriv else _losses.loss
        return np.asarray(fn(self.__name__, Y, A))

    def __repr__(self) -> str:
        return f"<loss {self.__name__}>"


MSE, MAE, MSLE, CCE, BCE = (LossFunction(k) for k in ("MSE", "MAE", "MSLE", "CCE", "BCE"))
_ALL = {f.__name__: f for f in (MSE, MAE, MSLE, CCE, BCE)}


def loss_functions(key: str | None = None, output_activation: str | None = None):
    """All losses as a dict, or the one called ``key``, checked against the output activation.

    CCE needs a softmax output; CCE, BCE and MSLE refuse a tanh output.
    """
    if key is None:
        return dict(_ALL)
    if key not in _ALL:
        raise ValueError(f"unknown loss {key!r}; known: {', '.join(_ALL)}")
    if key == "CCE" and output_activation != "softmax":
        raise ValueError(f"loss 'CCE' needs a softmax output layer, got {output_activation!r}")
    if key in ("CCE", "BCE", "MSLE") and output_activation == "tanh":
        raise ValueError(f"loss {key!r} takes a logarithm and cannot follow a tanh output")
    return _ALL[key]
