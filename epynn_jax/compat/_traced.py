"""Compile a user's custom layer with the rest of the network when its methods allow it.

A custom layer (a subclass of ``epynn.commons.models.Layer``) whose
``forward``, ``backward``, ``compute_gradients`` and ``update_parameters``
are written with ``jax.numpy`` (or otherwise work on traced arrays) can run
inside the compiled epoch. :func:`try_trace` traces those four methods once
with :func:`jax.eval_shape`; if tracing fails (NumPy functions on traced
values, Python branches on values, use of ``np_rng``, state leaking out of
the methods), the layer runs eagerly in NumPy instead. A layer can opt out
with ``jit = False``.

:class:`TracedCustom` is the functional-layer adapter: each pure function
swaps the arrays into the user's object, calls its method, and reads the
dicts back, leaving the object as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from epynn_jax.layers.base import Layer

__all__ = ["TracedCustom", "try_trace"]

_SWAPPED = ("p", "fc", "bc", "g", "d", "fs", "bs", "lrate", "e", "np_rng")


class _AnyIndex:
    """``lrate[e]`` for any ``e``: the current epoch's rate, given as a traced scalar."""

    def __init__(self, value) -> None:
        self.value = value

    def __getitem__(self, index):
        return self.value


class _NoRNG:
    def __getattr__(self, name):
        raise RuntimeError("np_rng is not available to compiled custom layers")


@contextlib.contextmanager
def _swapped(obj, **values):
    saved = {k: obj.__dict__[k] for k in _SWAPPED if k in obj.__dict__}
    try:
        for k in ("d", "fs", "bs"):
            setattr(obj, k, dict(getattr(obj, k, {})))
        obj.np_rng = _NoRNG()
        for k, v in values.items():
            setattr(obj, k, v)
        yield obj
    finally:
        for k in _SWAPPED:
            obj.__dict__.pop(k, None)
        obj.__dict__.update(saved)


@dataclasses.dataclass(frozen=True, eq=False)
class TracedCustom(Layer):
    """A user's custom layer object as a functional layer (hashed by identity)."""

    obj: Any = None

    @property
    def name(self) -> str:
        return type(self.obj).__name__

    @property
    def d(self) -> dict:
        return {k: v for k, v in self.obj.d.items() if k != "m"}

    @property
    def trainable(self) -> bool:
        return bool(getattr(self.obj, "trainable", False))

    def compute_shapes(self, X_shape):
        return dataclasses.replace(self, input_shape=tuple(X_shape))

    def initialize_parameters(self, key):
        return {k: jnp.asarray(v) for k, v in self.obj.p.items()}

    def forward(self, p, X, key=None, training=False):
        with _swapped(self.obj, p=dict(p), fc={}) as o:
            A = o.forward(X)
            fc = dict(o.fc)
        fc.setdefault("X", X)
        return jnp.asarray(A), fc

    def backward(self, p, fc, dA):
        with _swapped(self.obj, p=dict(p), fc=dict(fc), bc={}) as o:
            dX = o.backward(dA)
            bc = dict(o.bc)
        return jnp.asarray(dX), bc

    def compute_gradients(self, p, fc, bc):
        with _swapped(self.obj, p=dict(p), fc=dict(fc), bc=dict(bc), g={}) as o:
            o.compute_gradients()
            return dict(o.g)

    def update(self, p, g, lr):
        """The layer's own ``update_parameters`` with ``lrate[e]`` = ``lr``."""
        with _swapped(self.obj, p=dict(p), g=dict(g), lrate=_AnyIndex(lr), e=0) as o:
            o.update_parameters()
            return {k: jnp.asarray(v) for k, v in o.p.items()}


def _leaks(obj) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in vars(obj).values())


def try_trace(obj, X_shape: tuple[int, ...], dtype) -> tuple[TracedCustom | None, str]:
    """``(adapter, reason)`` when ``obj``'s methods trace; ``(None, reason)`` otherwise."""
    if getattr(obj, "jit", True) is False:
        return None, "jit = False"
    adapter = TracedCustom(obj=obj, input_shape=tuple(X_shape[1:]))
    p = {k: jax.ShapeDtypeStruct(jnp.shape(v), dtype) for k, v in obj.p.items()}

    def probe(p, X):
        A, fc = adapter.forward(p, X, None, True)
        dX, bc = adapter.backward(p, fc, jnp.ones_like(A))
        g = adapter.compute_gradients(p, fc, bc)
        return A, dX, adapter.update(p, g, jnp.asarray(0.1, dtype))

    try:
        _, dX, newp = jax.eval_shape(probe, p, jax.ShapeDtypeStruct(tuple(X_shape), dtype))
    except Exception as err:  # noqa: BLE001 - any failure means: run it eagerly
        return None, f"{type(err).__name__} while tracing"
    if _leaks(obj):
        return None, "state leaked out of its methods"
    if tuple(dX.shape) != tuple(X_shape) or {k: v.shape for k, v in newp.items()} != {
            k: v.shape for k, v in p.items()}:
        return None, "shapes change under tracing"
    return adapter, "its methods trace with jax.numpy"
