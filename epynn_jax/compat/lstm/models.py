"""``LSTM(unit_cells=1, activate=tanh, activate_output=sigmoid, activate_candidate=tanh,
activate_input=sigmoid, activate_forget=sigmoid, initialization=orthogonal,
clip_gradients=False, sequences=False, se_hPars=None)``."""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat.commons.maths import name_of, orthogonal, sigmoid, tanh
from epynn_jax.compat.dense.models import _init_name

__all__ = ["LSTM"]

_GATES = ("activate", "activate_output", "activate_candidate", "activate_input",
          "activate_forget")


class LSTM(BuiltinLayer):
    """Long short-term memory layer (``epynn_jax.layers.lstm``)."""

    _functional = ("epynn_jax.layers.lstm", "LSTM")
    _param_order = ("Uf", "Vf", "bf", "Ui", "Vi", "bi", "Ug", "Vg", "bg", "Uo", "Vo", "bo")

    def __init__(self, unit_cells: int = 1, activate=tanh, activate_output=sigmoid,
                 activate_candidate=tanh, activate_input=sigmoid, activate_forget=sigmoid,
                 initialization=orthogonal, clip_gradients: bool = False,
                 sequences: bool = False, se_hPars: dict | None = None) -> None:
        fns = dict(zip(_GATES, (activate, activate_output, activate_candidate, activate_input,
                                activate_forget)))
        super().__init__(se_hPars, unit_cells=unit_cells,
                         **{k: name_of(f) for k, f in fns.items()},
                         clip_gradients=bool(clip_gradients), sequences=bool(sequences))
        self.d["u"] = unit_cells
        for k, f in fns.items():
            setattr(self, k, f)
        self.initialization = initialization
        self.clip_gradients = clip_gradients
        self.sequences = sequences
        self.activation = {k: name_of(f) for k, f in fns.items()}
        self.trainable = True

    def _functional_kwargs(self) -> dict:
        return {**self._fkwargs, "initialization": _init_name(self.initialization)}
