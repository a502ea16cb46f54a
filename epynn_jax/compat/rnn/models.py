"""``RNN(unit_cells=1, activate=tanh, initialization=xavier, clip_gradients=True,
sequences=False, se_hPars=None)``; clipping is on by default, as in EpyNN."""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat.commons.maths import name_of, tanh, xavier
from epynn_jax.compat.dense.models import _init_name

__all__ = ["RNN"]


class RNN(BuiltinLayer):
    """Elman RNN (``epynn_jax.layers.rnn``); input (m, steps, features)."""

    _functional = ("epynn_jax.layers.rnn", "RNN")
    _param_order = ("U", "V", "b")

    def __init__(self, unit_cells: int = 1, activate=tanh, initialization=xavier,
                 clip_gradients: bool = True, sequences: bool = False,
                 se_hPars: dict | None = None) -> None:
        super().__init__(se_hPars, unit_cells=unit_cells, activate=name_of(activate),
                         clip_gradients=bool(clip_gradients), sequences=bool(sequences))
        self.d["u"] = unit_cells
        self.activate = activate
        self.initialization = initialization
        self.clip_gradients = clip_gradients
        self.sequences = sequences
        self.activation = {"activate": name_of(activate)}
        self.trainable = True

    def _functional_kwargs(self) -> dict:
        return {**self._fkwargs, "initialization": _init_name(self.initialization)}
