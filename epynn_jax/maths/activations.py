"""Activation functions and their derivatives.

Every activation is addressed by name (``'relu'``, ``'softmax'``, ...) so that
layers stay hashable. ``activate(name, Z, hp)`` computes ``A = f(Z)``;
``derivative(name, Z, hp)`` computes the element-wise ``f'(Z)``; and
``backprop(name, dA, Z, A, hp)`` computes ``dZ = dL/dZ`` from ``dA = dL/dA``,
which for element-wise activations is ``dA * f'(Z)`` and for softmax is the
Jacobian-vector product ``dZ = A * (dA - sum(dA * A)) / T``.

All functions are numerically stable for large ``|Z|`` (EpyNN's literal
``tanh`` returns NaN beyond about 710).

Every function returns the dtype of its input. Softmax and its backward compute
in float32 at least (:func:`wide`) and round the result to the input's dtype: in
bfloat16 or float16 (mixed precision, see :mod:`epynn_jax.network.precision`)
the exponentials, their sum and the sum ``sum(dA * A)`` of the backward would
each lose most of their digits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

__all__ = [
    "ActivationHPars",
    "ACTIVATIONS",
    "activate",
    "derivative",
    "backprop",
    "check_activation",
    "identity",
    "relu",
    "lrelu",
    "elu",
    "sigmoid",
    "tanh",
    "softmax",
    "wide",
]


@dataclass(frozen=True)
class ActivationHPars:
    """Hyperparameters read by activations (EpyNN's ``se_hPars`` keys).

    ``epynn_softmax_grad=True`` reproduces EpyNN's softmax backward, which
    omits the ``1/T`` factor (its gradient is ``T`` times the exact one); the
    default is the exact gradient.

    The alphas are finite real numbers, the temperature a finite number > 0 and
    ``epynn_softmax_grad`` a bool (NumPy scalars count, kept as Python floats;
    bools are not numbers): a wrong type raises ``TypeError``, a value out of
    range ``ValueError``, each naming the field, where the hyperparameters are
    made.
    """

    ELU_alpha: float = 1.0
    LRELU_alpha: float = 0.3
    softmax_temperature: float = 1.0
    epynn_softmax_grad: bool = False

    def __post_init__(self) -> None:
        for field in ("ELU_alpha", "LRELU_alpha", "softmax_temperature"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"ActivationHPars: {field} must be a real number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"ActivationHPars: {field} must be finite, got {value!r}")
            # a Python float: a NumPy scalar (np.float32(0.2)) is strongly typed in JAX and
            # promoted a bfloat16 layer's activation to float32 (and hashed unlike 0.2)
            object.__setattr__(self, field, float(value))
        if not self.softmax_temperature > 0:
            raise ValueError(f"ActivationHPars: softmax_temperature must be > 0, "
                             f"got {self.softmax_temperature!r}")
        if not isinstance(self.epynn_softmax_grad, bool):
            raise TypeError(f"ActivationHPars: epynn_softmax_grad must be True or False, "
                            f"got {self.epynn_softmax_grad!r}")


DEFAULT_HPARS = ActivationHPars()


def identity(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """A = Z."""
    return x


def identity_deriv(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """dA/dZ = 1."""
    return jnp.ones_like(x)


def relu(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """A = max(0, Z)."""
    return jnp.maximum(x, 0)


def relu_deriv(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """dA/dZ = 1 where Z > 0 else 0 (in the input's float dtype)."""
    return (x > 0).astype(x.dtype)


def lrelu(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """A = Z where Z > 0 else a * Z, with a = ``LRELU_alpha``."""
    return jnp.where(x > 0, x, hp.LRELU_alpha * x)


def lrelu_deriv(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """dA/dZ = 1 where Z > 0 else a."""
    return jnp.where(x > 0, jnp.ones_like(x), jnp.full_like(x, hp.LRELU_alpha))


def elu(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """A = Z where Z > 0 else a * (exp(Z) - 1), with a = ``ELU_alpha``."""
    return jnp.where(x > 0, x, hp.ELU_alpha * jnp.expm1(jnp.minimum(x, 0)))


def elu_deriv(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """dA/dZ = 1 where Z > 0 else a * exp(Z) (= elu(Z) + a)."""
    return jnp.where(x > 0, jnp.ones_like(x), hp.ELU_alpha * jnp.exp(jnp.minimum(x, 0)))


def sigmoid(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """A = 1 / (1 + exp(-Z)), stable for large |Z|."""
    return jax.nn.sigmoid(x)


def sigmoid_deriv(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """dA/dZ = s(Z) * (1 - s(Z))."""
    s = jax.nn.sigmoid(x)
    return s * (1 - s)


def tanh(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """A = tanh(Z), stable for large |Z|."""
    return jnp.tanh(x)


def tanh_deriv(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """dA/dZ = 1 - tanh(Z)^2."""
    return 1 - jnp.tanh(x) ** 2


def wide(dtype):
    """``dtype``, or float32 when it is narrower (bfloat16, float16)."""
    return jnp.promote_types(dtype, jnp.float32)


def softmax(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """A = exp((Z - max Z) / T) / sum(exp((Z - max Z) / T)) over the last axis.

    Computed in float32 at least (:func:`wide`), returned in the dtype of ``x``.
    """
    dtype = jnp.result_type(x, float)  # a float input's own dtype
    xw = jnp.asarray(x, wide(dtype))
    z = (xw - jax.lax.stop_gradient(jnp.max(xw, axis=-1, keepdims=True))) / hp.softmax_temperature
    e = jnp.exp(z)
    return (e / jnp.sum(e, axis=-1, keepdims=True)).astype(dtype)


def softmax_deriv(x: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """Per-sample Jacobian dA_i/dZ_j = (diag(s) - s s^T) / T, shape (..., n, n).

    With ``epynn_softmax_grad`` the ``1/T`` factor is omitted, as in EpyNN.
    """
    s = softmax(x, hp)
    jac = jnp.einsum("...i,ij->...ij", s, jnp.eye(s.shape[-1], dtype=s.dtype))
    jac = jac - s[..., :, None] * s[..., None, :]
    return jac if hp.epynn_softmax_grad else jac / hp.softmax_temperature


ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "identity": (identity, identity_deriv),
    "relu": (relu, relu_deriv),
    "lrelu": (lrelu, lrelu_deriv),
    "elu": (elu, elu_deriv),
    "sigmoid": (sigmoid, sigmoid_deriv),
    "tanh": (tanh, tanh_deriv),
    "softmax": (softmax, softmax_deriv),
}


def check_activation(name: object, where: str = "activation") -> str:
    """Return ``name`` if it is a known activation, else raise a clear error.

    Accepts a name or one of this module's functions (as EpyNN passes them).
    """
    if callable(name) and getattr(name, "__name__", None) in ACTIVATIONS:
        name = name.__name__
    if not isinstance(name, str):
        raise TypeError(f"{where}: activation must be a name such as 'relu', got {name!r}")
    if name not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"{where}: unknown activation {name!r}; known: {known}")
    return name


def activate(name: str, Z: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """A = f(Z) for the activation called ``name``."""
    return ACTIVATIONS[name][0](Z, hp)


def derivative(name: str, Z: jax.Array, hp: ActivationHPars = DEFAULT_HPARS) -> jax.Array:
    """f'(Z): element-wise, or the per-sample Jacobian (..., n, n) for softmax."""
    return ACTIVATIONS[name][1](Z, hp)


def backprop(
    name: str, dA: jax.Array, Z: jax.Array, A: jax.Array, hp: ActivationHPars = DEFAULT_HPARS
) -> jax.Array:
    """dZ = dL/dZ from dA = dL/dA (same shape as Z).

    Element-wise activations: dZ = dA * f'(Z). Softmax (over the last axis):
    dZ_j = sum_i dA_i J_ij = A_j (dA_j - sum_i dA_i A_i) / T, the Jacobian
    product without building the (n, n) Jacobian.
    """
    if name == "softmax":  # in float32 at least, like softmax itself
        dtype = jnp.result_type(dA, A, float)
        dAw, Aw = jnp.asarray(dA, wide(dtype)), jnp.asarray(A, wide(dtype))
        dZ = Aw * (dAw - jnp.sum(dAw * Aw, axis=-1, keepdims=True))
        dZ = dZ if hp.epynn_softmax_grad else dZ / hp.softmax_temperature
        return dZ.astype(dtype)
    return dA * ACTIVATIONS[name][1](Z, hp)
