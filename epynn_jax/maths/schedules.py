"""Learning-rate schedules of EpyNN, per epoch, and as optax schedules.

With ``e`` training epochs, ``lr`` the initial rate, ``epc = cycle_epochs or e``
epochs per cycle, ``d = cycle_descent`` and ``k = decay_k`` (``5 / epc`` when
0, so the rate falls to about 1 % of ``lr`` at the end of a cycle), the rate at
epoch ``x`` is:

- ``steady``:    lr
- ``exp_decay``: lr * (1 - d) ** (x // epc) * exp(-k * (x % epc))
- ``lin_decay``: lr / (1 + 100 * k * x)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

__all__ = ["Schedule", "SCHEDULES", "learning_rates", "optax_schedule", "resolve", "rate"]

SCHEDULES = ("steady", "exp_decay", "lin_decay")


@dataclass(frozen=True)
class Schedule:
    """EpyNN's schedule hyperparameters (``se_hPars`` keys), checked when made.

    - ``learning_rate``: a finite real number > 0;
    - ``schedule``: one of :data:`SCHEDULES`;
    - ``decay_k``: a finite real number >= 0 (0: ``5 / epc``, see above);
    - ``cycle_epochs``: an int >= 0 (0: one cycle over the whole training);
    - ``cycle_descent``: a real number in [0, 1).

    NumPy scalars count as numbers, bools do not. A wrong type raises
    ``TypeError``, a value out of range ``ValueError``, each naming the field.
    """

    learning_rate: float = 0.1
    schedule: str = "steady"
    decay_k: float = 0.0
    cycle_epochs: int = 0
    cycle_descent: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, str):
            raise TypeError(f"Schedule: schedule must be a name such as 'steady', "
                            f"got {self.schedule!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Schedule: unknown schedule {self.schedule!r}; "
                             f"known: {', '.join(SCHEDULES)}")
        lr = self._real("learning_rate", "a finite number > 0")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"Schedule: learning_rate must be a finite number > 0, "
                             f"got {self.learning_rate!r}")
        k = self._real("decay_k", "a finite number >= 0")
        if not (math.isfinite(k) and k >= 0):
            raise ValueError(f"Schedule: decay_k must be a finite number >= 0, "
                             f"got {self.decay_k!r}")
        d = self._real("cycle_descent", "a number in [0, 1)")
        if not 0 <= d < 1:  # also refuses NaN
            raise ValueError(f"Schedule: cycle_descent must be a number in [0, 1), "
                             f"got {self.cycle_descent!r}")
        epc = self.cycle_epochs
        if isinstance(epc, bool) or not isinstance(epc, numbers.Integral):
            raise TypeError(f"Schedule: cycle_epochs must be an int >= 0, got {epc!r}")
        if epc < 0:
            raise ValueError(f"Schedule: cycle_epochs must be an int >= 0, got {epc!r}")
        _float(epc, "Schedule: cycle_epochs", "an int >= 0")

    def _real(self, field: str, expected: str) -> float:
        value = getattr(self, field)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"Schedule: {field} must be {expected}, got {value!r}")
        return _float(value, f"Schedule: {field}", expected)

    @classmethod
    def from_hpars(cls, se_hPars: dict) -> Schedule:
        """Build from an EpyNN ``se_hPars`` dict (other keys are ignored)."""
        keys = ("learning_rate", "schedule", "decay_k", "cycle_epochs", "cycle_descent")
        return cls(**{k: se_hPars[k] for k in keys if k in se_hPars})


def _float(value: numbers.Real, where: str, expected: str) -> float:
    """``float(value)``; an int beyond the float range raises ``ValueError`` naming ``where``
    (not Python's bare ``OverflowError``)."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{where} must be {expected} that fits a float, got a number too "
                         "large") from None


def learning_rates(schedule: Schedule, epochs: int) -> np.ndarray:
    """The learning rate of each epoch, shape (epochs,), float64 (:func:`rate` in NumPy)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    lr, d, k, epc = resolve(schedule, epochs)
    return rate(schedule.schedule, lr, d, k, epc, np.arange(epochs, dtype=np.float64), xp=np)


def optax_schedule(rates: np.ndarray, steps_per_epoch: int):
    """An optax schedule: step -> ``rates[step // steps_per_epoch]`` (last rate after the end)."""
    table = jnp.asarray(np.asarray(rates))
    n = table.shape[0]

    def schedule(count):
        return table[jnp.minimum(count // steps_per_epoch, n - 1)]

    return schedule


def resolve(schedule: Schedule, epochs: int) -> tuple[float, float, float, float]:
    """``(lr, d, k, epc)`` of ``schedule`` over ``epochs`` epochs: ``epc = cycle_epochs or
    epochs`` and ``k = decay_k or 5 / epc`` (the two defaults EpyNN resolves)."""
    epc = _float(schedule.cycle_epochs if schedule.cycle_epochs else epochs, "resolve: epochs",
                 "an int")
    k = schedule.decay_k if schedule.decay_k else 5 / epc
    return float(schedule.learning_rate), float(schedule.cycle_descent), float(k), epc


def rate(kind: str, lr, d, k, epc, x, xp=jnp):
    """The rate at epoch ``x``: THE schedule formula, used by the optimizer, the facade and
    the reports alike.

    ``kind`` is static (a Python str); the numbers may be Python floats, NumPy or traced
    JAX arrays of any broadcastable shape. ``xp`` is the array module (``jax.numpy``
    inside compiled code, ``numpy`` for host tables)::

        steady:    lr
        exp_decay: lr * (1 - d) ** (x // epc) * exp(-k * (x % epc))
        lin_decay: lr / (1 + 100 * k * x)
    """
    if kind == "steady":
        return lr * xp.ones_like(x)
    if kind == "exp_decay":
        return lr * (1 - d) ** (x // epc) * xp.exp(-(x % epc) * k)
    if kind == "lin_decay":
        return lr / (1 + k * 100 * x)
    raise ValueError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULES)}")
