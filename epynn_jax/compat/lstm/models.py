"""``LSTM(unit_cells=1, activate=tanh, activate_output=sigmoid, activate_candidate=tanh,
activate_input=sigmoid, activate_forget=sigmoid, initialization=orthogonal,
clip_gradients=False, sequences=False, se_hPars=None)``."""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat.commons.maths import orthogonal, sigmoid, tanh

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
        self._setup_recurrent(se_hPars, unit_cells, fns, initialization, clip_gradients,
                              sequences)
