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

The layer's module binds them as the class's methods, explicitly, at its
end (``Dense.forward = forward``), so ``layer.forward(p, X)`` *is* the call
``forward(layer, p, X)`` and ``Dense.forward is dense.forward``. A subclass
inherits its parent's functions and rebinds only those it changes; several
layers may share a module. A class may also define the methods in its body.
Making an instance of a class that leaves one of the five unbound raises a
``TypeError`` naming the class, the function and the line to add.

:func:`apply` wraps any layer's forward/backward pair in a ``jax.custom_vjp``,
so ``jax.grad`` through a network runs the hand-written backward.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import sys
import weakref
from collections.abc import Mapping
from functools import lru_cache, partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from epynn_jax.maths import initializers
from epynn_jax.maths.activations import DEFAULT_HPARS, ActivationHPars

__all__ = [
    "Layer",
    "LayerError",
    "FUNCTIONS",
    "check_bound",
    "apply",
    "gradients_to_params",
    "forward_result",
    "backward_result",
    "checked_gradients",
    "check_input",
    "count",
    "initialization",
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


def x64_mode(enabled: bool):
    """A context manager that sets ``jax_enable_x64`` to ``enabled`` in this thread (scoped),
    across JAX versions (``jax.enable_x64``; ``jax.experimental.enable_x64`` before 0.6)."""
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # JAX < 0.6
        from jax.experimental import enable_x64 as ctx
    return ctx(enabled)


def _unbound(cls: type) -> list[str]:
    """The contract functions ``cls`` still takes from :class:`Layer` (bound nowhere)."""
    return [name for name in FUNCTIONS if getattr(cls, name) is getattr(Layer, name)]


def _stray(cls: type) -> list[str]:
    """Contract functions ``cls`` inherits while its module defines its own, bound nowhere.

    Only a diagnosis of layers written for the old contract, in which a layer's
    methods were looked up by name in its module: a subclass of a built-in layer
    that defines its own ``backward`` there would now silently keep its parent's.
    A function counts when its first parameter is named ``layer``, as in the template.
    """
    module = sys.modules.get(cls.__module__)
    if module is None:
        return []
    names = vars(module)
    bound = {id(fn) for obj in names.values()
             if isinstance(obj, type) and issubclass(obj, Layer) for fn in vars(obj).values()}
    stray = []
    for name in FUNCTIONS:
        fn = names.get(name)
        if (inspect.isfunction(fn) and fn.__module__ == cls.__module__
                and getattr(cls, name) not in (fn, getattr(Layer, name)) and id(fn) not in bound
                and next(iter(inspect.signature(fn).parameters), None) == "layer"):
            stray.append(name)
    return stray


def _binding_error(cls: type, missing: list[str], stray: list[str]) -> TypeError:
    """The error for a layer class whose methods are not all bound, saying what to add."""
    module = sys.modules.get(cls.__module__)
    defined = [n for n in missing if inspect.isfunction(getattr(module, n, None))]
    what = [f"does not bind {', '.join(missing)}"] if missing else []
    for name in stray:
        owner = next(k for k in cls.__mro__ if name in vars(k))
        what.append(f"keeps {owner.__name__}'s {name} although its module defines its own "
                    f"{name}(layer, ...)")
    old = (" (layers no longer look their functions up in their module by name)"
           if stray or defined else "")
    lines = "\n".join(f"    {cls.__name__}.{n} = {n}" for n in FUNCTIONS
                      if n in missing or n in stray)
    undefined = [n for n in missing if n not in defined]
    them = "them" if len(undefined) > 1 else "it"
    note = (f"\n(module {cls.__module__!r} defines no {', '.join(undefined)} yet: write "
            f"{them} first, as the template does)" if undefined else "")
    return TypeError(
        f"layer {cls.__name__} {'; it '.join(what)}{old}. A layer's methods are the "
        f"functions of its module, bound explicitly after them: add at the end of module "
        f"{cls.__module__!r}, as epynn_jax/layers/template.py does:\n{lines}{note}"
    )


def _declaration_only(layer: Layer, name: str) -> TypeError:
    """The error of calling one of :class:`Layer`'s declarations (``super().forward``)."""
    cls = type(layer).__name__
    return TypeError(
        f"{cls}: Layer.{name} only declares the contract's signature and has no body to "
        f"call; {cls} binds its own {name} (``{cls}.{name} = {name}`` at the end of its module)"
    )


def check_bound(cls: type) -> None:
    """Raise a ``TypeError`` unless layer class ``cls`` binds the five contract functions.

    :class:`Layer` runs it when a class makes its first instance, so an incomplete
    layer fails where it is made, before any tracing.
    """
    missing, stray = _unbound(cls), _stray(cls)
    if missing or stray:
        raise _binding_error(cls, missing, stray)


_CHECKED: weakref.WeakSet = weakref.WeakSet()  # layer classes that passed check_bound


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
    hpars: ActivationHPars = dataclasses.field(default=DEFAULT_HPARS, kw_only=True)

    #: Whether ``forward`` reads its ``key`` when training (Dropout draws its mask
    #: from it). True unless the class says otherwise, so a custom layer is given
    #: keys; the built-in layers that draw nothing set it False, and a network of
    #: such layers only is trained with no per-step keys drawn (a layer that draws
    #: then gets ``key=None``).
    uses_key: ClassVar[bool] = True
    #: Whether ``forward`` runs a loop over the time steps of each sample (the
    #: recurrent layers): its sequential chain does not grow with the batch, so
    #: evaluating several sets in ONE forward, their samples side by side, runs it
    #: once instead of once per set (``network.epoch.evaluate_splits``). False
    #: unless the class says so; every layer's forward must treat samples apart
    #: when not training (as chunked evaluation already assumes).
    sequential: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_static(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> Layer:
        # Checked on the first instance, not at class creation: a module binds the
        # functions after the class statement, at its end.
        if cls not in _CHECKED:
            check_bound(cls)
            _CHECKED.add(cls)
        # The common fields are keyword-only, so every layer's own __post_init__ is
        # spared checking them: a wrong hpars would fail only when traced.
        hpars = kwargs.get("hpars", DEFAULT_HPARS)
        if not isinstance(hpars, ActivationHPars):
            raise LayerError(f"{cls.__name__}: hpars must be an ActivationHPars (from "
                             f"epynn_jax.maths.activations, e.g. ActivationHPars(ELU_alpha=0.5)),"
                             f" got {hpars!r}")
        return super().__new__(cls)

    # -- the contract: each layer binds its module's functions over these ------
    # ``Dense.forward = forward`` at the end of layers/dense.py; these only
    # declare the signatures (an instance of a class that leaves one of them
    # unbound cannot be made, see check_bound).

    def compute_shapes(self, X_shape: tuple[int, ...]) -> Layer:
        """Return this layer with ``input_shape`` set from ``X_shape`` (no batch axis).

        Bound per layer to its module's function (``Dense.compute_shapes`` is
        ``dense.compute_shapes``), like the four methods below.
        """
        raise _declaration_only(self, "compute_shapes")

    def initialize_parameters(self, key: jax.Array) -> Params:
        """Return the parameter dict ``p``."""
        raise _declaration_only(self, "initialize_parameters")

    def forward(
        self, p: Params, X: jax.Array, key: jax.Array | None = None, training: bool = False
    ) -> tuple[jax.Array, Cache]:
        """Return ``(A, fc)``."""
        raise _declaration_only(self, "forward")

    def backward(self, p: Params, fc: Cache, dA: jax.Array) -> tuple[jax.Array, Cache]:
        """Return ``(dX, bc)``."""
        raise _declaration_only(self, "backward")

    def compute_gradients(self, p: Params, fc: Cache, bc: Cache) -> Params:
        """Return the gradient dict ``g`` (``g['dW']`` shaped like ``p['W']``)."""
        raise _declaration_only(self, "compute_gradients")

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
        out = _abstract(_abstract_parameters, self)
        return {k: tuple(v.shape) for k, v in out.items()}

    def _abstract_forward(self, m: int, training: bool = False):
        self._require_built("shapes")
        return _abstract(_abstract_forward, self, m, training)

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


def _abstract_parameters(layer: Layer) -> Params:
    """``p``'s shapes and dtypes (``jax.ShapeDtypeStruct``), nothing drawn."""
    # The key is made inside the abstract trace: a concrete jax.random.key compiles
    # (once per process) before anything else is asked for.
    return jax.eval_shape(lambda: layer.initialize_parameters(jax.random.key(0)))


def _abstract_forward(layer: Layer, m: int, training: bool):
    """``(p, (A, fc))`` of a batch of ``m`` as shapes and dtypes, nothing computed."""
    p = _abstract(_abstract_parameters, layer)  # what param_shapes asks for: traced once
    X = jax.ShapeDtypeStruct((m, *layer.input_shape), float_dtype())
    return p, jax.eval_shape(lambda p, X: forward_result(
        layer, layer.forward(p, X, jax.random.key(0), training), X.shape), p, X)


def _abstract(fn, layer: Layer, *args):
    """``fn(layer, *args)``, an abstract evaluation, memoized for layers compared by value.

    ``fit``, ``predict`` and the model files ask for the same shapes of the same layers
    again and again; each ask traced the layer's code anew. A layer hashed by identity
    (``eq=False``, e.g. the facade's wrapper of a user's mutable layer object) or not
    hashable is evaluated every time.
    """
    params = getattr(type(layer), "__dataclass_params__", None)
    try:
        if params is None or not params.eq:
            raise TypeError
        hash(layer)
    except TypeError:
        return fn(layer, *args)
    return _abstract_memo(fn, layer, args, jax.dtypes.canonicalize_dtype(float))


@lru_cache(maxsize=4096)
def _abstract_memo(fn, layer: Layer, args: tuple, dtype):  # dtype: x64 on or off
    return fn(layer, *args)


def count(value: object, what: str, minimum: int = 1) -> int:
    """``value`` as a Python int when it is an integer >= ``minimum`` (a NumPy integer
    too, not a bool), else :class:`LayerError` naming ``what`` (such as
    ``'Dense: units'``). Layers keep Python ints: they are hashed as static arguments and
    written to model files."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise LayerError(f"{what} must be {kind}, got {value!r}")
    return int(value)


def initialization(value: object, layer: str) -> str:
    """``value`` as the name of a known initializer (a name, or one of
    :mod:`epynn_jax.maths.initializers`' functions), else :class:`LayerError` naming
    ``layer`` and its argument ``initialization``, as the other hyperparameters are."""
    try:
        return initializers.check_initializer(value, f"{layer}: initialization")
    except ValueError as err:
        raise LayerError(str(err)) from None


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


def check_X(layer: Layer, X: Any) -> None:
    """Raise a :class:`LayerError` naming the layer unless ``X`` is an array of shape
    ``(m, *layer.input_shape)``: the first line of a ``forward`` (shapes only, so it
    costs nothing at run time). An unbuilt layer's input is not checked."""
    shape = getattr(X, "shape", None)
    if shape is None:
        raise LayerError(f"{layer.name}: forward's X must be an array, got {_what(X)}")
    if len(shape) == 0 or (layer.built and tuple(shape[1:]) != layer.input_shape):
        sample = ", ".join(map(str, layer.input_shape or ("...",)))
        raise LayerError(f"{layer.name}: forward's X must have shape (m, {sample}), the "
                         f"layer was built for that; got shape {tuple(shape)}")


def check_dA(layer: Layer, fc: Cache, dA: Any) -> None:
    """Raise a :class:`LayerError` naming the layer unless ``dA`` has the shape of the
    output ``fc['A']``: the first line of a ``backward``."""
    expected = tuple(fc["A"].shape)
    if tuple(getattr(dA, "shape", (None,))) != expected:
        raise LayerError(f"{layer.name}: backward's dA must have the shape of the output A, "
                         f"{expected}; got {_what(dA)}")


def gradients_to_params(p: Params, g: Params) -> Params:
    """Map a gradient dict to the parameter keys: ``g['dW'] -> W`` (missing: zeros), as
    found (:func:`~epynn_jax.testing.check_layer` reports what is missing or misshapen;
    training takes :func:`checked_gradients`)."""
    return {
        k: (g["d" + k].reshape(v.shape).astype(v.dtype) if "d" + k in g else jnp.zeros_like(v))
        for k, v in p.items()
    }


# -- the contract, checked where a network runs a layer (shapes only: while tracing) ---------


def _what(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"an array of shape {tuple(shape)}" if shape is not None else type(value).__name__


def _pair(layer: Layer, out: Any, function: str, names: tuple[str, str]) -> tuple[Any, dict]:
    """``out``, what ``layer.<function>`` returned, once it is the pair ``names`` whose
    second value is a dict (the layer's cache); else :class:`LayerError` naming both."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise LayerError(f"{layer.name}: {function} must return the pair ({', '.join(names)}), "
                         f"got {_what(out)}" + (f" of {len(out)}" if isinstance(out, tuple)
                                                else ""))
    if not isinstance(out[1], Mapping):
        raise LayerError(f"{layer.name}: {function}'s {names[1]} must be a dict of its values, "
                         f"got {_what(out[1])}")
    return out


def forward_result(layer: Layer, out: Any, X_shape: tuple[int, ...]) -> tuple[Any, dict]:
    """``(A, fc)``, what ``layer.forward`` returned for an input of shape ``X_shape``, once
    it keeps the contract: a pair, ``A`` an array whose first axis is the batch's, ``fc``
    a dict; else :class:`LayerError` naming the layer (a broken custom layer)."""
    A, fc = _pair(layer, out, "forward", ("A", "fc"))
    shape = getattr(A, "shape", None)
    if shape is None or len(shape) == 0 or shape[0] != X_shape[0]:
        raise LayerError(f"{layer.name}: forward's A must keep the batch axis first: X has "
                         f"shape {tuple(X_shape)}, A is {_what(A)}")
    return A, fc


def backward_result(layer: Layer, out: Any, X_shape: tuple[int, ...]) -> tuple[Any, dict]:
    """``(dX, bc)``, what ``layer.backward`` returned, once it keeps the contract: a pair,
    ``dX`` of the shape of the layer's input X (``X_shape``), ``bc`` a dict; else
    :class:`LayerError` naming the layer (a smaller ``dX`` would broadcast in the layer
    before it and train it on wrong gradients, silently)."""
    dX, bc = _pair(layer, out, "backward", ("dX", "bc"))
    if tuple(getattr(dX, "shape", (None,))) != tuple(X_shape):
        raise LayerError(f"{layer.name}: backward's dX must have the shape of the layer's "
                         f"input X, {tuple(X_shape)}; got {_what(dX)}")
    return dX, bc


def checked_gradients(layer: Layer, p: Params, g: Any) -> Params:
    """``g['dW'] -> W`` for every parameter, each gradient in its parameter's dtype, once
    ``g`` (what ``compute_gradients`` returned) holds ``'d' + k`` of ``p[k]``'s shape for
    every ``k``; else :class:`LayerError` naming the layer (a missing gradient would leave
    the parameter untrained, a transposed one be scrambled by a reshape, silently)."""
    if not isinstance(g, Mapping):
        raise LayerError(f"{layer.name}: compute_gradients must return a dict "
                         f"{{'d' + parameter name: gradient}}, got {_what(g)}")
    out = {}
    for k, v in p.items():
        if "d" + k not in g:
            raise LayerError(f"{layer.name}: compute_gradients returned no 'd{k}' for the "
                             f"parameter {k!r} (its keys: {sorted(map(str, g))})")
        gk, shape = g["d" + k], tuple(jnp.shape(v))
        if tuple(getattr(gk, "shape", (None,))) != shape:
            raise LayerError(f"{layer.name}: compute_gradients' 'd{k}' must have the shape of "
                             f"the parameter {k!r}, {shape}; got {_what(gk)}")
        out[k] = gk.astype(jnp.result_type(v))
    return out


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _apply(layer: Layer, training: bool, p: Params, X: jax.Array, key):
    A, _ = forward_result(layer, layer.forward(p, X, key, training), X.shape)
    return A


def _apply_fwd(layer: Layer, training: bool, p: Params, X: jax.Array, key):
    A, fc = forward_result(layer, layer.forward(p, X, key, training), X.shape)
    return A, (p, fc, X)  # X: an input, kept alive anyway (fc may not hold it)


def _apply_bwd(layer: Layer, training: bool, res, dA):
    p, fc, X = res
    dX, bc = backward_result(layer, layer.backward(p, fc, dA), X.shape)
    g = layer.compute_gradients(p, fc, bc)
    return checked_gradients(layer, p, g), dX.astype(X.dtype), None


_apply.defvjp(_apply_fwd, _apply_bwd)


def apply(
    layer: Layer, p: Params, X: jax.Array, key: jax.Array | None = None, training: bool = False
) -> jax.Array:
    """``A = layer(X)``, differentiable by ``jax.grad`` through the hand-written backward.

    The VJP runs ``backward`` and ``compute_gradients``: reverse mode only.
    """
    return _apply(layer, training, p, X, key)
