"""Learning-rate schedules with EpyNN's signatures.

``schedule_functions(name, hPars)`` with ``hPars = (epochs, lr, n_cycles,
decay_k, cycle_descent, cycle_epochs)`` returns a list of one rate per
epoch (see :mod:`epynn_jax.maths.schedules` for the formulas).
``schedule_lrate(se_hPars, epochs)`` works on a **copy** of ``se_hPars``
(EpyNN writes into the caller's dict) and returns ``(copy, rates)``.
"""

from __future__ import annotations

import functools

from epynn_jax.compat.settings import se_hPars as _DEFAULTS
from epynn_jax.maths.schedules import Schedule, learning_rates

__all__ = ["schedule_functions", "exp_decay", "lin_decay", "steady", "schedule_lrate"]


def _rates(kind: str, hPars) -> list[float]:
    return list(_rates_cached(kind, tuple(hPars)))


@functools.lru_cache(maxsize=256)
def _rates_cached(kind: str, hPars: tuple) -> tuple[float, ...]:
    e, lr, _n, k, d, epc = hPars
    sched = Schedule(learning_rate=lr, schedule=kind, decay_k=k, cycle_epochs=epc,
                     cycle_descent=d)
    return tuple(float(r) for r in learning_rates(sched, int(e)))


def exp_decay(hPars) -> list[float]:
    """lr * (1 - d) ** (x // epc) * exp(-k * (x % epc))."""
    return _rates("exp_decay", hPars)


def lin_decay(hPars) -> list[float]:
    """lr / (1 + 100 * k * x)."""
    return _rates("lin_decay", hPars)


def steady(hPars) -> list[float]:
    """lr at every epoch."""
    return _rates("steady", hPars)


def schedule_functions(schedule: str, hPars) -> list[float]:
    """The rates of the schedule called ``schedule``."""
    table = {"exp_decay": exp_decay, "lin_decay": lin_decay, "steady": steady}
    if schedule not in table:
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(table)}")
    return table[schedule](hPars)


def schedule_lrate(se_hPars: dict, training_epochs: int) -> tuple[dict, list[float]]:
    """Per-epoch rates for ``training_epochs`` epochs, and a completed copy of ``se_hPars``.

    Missing keys take the defaults of ``settings.se_hPars``. The copy gains
    ``epochs``, ``cycle_number`` and, when ``decay_k`` is 0,
    ``decay_k = 5 / cycle_epochs`` (about 1 % of the rate at a cycle's end).
    """
    hp = {**_DEFAULTS, **se_hPars}
    e = hp["epochs"] = int(training_epochs)
    epc = hp["cycle_epochs"] or e
    hp["cycle_number"] = e // epc
    if not hp["decay_k"]:
        hp["decay_k"] = 5 / epc
    hPars = (e, hp["learning_rate"], hp["cycle_number"], hp["decay_k"], hp["cycle_descent"], epc)
    return hp, schedule_functions(hp["schedule"], hPars)
