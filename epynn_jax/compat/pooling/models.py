"""``Pooling(pool_size=(2, 2), strides=None, pool=np.max)``.

Fixed from EpyNN: an int ``strides`` is honoured and ``np.mean`` pooling has
the correct gradient.
"""

from __future__ import annotations

import numpy as np

from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat.commons.maths import name_of

__all__ = ["Pooling"]

_POOLS = {"max": "max", "amax": "max", "min": "min", "amin": "min", "mean": "mean"}


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Pooling(BuiltinLayer):
    """Max/min/mean pooling over NHWC images (``epynn_jax.layers.pooling``)."""

    _functional = ("epynn_jax.layers.pooling", "Pooling")

    def __init__(self, pool_size=(2, 2), strides=None, pool=np.max) -> None:
        psize = _pair(pool_size)
        stride = psize if strides is None else _pair(strides)
        name = name_of(pool, "pool")
        if name not in _POOLS:
            raise ValueError(f"Pooling: pool must be np.max, np.min or np.mean, got {pool!r}")
        super().__init__(None, pool_size=psize, strides=stride, pool=_POOLS[name])
        self.to_functional()  # pool_size and strides checked now, naming the argument
        self.d["ph"], self.d["pw"] = psize
        self.d["sh"], self.d["sw"] = stride
        self.pool = pool
        self.activation = {"pool": _POOLS[name]}
        self.trainable = False
