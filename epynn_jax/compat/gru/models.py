"""``GRU(unit_cells=1, activate=tanh, activate_update=sigmoid, activate_reset=sigmoid,
initialization=orthogonal, clip_gradients=False, sequences=False, se_hPars=None)``."""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat.commons.maths import orthogonal, sigmoid, tanh

__all__ = ["GRU"]

_GATES = ("activate", "activate_update", "activate_reset")


class GRU(BuiltinLayer):
    """Gated recurrent unit layer (``epynn_jax.layers.gru``)."""

    _functional = ("epynn_jax.layers.gru", "GRU")
    _param_order = ("Uz", "Vz", "bz", "Ur", "Vr", "br", "Uhh", "Vhh", "bhh")

    def __init__(self, unit_cells: int = 1, activate=tanh, activate_update=sigmoid,
                 activate_reset=sigmoid, initialization=orthogonal, clip_gradients: bool = False,
                 sequences: bool = False, se_hPars: dict | None = None) -> None:
        fns = dict(zip(_GATES, (activate, activate_update, activate_reset)))
        self._setup_recurrent(se_hPars, unit_cells, fns, initialization, clip_gradients,
                              sequences)
