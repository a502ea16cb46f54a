"""``Convolution(unit_filters=1, filter_size=(3, 3), strides=None, padding=0, activate=relu,
initialization=xavier, use_bias=True, se_hPars=None)``.

Fixed from EpyNN: an int ``strides`` is honoured, ``padding`` counts in the
output size, and ``se_hPars`` is kept.
"""

from __future__ import annotations

from epynn_jax.compat._builtin import BuiltinLayer, check_initialization
from epynn_jax.compat.commons.maths import activation_name, relu, xavier

__all__ = ["Convolution"]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Convolution(BuiltinLayer):
    """2-D convolution over NHWC images (``epynn_jax.layers.convolution``)."""

    _functional = ("epynn_jax.layers.convolution", "Convolution")
    _param_order = ("W", "b")

    def __init__(self, unit_filters: int = 1, filter_size=(3, 3), strides=None, padding: int = 0,
                 activate=relu, initialization=xavier, use_bias: bool = True,
                 se_hPars: dict | None = None) -> None:
        fsize = _pair(filter_size)
        stride = fsize if strides is None else _pair(strides)
        super().__init__(se_hPars, unit_filters=unit_filters, filter_size=fsize, strides=stride,
                         padding=padding, use_bias=bool(use_bias),
                         activate=activation_name(activate, "Convolution: activate"))
        self.initialization = check_initialization(initialization, "Convolution")
        # every argument checked now, naming it (strides of three values failed in the
        # unpacking below, "too many values to unpack", as in EpyNN; unit_filters=0
        # trained EpyNN's network on no features at all)
        self.to_functional()
        self.d["u"] = unit_filters
        self.d["fh"], self.d["fw"] = fsize
        self.d["sh"], self.d["sw"] = stride
        self.d["p"] = padding
        self.activate = activate
        self.use_bias = use_bias
        self.activation = {"activate": self._fkwargs["activate"]}
        self.trainable = True
