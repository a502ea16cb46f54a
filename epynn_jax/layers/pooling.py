"""Pooling: max, min or mean over 2-D windows of NHWC images, channel by channel.

Shapes (m = batch, h, w = input height and width, c = channels, ph, pw = pool
size, sh, sw = strides): X (m, h, w, c); Z = A (m, oh, ow, c) with
``oh = (h - ph) // sh + 1`` and ``ow = (w - pw) // sw + 1`` (trailing
rows/columns that do not fill a window are dropped, as in EpyNN).

Forward, for the window ``X[m, i*sh : i*sh + ph, j*sw : j*sw + pw, c]``::

    Z[m, i, j, c] = max / min / mean of the window;  A = Z

Backward (dA = dL/dA from the next layer), summed over overlapping windows::

    max, min: dX[m, i*sh + a, j*sw + b, c] += dA[m, i, j, c] * mask
              with mask = (X[m, i*sh + a, j*sw + b, c] == Z[m, i, j, c])
    mean:     dX[m, i*sh + a, j*sw + b, c] += dA[m, i, j, c] / (ph * pw)

Tie rule (EpyNN's, kept): with max or min pooling, *every* element equal to
the window's max (min) receives the full ``dA`` of that window, so ties count
the gradient more than once (the derivative is undefined there; autodiff would
pick one element). Inputs without ties get the exact gradient.

Differences from EpyNN 1.2.13: an int ``strides`` is honoured (EpyNN replaces
it with the pool size); mean pooling has the correct gradient above (EpyNN's
backward for ``np.mean`` masks elements equal to the mean); EpyNN's
``fc['Xb']`` window tensor is not stored.

Implementation: when the windows tile the input (strides == pool size, the
default) X is reshaped to (m, oh, ph, ow, pw, c) and reduced over the window
axes; the backward is one masked broadcast reshaped back. Otherwise, for each
of the ph*pw window offsets (a, b), the strided slice ``X[:, a::sh, b::sw, :]``
(oh x ow positions) is reduced element-wise, and the backward adds each
offset's contribution back at its strided places (an interior-padded
``lax.pad``, the transpose of the strided slice).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from epynn_jax.layers._windows import MAX_OFFSETS, offset_slice, offset_unslice, pair
from epynn_jax.layers.base import Layer, LayerError, check_dA, check_input, check_X

__all__ = ["Pooling"]

POOLS = ("max", "min", "mean")
_POOL_NAMES = {"max": "max", "amax": "max", "min": "min", "amin": "min", "mean": "mean"}


def check_pool(pool: object) -> str:
    """'max', 'min' or 'mean' from a name or a function such as ``np.max``/``jnp.mean``."""
    name = getattr(pool, "__name__", None) if callable(pool) else pool
    if not isinstance(name, str) or name not in _POOL_NAMES:
        raise LayerError(f"Pooling: pool must be one of {POOLS} (or np.max, np.min, np.mean), "
                         f"got {pool!r}")
    return _POOL_NAMES[name]


@dataclasses.dataclass(frozen=True)
class Pooling(Layer):
    """Pool windows of ``pool_size`` at ``strides`` (default ``pool_size``) with ``pool``."""

    uses_key = False  # draws nothing (see Layer.uses_key)

    pool_size: tuple[int, int] = (2, 2)
    strides: tuple[int, int] | None = None
    pool: str = "max"

    def __post_init__(self) -> None:
        pool_size = pair(self.pool_size, "pool_size", "Pooling")
        strides = pool_size if self.strides is None else pair(self.strides, "strides", "Pooling")
        object.__setattr__(self, "pool_size", pool_size)
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "pool", check_pool(self.pool))
        if strides != pool_size and pool_size[0] * pool_size[1] > MAX_OFFSETS:
            raise LayerError(f"Pooling: pool_size {pool_size} with strides {strides}: windows "
                             "that do not tile the input are computed one offset at a time, "
                             f"at most {MAX_OFFSETS} offsets (64 x 64); use strides equal to "
                             "pool_size (the default) or a smaller pool")

    @property
    def d(self) -> dict:
        h, w, c = self._require_built("d")
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return {"ph": ph, "pw": pw, "sh": sh, "sw": sw, "h": h, "w": w, "d": c,
                "oh": (h - ph) // sh + 1, "ow": (w - pw) // sw + 1}


def compute_shapes(layer: Pooling, X_shape: tuple[int, ...]) -> Pooling:
    """Input must be (m, h, w, c) with h >= ph and w >= pw."""
    check_input(layer, X_shape, 3)
    h, w, _ = X_shape
    if layer.pool_size[0] > h or layer.pool_size[1] > w:
        raise LayerError(f"Pooling: pool_size {layer.pool_size} is larger than the input "
                         f"(h, w) = {(h, w)}")
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: Pooling, key: jax.Array) -> dict:
    """No parameters."""
    return {}


def _offsets(layer: Pooling):
    """The window offsets (a, b), row-major."""
    ph, pw = layer.pool_size
    return [(a, b) for a in range(ph) for b in range(pw)]


def _offset_slice(layer: Pooling, X: jax.Array, a: int, b: int) -> jax.Array:
    """X[:, a + i*sh, b + j*sw, :] for i < oh, j < ow: shape (m, oh, ow, c)."""
    _, h, w, _ = X.shape
    (ph, pw), (sh, sw) = layer.pool_size, layer.strides
    return offset_slice(X, a, b, (h - ph) // sh + 1, (w - pw) // sw + 1, sh, sw)


def _offset_unslice(layer: Pooling, piece: jax.Array, a: int, b: int, h: int, w: int):
    """Transpose of :func:`_offset_slice`: piece (m, oh, ow, c) placed in zeros (m, h, w, c)."""
    return offset_unslice(piece, a, b, h, w, *layer.strides)


def _tiled(layer: Pooling) -> bool:
    """Whether windows tile the input (strides == pool size, the default)."""
    return layer.strides == layer.pool_size


def _blocks(layer: Pooling, X: jax.Array) -> jax.Array:
    """Tiled windows as (m, oh, ph, ow, pw, c): a reshape of the used input."""
    m, h, w, c = X.shape
    ph, pw = layer.pool_size
    oh, ow = h // ph, w // pw
    return X[:, :oh * ph, :ow * pw, :].reshape(m, oh, ph, ow, pw, c)


def _pool(layer: Pooling, x: jax.Array, axis) -> jax.Array:
    return {"max": jnp.max, "min": jnp.min, "mean": jnp.mean}[layer.pool](x, axis=axis)


def forward(layer: Pooling, p: dict, X: jax.Array, key=None, training: bool = False):
    """Z = A = pool of each window. ``fc = {'X', 'Z', 'A'}``."""
    check_X(layer, X)
    if _tiled(layer):
        Z = _pool(layer, _blocks(layer, X), (2, 4))
        return Z, {"X": X, "Z": Z, "A": Z}
    pieces = [_offset_slice(layer, X, a, b) for a, b in _offsets(layer)]
    if layer.pool == "mean":
        Z = functools.reduce(jnp.add, pieces) / len(pieces)
    else:
        Z = functools.reduce(jnp.maximum if layer.pool == "max" else jnp.minimum, pieces)
    return Z, {"X": X, "Z": Z, "A": Z}


def _tiled_backward(layer: Pooling, X: jax.Array, Z: jax.Array, dA: jax.Array) -> jax.Array:
    """dX for tiled windows: one masked (or scaled) broadcast of dA, reshaped back."""
    m, h, w, c = X.shape
    ph, pw = layer.pool_size
    oh, ow = Z.shape[1], Z.shape[2]
    dA6 = dA[:, :, None, :, None, :]
    if layer.pool == "mean":
        dXb = jnp.broadcast_to(dA6 / (ph * pw), (m, oh, ph, ow, pw, c))
    else:
        mask = _blocks(layer, X) == Z[:, :, None, :, None, :]
        dXb = jnp.where(mask, dA6, jnp.zeros((), dA.dtype))
    dXu = dXb.reshape(m, oh * ph, ow * pw, c)
    return jnp.pad(dXu, ((0, 0), (0, h - oh * ph), (0, w - ow * pw), (0, 0)))


def backward(layer: Pooling, p: dict, fc: dict, dA: jax.Array):
    """dX: each window's dA sent to its max/min elements (all ties), or dA/(ph*pw) to each
    element for mean; summed over overlapping windows. ``bc = {'dA', 'dX'}``."""
    check_dA(layer, fc, dA)
    X, Z = fc["X"], fc["Z"]
    if _tiled(layer):
        dX = _tiled_backward(layer, X, Z, dA)
        return dX, {"dA": dA, "dX": dX}
    _, h, w, _ = X.shape
    dX = jnp.zeros_like(X, dtype=dA.dtype)
    for a, b in _offsets(layer):
        if layer.pool == "mean":
            piece = dA / (layer.pool_size[0] * layer.pool_size[1])
        else:
            piece = jnp.where(_offset_slice(layer, X, a, b) == Z, dA, jnp.zeros_like(dA))
        dX = dX + _offset_unslice(layer, piece, a, b, h, w)
    return dX, {"dA": dA, "dX": dX}


def compute_gradients(layer: Pooling, p: dict, fc: dict, bc: dict) -> dict:
    """No parameters."""
    return {}


# Pooling's methods are the five functions above: layer.forward(...) is forward(layer, ...).
Pooling.compute_shapes = compute_shapes
Pooling.initialize_parameters = initialize_parameters
Pooling.forward = forward
Pooling.backward = backward
Pooling.compute_gradients = compute_gradients
