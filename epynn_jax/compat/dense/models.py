"""``Dense(units=1, activate=sigmoid, initialization=xavier, se_hPars=None)``."""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer, check_initialization
from epynn_jax.compat.commons.maths import activation_name, sigmoid, xavier

__all__ = ["Dense"]


class Dense(BuiltinLayer):
    """Fully connected layer (``epynn_jax.layers.dense``): Z = X.W + b, A = f(Z)."""

    _functional = ("epynn_jax.layers.dense", "Dense")
    _param_order = ("W", "b")

    def __init__(self, units: int = 1, activate=sigmoid, initialization=xavier,
                 se_hPars: dict | None = None) -> None:
        super().__init__(se_hPars, units=units,
                         activate=activation_name(activate, "Dense: activate"))
        self.d["u"] = units
        self.activate = activate
        self.initialization = check_initialization(initialization, "Dense")
        self.activation = {"activate": self._fkwargs["activate"]}
        self.trainable = True

