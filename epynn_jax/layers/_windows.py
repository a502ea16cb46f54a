"""Window helpers shared by Convolution and Pooling (NHWC, strided windows).

- ``pair``: an int or a pair of positive ints as a pair;
- ``offset_slice``: for a window offset (a, b), the input element at that
  offset of every output position, ``X[:, a + i*sh, b + j*sw, :]``;
- ``offset_unslice``: its transpose, a scatter into zeros written as an
  interior-padded ``lax.pad``.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
from jax import lax

from epynn_jax.layers.base import LayerError

__all__ = ["MAX_OFFSETS", "pair", "offset_slice", "offset_unslice"]

#: The most window offsets (fh * fw) a layer computes one at a time: each is a slice in the
#: traced program, so tracing grows with their number (90,000 offsets: minutes, for a layer
#: a model file describes in a few bytes).
MAX_OFFSETS = 4096


def pair(value: object, what: str, layer: str) -> tuple[int, int]:
    """An int n -> (n, n); a pair of positive ints -> itself; else LayerError naming ``layer``."""
    out = (value, value) if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(out, (tuple, list))
        or len(out) != 2
        or any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1
               for v in out)
    ):
        raise LayerError(f"{layer}: {what} must be a positive int or a pair of them, "
                         f"got {value!r}")
    return (int(out[0]), int(out[1]))


def offset_slice(X: jax.Array, a: int, b: int, oh: int, ow: int, sh: int, sw: int) -> jax.Array:
    """X[:, a + i*sh, b + j*sw, :] for i < oh, j < ow: shape (m, oh, ow, c)."""
    m, _, _, c = X.shape
    return lax.slice(X, (0, a, b, 0), (m, a + (oh - 1) * sh + 1, b + (ow - 1) * sw + 1, c),
                     (1, sh, sw, 1))


def offset_unslice(piece: jax.Array, a: int, b: int, h: int, w: int, sh: int, sw: int
                   ) -> jax.Array:
    """Transpose of :func:`offset_slice`: piece (m, oh, ow, c) placed in zeros (m, h, w, c)."""
    _, oh, ow, _ = piece.shape
    zero = jnp.zeros((), piece.dtype)
    return lax.pad(piece, zero, ((0, 0, 0),
                                 (a, h - a - (oh - 1) * sh - 1, sh - 1),
                                 (b, w - b - (ow - 1) * sw - 1, sw - 1),
                                 (0, 0, 0)))
