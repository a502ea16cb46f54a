"""Loss functions: per-sample values and dL/dA, as EpyNN defines them.

Each loss takes labels ``Y`` and outputs ``A`` of shape (m, ...) and returns a
per-sample vector (m,). ``U`` is the number of output values per sample. The
derivative ``dL/dA`` is the derivative of the per-sample loss, so summed over
the batch the training objective is ``sum_i L_i`` (no ``1/m``); the reported
cost is the mean of the per-sample values.

======  ===============================================  =========================================
name    per-sample loss                                  dL/dA
======  ===============================================  =========================================
MSE     (1/U) sum (Y - A)^2                              -(2/U) (Y - A)
MAE     (1/U) sum |Y - A|                                -(1/U) (Y - A) / (|Y - A| + eps)
MSLE    (1/U) sum (log1p Y - log1p A)^2                  -(2/U) (log1p Y - log1p A) / (A + 1)
CCE     -sum Y log(A + eps)                              -Y / A
BCE     -(1/U) sum Y log(A+eps) + (1-Y) log(1-A+eps)     (1/U) (A - Y) / (A (1 - A) + eps)
======  ===============================================  =========================================

with eps = 1e-16 (EpyNN's ``E_SAFE``).

**Working precision.** ``eps`` alone protects nothing at float32: ``1 - A + 1e-16``
is ``1 - A`` there (float32 resolves 6e-8 next to 1), and a float32 softmax or
sigmoid can return 1.0000001 or exactly 0 or 1, where EpyNN's formulas give NaN
or inf (and a wrongly signed BCE gradient past 1). The losses that take a log or
divide by ``A`` therefore first clip ``A`` into its valid range with a margin
``delta = finfo(A.dtype).eps`` (1.2e-7 at float32, 2.2e-16 at float64): BCE into
``[delta, 1 - delta]``, CCE into ``[delta, 1]``, MSLE above ``-1 + delta``. At
float64 the clip moves only outputs within 2.2e-16 of the edges, so EpyNN's values
are kept for everything else; at float32 values and derivatives stay finite
(``|dL/dA| <= 1 / delta`` per unit for BCE and CCE). Outside the clip range the
derivative is the one at the range's edge, so it still points back into it.
MAE's ``eps`` is at least the dtype's smallest normal number (1e-16 is 0 in float16).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["E_SAFE", "LOSSES", "loss", "loss_deriv", "check_loss", "margin"]

E_SAFE = 1e-16


def _units(A: jax.Array) -> int:
    n = 1
    for s in A.shape[1:]:
        n *= s
    return n


def _sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], _units(x)), axis=1)  # m may be 0


def margin(dtype) -> float:
    """The clip margin ``delta`` for outputs of ``dtype``: its machine epsilon.

    The smallest step the dtype resolves above 1 (1.2e-7 for float32, 2.2e-16
    for float64); integer dtypes use the default float's.
    """
    return float(jnp.finfo(_floating(dtype)).eps)


def _floating(dtype):
    dtype = np.dtype(dtype)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def _clip(A: jax.Array, low: float | None, high: float | None) -> jax.Array:
    # ``low``/``high`` are offsets by delta: the valid range shrunk by one margin.
    A = jnp.asarray(A)
    delta = margin(A.dtype)
    return jnp.clip(A, None if low is None else low + delta,
                    None if high is None else high - delta)


def MSE(Y: jax.Array, A: jax.Array) -> jax.Array:
    """Mean squared error per sample."""
    return _sum((Y - A) ** 2) / _units(A)


def MSE_deriv(Y: jax.Array, A: jax.Array) -> jax.Array:
    return -2.0 * (Y - A) / _units(A)


def MAE(Y: jax.Array, A: jax.Array) -> jax.Array:
    """Mean absolute error per sample."""
    return _sum(jnp.abs(Y - A)) / _units(A)


def MAE_deriv(Y: jax.Array, A: jax.Array) -> jax.Array:
    # eps no smaller than the dtype's smallest normal number: 1e-16 is 0 in float16,
    # and 0 / 0 where A == Y. Float32 and float64 keep EpyNN's 1e-16.
    eps = max(E_SAFE, float(jnp.finfo(_floating(jnp.asarray(A).dtype)).tiny))
    return -(Y - A) / (jnp.abs(Y - A) + eps) / _units(A)


def MSLE(Y: jax.Array, A: jax.Array) -> jax.Array:
    """Mean squared logarithmic error per sample (``A`` clipped above ``-1 + delta``)."""
    Ac = _clip(A, -1.0, None)
    return _sum((jnp.log1p(Y) - jnp.log1p(Ac)) ** 2) / _units(A)


def MSLE_deriv(Y: jax.Array, A: jax.Array) -> jax.Array:
    Ac = _clip(A, -1.0, None)
    return -2.0 * (jnp.log1p(Y) - jnp.log1p(Ac)) / (Ac + 1.0) / _units(A)


def CCE(Y: jax.Array, A: jax.Array) -> jax.Array:
    """Categorical cross-entropy per sample (``A`` clipped into ``[delta, 1]``)."""
    Ac = jnp.minimum(_clip(A, 0.0, None), 1.0)
    return -_sum(Y * jnp.log(Ac + E_SAFE))


def CCE_deriv(Y: jax.Array, A: jax.Array) -> jax.Array:
    Ac = jnp.minimum(_clip(A, 0.0, None), 1.0)
    return -Y / Ac


def BCE(Y: jax.Array, A: jax.Array) -> jax.Array:
    """Binary cross-entropy per sample (``A`` clipped into ``[delta, 1 - delta]``)."""
    Ac = _clip(A, 0.0, 1.0)
    return -_sum(Y * jnp.log(Ac + E_SAFE) + (1 - Y) * jnp.log(1 - Ac + E_SAFE)) / _units(A)


def BCE_deriv(Y: jax.Array, A: jax.Array) -> jax.Array:
    Ac = _clip(A, 0.0, 1.0)
    # A (1 - A), not EpyNN's A - A^2: the same at float64 (to 1e-15 relative), and
    # without the cancellation that loses most digits near A = 1 at float32.
    return (Ac - Y) / (Ac * (1 - Ac) + E_SAFE) / _units(A)


LOSSES: dict[str, tuple[Callable, Callable]] = {
    "MSE": (MSE, MSE_deriv),
    "MAE": (MAE, MAE_deriv),
    "MSLE": (MSLE, MSLE_deriv),
    "CCE": (CCE, CCE_deriv),
    "BCE": (BCE, BCE_deriv),
}


def check_loss(name: object, output_activation: str | None = None) -> str:
    """Validate a loss name against the output activation, as EpyNN does.

    CCE needs a softmax output; CCE, BCE and MSLE refuse a tanh output (its
    negative values have no logarithm).
    """
    if callable(name) and getattr(name, "__name__", None) in LOSSES:
        name = name.__name__
    if not isinstance(name, str):
        raise TypeError(f"loss must be a name such as 'MSE', got {name!r}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    if name == "CCE" and output_activation is not None and output_activation != "softmax":
        raise ValueError(
            f"loss 'CCE' needs a softmax output layer, got output activation "
            f"{output_activation!r}"
        )
    if name in ("CCE", "BCE", "MSLE") and output_activation == "tanh":
        raise ValueError(f"loss {name!r} cannot be used with a tanh output (values < 0)")
    return name


def loss(name: str, Y: jax.Array, A: jax.Array) -> jax.Array:
    """Per-sample loss values, shape (m,)."""
    return LOSSES[name][0](Y, A)


def loss_deriv(name: str, Y: jax.Array, A: jax.Array) -> jax.Array:
    """dL_i/dA for each sample i, shape of A."""
    return LOSSES[name][1](Y, A)
