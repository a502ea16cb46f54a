"""Weight initializers, as EpyNN defines them, drawing from a JAX key.

- ``xavier``: W = N(0, 1) * sqrt(2 / sum(shape)). The sum runs over *all*
  dimensions (for a kernel (fh, fw, c, u) this is not Glorot's fan-in + fan-out).
- ``orthogonal``: the Q of a QR decomposition of an N(0, 1) matrix (transposed
  when rows < cols), columns multiplied by sign(diag(R)); no gain.
- ``zeros``.

``*_np`` variants take a ``numpy.random.Generator`` and draw exactly as EpyNN
does, for the compatibility facade's reproducibility.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.maths import prng

__all__ = ["INITIALIZERS", "xavier", "orthogonal", "zeros", "check_initializer"]


def _dtype(dtype):
    return jax.dtypes.canonicalize_dtype(dtype if dtype is not None else float)


def xavier(key: jax.Array, shape: tuple[int, ...], dtype=None) -> jax.Array:
    """N(0, 1) * sqrt(2 / sum(shape))."""
    dt = _dtype(dtype)
    # The barrier keeps XLA from folding the scale into the draw's own constant factor
    # when init is compiled as one program: the values stay those drawn op by op.
    draw = jax.lax.optimization_barrier(prng.normal(key, shape, dt))
    return draw * jnp.sqrt(jnp.asarray(2.0 / sum(shape), dt))


def _orthogonalize(W):
    rows, cols = W.shape
    W = W.T if rows < cols else W
    q, r = jnp.linalg.qr(W)
    q = q * jnp.sign(jnp.diag(r))
    return q.T if rows < cols else q


def orthogonal(key: jax.Array, shape: tuple[int, ...], dtype=None) -> jax.Array:
    """Orthogonal matrix from the QR decomposition of an N(0, 1) draw (2-D shapes)."""
    if len(shape) != 2:
        raise ValueError(f"orthogonal initialization needs a 2-D shape, got {shape}")
    dt = _dtype(dtype)
    return _orthogonalize(prng.normal(key, shape, dt))


def zeros(key: jax.Array, shape: tuple[int, ...], dtype=None) -> jax.Array:
    """All zeros (the key is unused)."""
    return jnp.zeros(shape, _dtype(dtype))


def xavier_np(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """EpyNN's xavier draw from a NumPy generator (float64)."""
    return rng.standard_normal(shape) * np.sqrt(2 / sum(shape))


def orthogonal_np(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """EpyNN's orthogonal draw from a NumPy generator (float64)."""
    W = rng.standard_normal(shape)
    W = W.T if shape[0] < shape[1] else W
    q, r = np.linalg.qr(W)
    q = q * np.sign(np.diag(r))
    return q.T if shape[0] < shape[1] else q


INITIALIZERS: dict[str, Callable] = {"xavier": xavier, "orthogonal": orthogonal, "zeros": zeros}
NP_INITIALIZERS: dict[str, Callable] = {"xavier": xavier_np, "orthogonal": orthogonal_np}


def check_initializer(name: object, where: str = "initialization") -> str:
    """Return ``name`` if it is a known initializer (name or function), else raise."""
    if callable(name) and getattr(name, "__name__", None) in INITIALIZERS:
        name = name.__name__
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(
            f"{where}: unknown initializer {name!r}; known: {', '.join(INITIALIZERS)}"
        )
    return name
