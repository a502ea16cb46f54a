"""Mixed precision: a network's precision policy, and the casts at layer boundaries.

A :class:`Policy` names three dtypes, as Flax's ``dtype``/``param_dtype`` and
Keras' ``mixed_bfloat16`` do:

- ``compute_dtype``: what every layer's ``forward``, ``backward`` and
  ``compute_gradients`` run in. The layer's input ``X``, its parameters ``p``
  and the upstream gradient ``dA`` are cast to it at the layer's boundary, so
  the products (the dots and convolutions) run in it;
- ``param_dtype``: the parameters that ``network.init`` returns, so the
  optimizer state and the gradients handed to the optimizer (each ``g``,
  cast back at the boundary);
- ``output_dtype``: the network's output ``A``, which losses and metrics see:
  the loss, ``dL/dA`` and the metrics' reductions run in it.

``None`` (the default of each field) is the default float dtype (float32, or
float64 with ``jax_enable_x64``). ``Policy()``, the default, casts nothing: it
runs the network exactly as without a policy; any other policy casts at every
layer boundary, to the dtypes it names. ``param_dtype`` and ``output_dtype`` are
full precision (float32 or float64): an SGD step of ``1e-3`` relative size
vanishes in bfloat16's 8 bits, and the losses divide by outputs near 0 and 1.

The casts are written once, here (:func:`layer_forward`, :func:`layer_backward`,
:func:`cast`), and :mod:`~epynn_jax.network.model` runs every layer through
them: the hand-written layers need no dtype code of their own. Where a
computation needs more than the compute dtype, the maths do it where the
computation is: softmax and its backward run in float32 or wider
(:mod:`epynn_jax.maths.activations`), ``jnp.sum`` accumulates bfloat16 and
float16 in float32 (and so every ``db`` and the softmax's sums), and
Dropout draws its mask in float32 or wider (the same mask at every policy).
The recurrent layers' carried states (the LSTM's cell state ``C_``, the
backward's ``dh``/``dC``) stay in the compute dtype, as in Flax and Keras:
their error grows with the number of steps (see ``docs/mixed-precision.md``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from typing import Any

import jax
import jax.numpy as jnp

from epynn_jax.layers.base import (
    Layer,
    backward_result,
    checked_gradients,
    float_dtype,
    forward_result,
)

__all__ = ["Policy", "DTYPES", "FULL_DTYPES", "POLICY_NAMES", "as_policy", "cast",
           "layer_forward", "layer_backward", "policy_to_json", "policy_from_json"]

DTYPES = ("bfloat16", "float16", "float32", "float64")
"""The dtypes a policy may name."""

FULL_DTYPES = ("float32", "float64")
"""The dtypes ``param_dtype`` and ``output_dtype`` may name."""

POLICY_NAMES = {
    "bfloat16": ("bfloat16", None, None),
    "mixed_bfloat16": ("bfloat16", None, None),
    "float16": ("float16", None, None),
    "mixed_float16": ("float16", None, None),
    "float32": ("float32", "float32", "float32"),
    "float64": ("float64", "float64", "float64"),
}
"""Names :func:`as_policy` accepts, as ``(compute, param, output)`` dtypes (``None``: default)."""

_FIELDS = ("compute_dtype", "param_dtype", "output_dtype")

#: The package's directory: frames of files under it are the library's, not the user's.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel(*skip) -> int:
    """The ``stacklevel`` of a ``warnings.warn`` made in the function that calls this one
    that names the first frame outside ``epynn_jax`` (the user's line, whichever entry
    point of the library it went through), also passing frames running the code objects
    ``skip`` (a dataclass's generated ``__init__``, whose file is ``<string>``)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and (frame.f_code.co_filename.startswith(_PACKAGE)
                                        or frame.f_code in skip):
        frame, level = frame.f_back, level + 1
    return level


def _dtype_name(value: Any, field: str) -> str | None:
    """``value`` (a name, a NumPy/JAX dtype or scalar type, or None) as one of :data:`DTYPES`."""
    if value is None:
        return None
    try:
        name = jnp.dtype(value).name
    except (TypeError, ValueError):
        name = None
    allowed = FULL_DTYPES if field != "compute_dtype" else DTYPES
    if name not in allowed:
        why = ("; parameters and outputs stay at full precision (the optimizer's small "
               "updates vanish in 8 or 11 bits, and losses divide by outputs near 0 and 1)"
               if field != "compute_dtype" and name in DTYPES else "")
        raise ValueError(f"Policy: {field} must be None (the default float dtype) or one of "
                         f"{', '.join(allowed)}, got {value!r}{why}")
    return name


def _resolve(name: str | None):
    """The JAX dtype of ``name``, None the default float dtype (float64 is float32 without
    ``jax_enable_x64``, as everywhere in JAX)."""
    return float_dtype() if name is None else jax.dtypes.canonicalize_dtype(jnp.dtype(name))


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which dtype a network computes in, keeps its parameters in, and returns.

    Every field is a dtype name (``'bfloat16'``, ``'float16'``, ``'float32'``,
    ``'float64'``) or ``None``, the default float dtype (no cast). Hashable and
    static, like the network that holds it. ``Policy()`` is full precision;
    ``as_policy('bfloat16')`` is ``Policy(compute_dtype='bfloat16')``.
    """

    compute_dtype: str | None = None
    param_dtype: str | None = None
    output_dtype: str | None = None

    def __post_init__(self) -> None:
        # One conversion, where the policy is made: dtype objects become their names.
        for field in _FIELDS:
            object.__setattr__(self, field, _dtype_name(getattr(self, field), field))
        if "float64" in (self.compute_dtype, self.param_dtype, self.output_dtype) and \
                not jax.config.jax_enable_x64:
            warnings.warn(f"Policy {self}: float64 is float32 while JAX's 64-bit mode is off; "
                          "enable it first (jax.config.update('jax_enable_x64', True))",
                          UserWarning, stacklevel=user_stacklevel(Policy.__init__.__code__))

    @property
    def default(self) -> bool:
        """Whether this is ``Policy()``: nothing is cast anywhere."""
        return self == _DEFAULT

    @property
    def compute(self):
        """The dtype layers compute in, or None for ``Policy()`` (no cast)."""
        return None if self.default else _resolve(self.compute_dtype)

    @property
    def param(self):
        """The parameters' dtype, or None for ``Policy()`` (as the layers draw them)."""
        return None if self.default else _resolve(self.param_dtype)

    @property
    def output(self):
        """The output's dtype, or None for ``Policy()`` (as the last layer returns it)."""
        return None if self.default else _resolve(self.output_dtype)

    @property
    def mixed(self) -> bool:
        """Whether layers compute in a 16-bit float (bfloat16 or float16)."""
        return self.compute_dtype in ("bfloat16", "float16")

    def __str__(self) -> str:
        for name, fields in POLICY_NAMES.items():
            if fields == tuple(getattr(self, f) for f in _FIELDS):
                return name
        if self.default:
            return "default"
        return repr(self)


_DEFAULT = Policy()
jax.tree_util.register_static(Policy)


def as_policy(policy: Any, where: str = "policy") -> Policy:
    """``policy`` as a :class:`Policy`: a Policy, None (``Policy()``) or a name of
    :data:`POLICY_NAMES` (``'bfloat16'``, ``'mixed_bfloat16'``, ``'float16'``,
    ``'float32'``, ...). Anything else raises naming ``where``."""
    if policy is None:
        return Policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str) and policy in POLICY_NAMES:
        return Policy(*POLICY_NAMES[policy])
    raise (ValueError if isinstance(policy, str) else TypeError)(
        f"{where}: a precision policy is a Policy, None, or one of "
        f"{', '.join(map(repr, POLICY_NAMES))}; got {policy!r}")


def _is_float(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def cast(tree: Any, dtype) -> Any:
    """Every floating leaf of ``tree`` in ``dtype`` (``None``: ``tree`` unchanged).

    Integer, boolean and key leaves are left alone; a leaf already in ``dtype``
    costs nothing (``astype`` to its own dtype is no operation).
    """
    if dtype is None:
        return tree
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if _is_float(x) else x, tree)


def layer_forward(layer: Layer, policy: Policy, p: dict, X: jax.Array, key=None,
                  training: bool = False) -> tuple[jax.Array, dict]:
    """``(A, fc)`` of ``layer`` under ``policy``.

    ``p`` and ``X`` are cast to the compute dtype before the layer's ``forward``,
    and ``A`` after it (a custom layer that returns another float dtype is
    brought back). ``fc`` is the layer's own: a layer that keeps a float32
    value for its backward keeps it.
    """
    c = policy.compute
    if c is None:
        return forward_result(layer, layer.forward(p, X, key, training), X.shape)
    A, fc = forward_result(layer, layer.forward(cast(p, c), cast(X, c), key, training), X.shape)
    return cast(A, c), fc


def layer_backward(layer: Layer, policy: Policy, p: dict, fc: dict, dA: jax.Array,
                   output: bool = False) -> tuple[jax.Array, dict, dict]:
    """``(dX, bc, g)`` of ``layer`` under ``policy``: its ``backward`` then its
    ``compute_gradients``.

    ``p`` and ``dA`` are cast to the compute dtype before them; ``dX`` is
    returned in the compute dtype and every ``g['dk']`` in the dtype of
    ``p[k]`` (the parameters' dtype, so the optimizer gets float32 gradients).

    Under float16, the network's ``output`` layer takes ``dA`` (dL/dA, in the output
    dtype) as it is, so its backward runs in float32, as Keras advises for the last
    layer under mixed precision: EpyNN's cross-entropy derivative ``-Y / A`` is beyond
    float16's range (times the loss scale) as soon as an output is confidently wrong,
    and cast down it made most early steps of a float16 run skip.
    """
    c = policy.compute
    X_shape = (dA.shape[0], *layer.input_shape)  # (the contract's checks: shapes only)
    if c is None:
        dX, bc = backward_result(layer, layer.backward(p, fc, dA), X_shape)
        g = layer.compute_gradients(p, fc, bc)
        checked_gradients(layer, p, g)
        return dX, bc, g
    pc = cast(p, c)
    if not (output and jnp.dtype(c) == jnp.float16):
        dA = cast(dA, c)
    dX, bc = backward_result(layer, layer.backward(pc, fc, dA), X_shape)
    g = layer.compute_gradients(pc, fc, bc)
    checked_gradients(layer, p, g)
    g = {k: v.astype(p[k[1:]].dtype) if k[1:] in p and _is_float(v) else v
         for k, v in g.items()}
    return cast(dX, c), bc, g


# -- model files ------------------------------------------------------------------------------


def policy_to_json(policy: Policy) -> dict:
    """``{'compute_dtype': ..., 'param_dtype': ..., 'output_dtype': ...}`` (names or None)."""
    return {field: getattr(policy, field) for field in _FIELDS}


def policy_from_json(doc: Any) -> Policy:
    """The policy of :func:`policy_to_json`'s dict; ``ValueError`` for anything else
    (missing or unknown keys, a dtype outside :data:`DTYPES`)."""
    if not isinstance(doc, dict) or set(doc) != set(_FIELDS):
        keys = sorted(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"policy must be an object with the keys {', '.join(_FIELDS)}, "
                         f"got {keys}")
    for field in _FIELDS:
        if doc[field] is not None and not (isinstance(doc[field], str)
                                           and doc[field] in DTYPES):
            raise ValueError(f"policy {field} must be null or one of {', '.join(DTYPES)}, "
                             f"got {repr(doc[field])[:80]}")
    return Policy(*(doc[field] for field in _FIELDS))
