"""Compile a user's custom layer with the rest of the network when its methods allow it.

A custom layer (a subclass of ``epynn.commons.models.Layer``) whose
``forward``, ``backward``, ``compute_gradients`` and ``update_parameters``
are written with ``jax.numpy`` (or otherwise work on traced arrays) can run
inside the compiled epoch. :func:`try_trace` traces those four methods once
with :func:`jax.eval_shape`; if tracing fails (NumPy functions on traced
values, Python branches on values, use of ``np_rng``, state leaking out of
the methods, attributes the methods set or change, a use of the epoch ``e``
other than ``lrate[e]``, gradients not keyed ``'d' + name``), the layer runs
eagerly in NumPy instead, and the probe leaves the object as it found it. A
layer can opt out with ``jit = False``.

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


class _EpochUsed(RuntimeError):
    """A traced method used the epoch ``e``."""


class _NoEpoch:
    """``self.e`` while tracing: the compiled epoch has no epoch number to give, so any use
    of it but ``lrate[e]`` raises, and the layer runs eagerly (where ``e`` is set)."""

    def _refuse(self, *args, **kwargs):
        raise _EpochUsed("the epoch e is not available to compiled custom layers")

    for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
                  "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__",
                  "__pow__", "__rpow__", "__neg__", "__abs__", "__float__", "__int__",
                  "__index__", "__bool__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__",
                  "__ne__", "__array__", "__jax_array__"):
        locals()[_name] = _refuse
    del _name
    __hash__ = object.__hash__


@contextlib.contextmanager
def _swapped(obj, **values):
    saved = {k: obj.__dict__[k] for k in _SWAPPED if k in obj.__dict__}
    try:
        for k in ("d", "fs", "bs"):
            setattr(obj, k, dict(getattr(obj, k, {})))
        obj.np_rng = _NoRNG()
        obj.e = _NoEpoch()
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
        with _swapped(self.obj, p=dict(p), g=dict(g), lrate=_AnyIndex(lr)) as o:
            o.update_parameters()
            return {k: jnp.asarray(v) for k, v in o.p.items()}


def _contents(v) -> tuple | None:
    """A container's elements (a dict's items), to see it changed in place; else None."""
    if isinstance(v, dict):
        return tuple(v.items())
    return tuple(v) if isinstance(v, (list, set)) else None


def _snapshot(obj) -> dict:
    """The object's attributes (outside the swapped dicts), each with its contents."""
    return {k: (v, _contents(v)) for k, v in vars(obj).items() if k not in _SWAPPED}


def _same(a: tuple | None, b: tuple | None) -> bool:
    """Element by element, by identity (a dict's items: equal keys, identical values)."""
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(
        (x[0] == y[0] and x[1] is y[1]) if isinstance(x, tuple) and isinstance(y, tuple)
        else x is y for x, y in zip(a, b))


def _changed(before: dict, obj) -> list[str]:
    """The attributes (outside the swapped dicts) that the methods set, added or changed
    (a container changed in place included)."""
    now = {k: v for k, v in vars(obj).items() if k not in _SWAPPED}
    return sorted(k for k in set(before) | set(now)
                  if k not in before or k not in now or now[k] is not before[k][0]
                  or not _same(_contents(now[k]), before[k][1]))


def _restore(obj, before: dict) -> None:
    """Put back every attribute and every container's contents as :func:`_snapshot` saw."""
    for k in [k for k in vars(obj) if k not in _SWAPPED and k not in before]:
        del obj.__dict__[k]
    for k, (v, contents) in before.items():
        obj.__dict__[k] = v
        if isinstance(v, dict):
            v.clear()
            v.update(contents)
        elif isinstance(v, (list, set)):
            v.clear()
            (v.extend if isinstance(v, list) else v.update)(contents)


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
        return A, dX, g, adapter.update(p, g, jnp.asarray(0.1, dtype))

    before = _snapshot(obj)
    try:
        _, dX, g, newp = jax.eval_shape(probe, p, jax.ShapeDtypeStruct(tuple(X_shape), dtype))
    except _EpochUsed:
        return None, "its methods use the epoch e (beyond lrate[e])"
    except Exception as err:  # noqa: BLE001 - any failure means: run it eagerly
        return None, f"{type(err).__name__} while tracing"
    finally:
        changed = _changed(before, obj)
        _restore(obj, before)  # the probe's traces must not stay in the object
    if changed:
        return None, f"its methods keep state on the layer ({', '.join(changed)})"
    if set(g) != {"d" + k for k in p}:
        return None, "its gradients are not keyed 'd' + parameter name"
    if tuple(dX.shape) != tuple(X_shape) or {k: v.shape for k, v in newp.items()} != {
            k: v.shape for k, v in p.items()}:
        return None, "shapes change under tracing"
    return adapter, "its methods trace with jax.numpy"
