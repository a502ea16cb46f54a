"""``RNN(unit_cells=1, activate=tanh, initialization=xavier, clip_gradients=True,
sequences=False, se_hPars=None)``; clipping is on by default, as in EpyNN."""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat.commons.maths import tanh, xavier

__all__ = ["RNN"]


class RNN(BuiltinLayer):
    """Elman RNN (``epynn_jax.layers.rnn``); input (m, steps, features)."""

    _functional = ("epynn_jax.layers.rnn", "RNN")
    _param_order = ("U", "V", "b")

    def __init__(self, unit_cells: int = 1, activate=tanh, initialization=xavier,
                 clip_gradients: bool = True, sequences: bool = False,
                 se_hPars: dict | None = None) -> None:
        self._setup_recurrent(se_hPars, unit_cells, {"activate": activate}, initialization,
                              clip_gradients, sequences)
