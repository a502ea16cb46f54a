"""The layer contract shared by every layer.

A layer is a **frozen dataclass** of hyperparameters plus its static input
shape (without the batch dimension), filled in by ``compute_shapes``. It holds
no arrays and no batch size, every field is hashable, and it is registered as a
static pytree node, so a layer (or a tuple of layers) passes through
``jax.jit`` as an ordinary argument and only a change of shape retraces.

Each layer module defines, in this order, five pure functions::

    compute_shapes(layer, X_shape)              -> layer with input_shape set
    initialize_parameters(layer, key)           -> p
    forward(layer, p, X, key, training)         -> A, fc
    backward(layer, p, fc, dA)                  -> dX, bc
    compute_gradients(layer, p, fc, bc)         -> g

``p``, ``fc``, ``bc`` and ``g`` are plain dicts of arrays keyed with EpyNN's
names (``W``, ``b``; ``X``, ``Z``, ``A``; ``dA``, ``dZ``, ``dX``; ``dW``,
``db``). ``g['d' + k]`` has the shape of ``p[k]``. EpyNN's ``d``, ``fs`` and
``bs`` are derived: ``layer.d``, ``layer.fs(m)`` and ``layer.bs(m)``.

The :class:`Layer` methods of the same names dispatch to the module-level
functions of the module that defines the layer class (searching the class's
bases in order), so a custom layer is a module with a dataclass and five
functions, exactly like ``layers/template.py``. A class may also override the
methods directly.

:func:`apply` wraps any layer's forward/backward pair in a ``jax.custom_vjp``,
so ``jax.grad`` through a network runs the hand-written backward.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from epynn_jax.maths.activations import ActivationHPars

__all__ = [
    "Layer",
    "LayerError",
    "FUNCTIONS",
    "apply",
    "gradients_to_params",
    "check_input",
    "float_dtype",
]

Params = dict[str, jax.Array]
Cache = dict[str, jax.Array]

FUNCTIONS = (
    "compute_shapes",
    "initialize_parameters",
    "forward",
    "backward",
    "compute_gradients",
)


class LayerError(ValueError):
    """A layer was given something it cannot work with (shape, name, value)."""


def float_dtype():
    """The default float dtype: float32, or float64 when ``jax_enable_x64`` is on."""
    return jax.dtypes.canonicalize_dtype(float)  # no array is created (no dispatch)


def _find_function(cls: type, name: str):
    for klass in cls.__mro__:
        if klass is Layer or klass is object:
            break
        module = sys.modules.get(klass.__module__)
        fn = getattr(module, name, None)
        if callable(fn) and not isinstance(fn, type):
            return fn
    raise NotImplementedError(
        f"layer {cls.__name__}: no function {name!r} in module {cls.__module__!r} "
        f"(a layer module defines {', '.join(FUNCTIONS)})"
    )


@dataclasses.dataclass(frozen=True)
class Layer:
    """Base of every layer: a frozen, hashable, static description.

    Fields common to all layers are keyword-only:

    - ``input_shape``: the input shape without the batch dimension, set by
      ``compute_shapes`` (``None`` until the layer is built);
    - ``hpars``: activation hyperparameters (EpyNN's ``ELU_alpha``,
      ``LRELU_alpha``, ``softmax_temperature``).
    """

    input_shape: tuple[int, ...] | None = dataclasses.field(default=None, kw_only=True)
    hpars: ActivationHPars = dataclasses.field(default=ActivationHPars(), kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_static(cls)

    # -- the contract: dispatch to the layer module's pure functions ---------

    def compute_shapes(self, X_shape: tuple[int, ...]) -> Layer:
        """Return this layer with ``input_shape`` set from ``X_shape`` (no batch axis)."""
        return _find_function(type(self), "compute_shapes")(self, tuple(X_shape))

    def initialize_parameters(self, key: jax.Array) -> Params:
        """Return the parameter dict ``p``."""
        return _find_function(type(self), "initialize_parameters")(self, key)

    def forward(
        self, p: Params, X: jax.Array, key: jax.Array | None = None, training: bool = False
    ) -> tuple[jax.Array, Cache]:
        """Return ``(A, fc)``."""
        return _find_function(type(self), "forward")(self, p, X, key, training)

    def backward(self, p: Params, fc: Cache, dA: jax.Array) -> tuple[jax.Array, Cache]:
        """Return ``(dX, bc)``."""
        return _find_function(type(self), "backward")(self, p, fc, dA)

    def compute_gradients(self, p: Params, fc: Cache, bc: Cache) -> Params:
        """Return the gradient dict ``g`` (``g['dW']`` shaped like ``p['W']``)."""
        return _find_function(type(self), "compute_gradients")(self, p, fc, bc)

    # -- derived descriptions -------------------------------------------------

    @property
    def name(self) -> str:
        """The class name, as EpyNN reports layers."""
        return type(self).__name__

    @property
    def built(self) -> bool:
        """Whether ``compute_shapes`` has set the input shape."""
        return self.input_shape is not None

    def _require_built(self, what: str) -> tuple[int, ...]:
        if self.input_shape is None:
            raise LayerError(f"{self.name}: {what} needs a built layer (call compute_shapes first)")
        return self.input_shape

    @property
    def activation(self) -> dict[str, str]:
        """Activation names by argument (``{'activate': 'relu'}``), as EpyNN's attribute."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name.startswith("activate") or f.name == "pool"
        }

    @property
    def d(self) -> dict[str, Any]:
        """Dimensions (EpyNN's ``d``), without the batch size ``m``."""
        shape = self._require_built("d")
        return {"n": math.prod(shape)}

    def dims(self, m: int) -> dict[str, Any]:
        """Dimensions including the batch size ``m``."""
        return {**self.d, "m": m}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of ``p`` (without drawing random numbers)."""
        self._require_built("param_shapes")
        out = jax.eval_shape(self.initialize_parameters, jax.random.key(0))
        return {k: tuple(v.shape) for k, v in out.items()}

    def _abstract_forward(self, m: int, training: bool = False):
        shape = self._require_built("shapes")
        p = jax.eval_shape(self.initialize_parameters, jax.random.key(0))
        X = jax.ShapeDtypeStruct((m, *shape), float_dtype())
        return p, jax.eval_shape(
            lambda p, X, k: self.forward(p, X, k, training), p, X, jax.random.key(0)
        )

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Output shape without the batch dimension."""
        _, (A, _) = self._abstract_forward(1)
        return tuple(A.shape[1:])

    def fs(self, m: int = 1) -> dict[str, tuple[int, ...]]:
        """Forward shapes (EpyNN's ``fs``): ``p`` and ``fc`` entries for a batch of ``m``."""
        p, (_, fc) = self._abstract_forward(m)
        return {**{k: tuple(v.shape) for k, v in fc.items() if k == "X"},
                **{k: tuple(v.shape) for k, v in p.items()},
                **{k: tuple(v.shape) for k, v in fc.items() if k != "X"}}

    def bs(self, m: int = 1) -> dict[str, tuple[int, ...]]:
        """Backward shapes (EpyNN's ``bs``): ``bc`` entries for a batch of ``m``."""
        p, (A, fc) = self._abstract_forward(m)
        dX, bc = jax.eval_shape(self.backward, p, fc, A)
        return {k: tuple(v.shape) for k, v in bc.items()}

    @property
    def trainable(self) -> bool:
        """Whether the layer has parameters."""
        return bool(self.param_shapes()) if self.built else True


def check_input(layer: Layer, X_shape: tuple[int, ...], ndim: int | None = None) -> None:
    """Raise a clear :class:`LayerError` when an input shape does not fit ``layer``.

    ``X_shape`` excludes the batch axis; ``ndim`` is the required rank without it.
    """
    if ndim is not None and len(X_shape) != ndim:
        raise LayerError(
            f"{layer.name}: expected input of rank {ndim + 1} (batch, ...) "
            f"but got a sample shape {tuple(X_shape)} (rank {len(X_shape) + 1})"
        )
    if any((not isinstance(s, int)) or s < 1 for s in X_shape):
        raise LayerError(f"{layer.name}: invalid input shape {tuple(X_shape)}")


def gradients_to_params(p: Params, g: Params) -> Params:
    """Map a gradient dict to the parameter keys: ``g['dW'] -> W`` (missing: zeros)."""
    return {
        k: (g["d" + k].reshape(v.shape).astype(v.dtype) if "d" + k in g else jnp.zeros_like(v))
        for k, v in p.items()
    }


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _apply(layer: Layer, training: bool, p: Params, X: jax.Array, key):
    A, _ = layer.forward(p, X, key, training)
    return A


def _apply_fwd(layer: Layer, training: bool, p: Params, X: jax.Array, key):
    A, fc = layer.forward(p, X, key, training)
    return A, (p, fc)


def _apply_bwd(layer: Layer, training: bool, res, dA):
    p, fc = res
    dX, bc = layer.backward(p, fc, dA)
    g = layer.compute_gradients(p, fc, bc)
    return gradients_to_params(p, g), dX.astype(fc["X"].dtype), None


_apply.defvjp(_apply_fwd, _apply_bwd)


def apply(
    layer: Layer, p: Params, X: jax.Array, key: jax.Array | None = None, training: bool = False
) -> jax.Array:
    """``A = layer(X)``, differentiable by ``jax.grad`` through the hand-written backward.

    The VJP runs ``backward`` and ``compute_gradients``: reverse mode only.
    """
    return _apply(layer, training, p, X, key)
