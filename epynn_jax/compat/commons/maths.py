"""Activations, initializers and helpers with EpyNN's call signatures.

Activations are callables ``f(x, deriv=False)`` on NumPy arrays (``deriv=True``
gives dA/dZ; for softmax the per-sample Jacobian (m, n, n)). Passed to a
built-in layer (``Dense(2, softmax)``) they are mapped **by name** to the
functional layer's activation; called directly (in a custom layer) they
compute in NumPy, reading ``LRELU_alpha``, ``ELU_alpha`` and
``softmax_temperature`` from the hyperparameters last given to
:func:`activation_tune` (EpyNN's defaults otherwise).

- ``xavier(shape, rng)``: N(0, 1) * sqrt(2 / sum(shape)), drawn like EpyNN;
- ``orthogonal(shape, rng)``: Q of a QR decomposition, sign-corrected;
- ``clip_gradient(layer, max_norm=0.25)``: per-layer global-norm clipping of ``layer.g``;
- ``hadamard(dA, dLinear)``: dA * f'(Z), or the Jacobian product for softmax.
"""

from __future__ import annotations

import numpy as np

from epynn_jax.compat.settings import se_hPars as _DEFAULTS
from epynn_jax.maths import initializers

__all__ = [
    "E_SAFE", "activation_tune", "hadamard", "identity", "relu", "lrelu", "elu", "sigmoid",
    "tanh", "softmax", "xavier", "orthogonal", "clip_gradient", "ACTIVATIONS",
    "activation_name",
]

E_SAFE = 1e-16

layer_hPars: dict = dict(_DEFAULTS)


def activation_tune(se_hPars: dict | None) -> None:
    """Set the hyperparameters that ``lrelu``, ``elu`` and ``softmax`` read."""
    global layer_hPars
    layer_hPars = {**_DEFAULTS, **(se_hPars or {})}


def hadamard(dA: np.ndarray, dLinear: np.ndarray) -> np.ndarray:
    """dZ from dA and f'(Z): element-wise for 2-D f'; Jacobian product for (m, n, n)."""
    if np.ndim(dLinear) == 3:
        return np.einsum("mi,mij->mj", dA, dLinear)
    return dA * dLinear


class Activation:
    """A named activation ``f(x, deriv=False)`` (NumPy), addressable by name."""

    def __init__(self, name: str, fn, deriv) -> None:
        self.__name__ = self.__qualname__ = name
        self._fn, self._deriv = fn, deriv

    def __call__(self, x, deriv: bool = False) -> np.ndarray:
        x = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float32))
        return self._deriv(x) if deriv else self._fn(x)

    def __repr__(self) -> str:
        return f"<activation {self.__name__}>"

    def __reduce__(self):
        return self.__name__


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x):
    T = layer_hPars["softmax_temperature"]
    z = np.exp((x - np.max(x, axis=1, keepdims=True)) / T)
    return z / np.sum(z, axis=1, keepdims=True)


def _softmax_jacobian(x):
    s = _softmax(x)
    return np.einsum("mi,ij->mij", s, np.eye(s.shape[1])) - s[:, :, None] * s[:, None, :]


identity = Activation("identity", lambda x: x, np.ones_like)
relu = Activation("relu", lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(x.dtype))
lrelu = Activation(
    "lrelu",
    lambda x: np.where(x > 0, x, layer_hPars["LRELU_alpha"] * x),
    lambda x: np.where(x > 0, 1.0, layer_hPars["LRELU_alpha"]).astype(x.dtype),
)
elu = Activation(
    "elu",
    lambda x: np.where(x > 0, x, layer_hPars["ELU_alpha"] * np.expm1(np.minimum(x, 0))),
    lambda x: np.where(x > 0, 1.0, layer_hPars["ELU_alpha"] * np.exp(np.minimum(x, 0))),
)
sigmoid = Activation("sigmoid", _sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x)))
tanh = Activation("tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2)
softmax = Activation("softmax", _softmax, _softmax_jacobian)

ACTIVATIONS = {f.__name__: f for f in (identity, relu, lrelu, elu, sigmoid, tanh, softmax)}


def xavier(shape, rng=np.random) -> np.ndarray:
    """EpyNN's xavier draw: N(0, 1) * sqrt(2 / sum(shape)) from ``rng``."""
    return initializers.xavier_np(rng, tuple(shape))


def orthogonal(shape, rng=np.random) -> np.ndarray:
    """EpyNN's orthogonal draw (2-D) from ``rng``."""
    return initializers.orthogonal_np(rng, tuple(shape))


def clip_gradient(layer, max_norm: float = 0.25) -> None:
    """Scale every ``layer.g`` entry by max_norm / norm when the global norm exceeds it."""
    total = np.sqrt(sum(np.sum((np.asarray(g) + E_SAFE) ** 2) for g in layer.g.values()))
    coef = max_norm / (total + E_SAFE)
    if coef < 1:
        for k in layer.g:
            layer.g[k] = layer.g[k] * coef


def name_of(fn, what: str = "activation") -> str:
    """The name of an activation/initializer given as a callable or a string."""
    if isinstance(fn, str):
        return fn
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"{what}: expected a function such as relu or a name, got {fn!r}")
    return name


def activation_name(fn, where: str) -> str:
    """The functional layer's activation for ``fn``: a name, or one of this module's
    activations (``epynn.commons.maths.relu``), by its name.

    A built-in layer computes its activation in JAX from the name, so a function of
    the user's own is refused, even one named like a built-in (a scaled ``tanh``
    would otherwise be replaced by the standard one without a word); such an
    activation belongs in a custom layer.
    """
    name = name_of(fn, where)
    if not isinstance(fn, str) and name in ACTIVATIONS and fn is not ACTIVATIONS[name]:
        raise ValueError(
            f"{where}: {fn!r} is not epynn.commons.maths.{name}: a built-in layer runs only "
            f"the library's own activations (by name, compiled); pass "
            f"epynn.commons.maths.{name}, or write a custom layer for your own function")
    return name
