"""Convolution: 2-D valid cross-correlation over NHWC images (no kernel flip).

Shapes (m = batch, h, w = input height and width, c = input channels, u = filters,
fh, fw = filter size, sh, sw = strides, p = zero padding on both sides of h and w):
X (m, h, w, c), Xp = pad(X) (m, h + 2p, w + 2p, c), W (fh, fw, c, u), b (u,),
Z and A (m, oh, ow, u) with ``oh = (h + 2p - fh) // sh + 1`` and
``ow = (w + 2p - fw) // sw + 1`` (trailing rows/columns that do not fill a
window are dropped).

Forward::

    Z[m, i, j, k] = sum_{a, b, c} Xp[m, i*sh + a, j*sw + b, c] * W[a, b, c, k] + b[k]
    A = f(Z)

Backward (dA = dL/dA from the next layer)::

    dZ = dA * f'(Z)
    dXp[m, i*sh + a, j*sw + b, c] += sum_k dZ[m, i, j, k] * W[a, b, c, k]
        (the transposed convolution of dZ with W); dX = dXp without its padding
    dW[a, b, c, k] = sum_{m, i, j} Xp[m, i*sh + a, j*sw + b, c] * dZ[m, i, j, k]
    db[k] = sum_{m, i, j} dZ[m, i, j, k]        (0 when use_bias=False)

Two formulations compute the same numbers; ``impl`` chooses one statically:

- ``'lax'``: XLA convolutions (``lax.conv_general_dilated``). dX is the
  convolution of dZ dilated by the strides with the flipped, transposed kernel;
  dW is the convolution of the input (channels as batch, samples as features)
  with dZ dilated by the strides.
- ``'patches'``: im2col by strided slices. For each of the fh*fw kernel offsets
  (a, b) the slice ``Xp[:, a::sh, b::sw, :]`` (oh x ow positions) is taken; the
  stack is P (m, oh, ow, fh*fw*c) and ``Z = P . W.reshape(fh*fw*c, u) + b``.
  Backward: dP = dZ . W^T, and each offset's slice of dP is added back into
  dXp at its strided positions (a scatter-add written as an interior-padded
  ``lax.pad``, the transpose of a strided slice); dW = P^T . dZ. When the
  windows tile the input (strides == filter size, EpyNN's default) P is a
  reshape and transpose of the input, and dXp the inverse.
- ``'auto'`` (default), chosen at trace time from ``jax.default_backend()``:
  ``'patches'`` on CPU unless the windows overlap or skip (strides other than
  the filter size) with more than 256 kernel offsets (fh * fw), whose slices
  take longer to compile than the whole run saves (16 x 16: 14 s against
  0.5 s; 64 x 64: minutes); on GPU/TPU ``'patches'`` when the windows tile the
  input or hold fewer than 144 values (fh * fw * channels), else ``'lax'``
  (the rule's measurements: ``docs/performance.md``, "Convolution").
  ``'patches'`` asked for by name with windows that do not tile is refused
  beyond 4,096 offsets (as Pooling's windows are).

Neither builds EpyNN's (m, oh, ow, fh, fw, c, u) product tensor.

Differences from EpyNN 1.2.13: an int ``strides`` is honoured (EpyNN replaces
it with the filter size); with ``padding > 0`` the output size counts the
padding and ``dX`` has the unpadded input shape (EpyNN computes the output
size from the unpadded input and returns a padded dX); ``fc['X']`` is the
unpadded input and EpyNN's ``fc['Xb']`` window tensor is not stored; softmax
is refused at construction (EpyNN refuses it at ``initialize``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from epynn_jax.layers._windows import MAX_OFFSETS, offset_slice, offset_unslice, pair
from epynn_jax.layers.base import (
    Layer,
    LayerError,
    check_dA,
    check_input,
    check_X,
    count,
    float_dtype,
    initialization,
)
from epynn_jax.maths import activations, initializers

__all__ = ["Convolution"]

IMPLS = ("auto", "lax", "patches")
#: The most kernel offsets (fh * fw) 'auto' computes as patches on a CPU when the windows
#: do not tile: one strided slice each, and the compile time grows faster than their number
#: (on a 2-core CPU, 8 x 8: 3.7 s against lax's 0.5 s; 16 x 16: 14 s; 32 x 32: over a minute).
CPU_PATCH_OFFSETS = 256
_DIMS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Convolution(Layer):
    """2-D convolution with ``unit_filters`` filters of ``filter_size``, then ``activate``.

    ``strides`` defaults to ``filter_size``; ints expand to squares. ``padding``
    zero-pads both sides of the height and width. ``use_bias=False`` keeps
    ``p['b']`` at zero (its gradient is 0). ``impl`` is ``'auto'``, ``'lax'``
    or ``'patches'`` (see the module docstring).
    """

    uses_key = False  # draws nothing (see Layer.uses_key)

    unit_filters: int = 1
    filter_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] | None = None
    padding: int = 0
    activate: str = "relu"
    initialization: str = "xavier"
    use_bias: bool = True
    impl: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit_filters",
                           count(self.unit_filters, "Convolution: unit_filters"))
        filter_size = pair(self.filter_size, "filter_size", "Convolution")
        strides = (filter_size if self.strides is None
                   else pair(self.strides, "strides", "Convolution"))
        object.__setattr__(self, "padding", count(self.padding, "Convolution: padding", 0))
        activate = activations.check_activation(self.activate, "Convolution.activate")
        if activate == "softmax":
            raise LayerError("Convolution: softmax is not supported as a convolution activation "
                             "(EpyNN allows it only in Dense); use e.g. 'relu'")
        init = initialization(self.initialization, "Convolution")
        if init == "orthogonal":  # a 2-D rule; the kernel is 4-D (EpyNN fails there too)
            raise LayerError("Convolution: orthogonal initialization needs a 2-D weight "
                             "matrix, and a kernel is (fh, fw, c, u); use 'xavier'")
        if not isinstance(self.use_bias, bool):  # bool("no") would be True
            raise LayerError(f"Convolution: use_bias must be True or False, "
                             f"got {self.use_bias!r}")
        if self.impl not in IMPLS:
            raise LayerError(f"Convolution: impl must be one of {IMPLS}, got {self.impl!r}")
        if (self.impl == "patches" and strides != filter_size
                and filter_size[0] * filter_size[1] > MAX_OFFSETS):
            raise LayerError(f"Convolution: impl='patches' with filter_size {filter_size} and "
                             f"strides {strides}: windows that do not tile the input are "
                             f"sliced one kernel offset at a time, at most {MAX_OFFSETS} "
                             "offsets (64 x 64); use impl='lax' or 'auto'")
        object.__setattr__(self, "filter_size", filter_size)
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "activate", activate)
        object.__setattr__(self, "initialization", init)

    @property
    def d(self) -> dict:
        h, w, c = self._require_built("d")
        (fh, fw), (sh, sw), p = self.filter_size, self.strides, self.padding
        return {
            "u": self.unit_filters, "fh": fh, "fw": fw, "sh": sh, "sw": sw, "p": p,
            "h": h, "w": w, "d": c,
            "oh": (h + 2 * p - fh) // sh + 1, "ow": (w + 2 * p - fw) // sw + 1,
        }

    @property
    def resolved_impl(self) -> str:
        """The formulation used when traced now: ``impl``, with ``'auto'`` resolved."""
        if self.impl != "auto":
            return self.impl
        fh, fw = self.filter_size
        tiling = tuple(self.strides) == (fh, fw)
        if jax.default_backend() == "cpu":
            # one slice per kernel offset: beyond CPU_PATCH_OFFSETS the compile time of
            # the slices outgrows what patches save per step
            return "patches" if tiling or fh * fw <= CPU_PATCH_OFFSETS else "lax"
        # XLA's convolution wins once the window holds >= 144 values and the windows
        # overlap; patches win for few channels and for tiling windows (measured on a
        # GPU: docs/performance.md, "Convolution").
        channels = self.input_shape[-1] if self.input_shape else 1
        return "patches" if tiling or fh * fw * channels < 144 else "lax"


def compute_shapes(layer: Convolution, X_shape: tuple[int, ...]) -> Convolution:
    """Input must be (m, h, w, c) with the filter fitting inside the padded h and w."""
    check_input(layer, X_shape, 3)
    h, w, _ = X_shape
    (fh, fw), p = layer.filter_size, layer.padding
    if fh > h + 2 * p or fw > w + 2 * p:
        raise LayerError(
            f"Convolution: filter_size {(fh, fw)} is larger than the padded input "
            f"{(h + 2 * p, w + 2 * p)} (input (h, w) = {(h, w)}, padding {p})"
        )
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: Convolution, key: jax.Array) -> dict:
    """W (fh, fw, c, u) by ``initialization``; b (u,) zeros.

    xavier (EpyNN's): W = N(0, 1) * sqrt(2 / (fh + fw + c + u)).
    """
    _, _, c = layer._require_built("initialize_parameters")
    fh, fw = layer.filter_size
    init = initializers.INITIALIZERS[layer.initialization]
    return {
        "W": init(key, (fh, fw, c, layer.unit_filters), float_dtype()),
        "b": jnp.zeros((layer.unit_filters,), float_dtype()),
    }


# -- helpers shared by forward and backward -----------------------------------


def _pad(layer: Convolution, X: jax.Array) -> jax.Array:
    """Xp: zero padding of ``padding`` on both sides of h and w."""
    p = layer.padding
    return X if p == 0 else jnp.pad(X, ((0, 0), (p, p), (p, p), (0, 0)))


def _unpad(layer: Convolution, dXp: jax.Array) -> jax.Array:
    """dX: the gradient of the padded input without its padding."""
    p = layer.padding
    return dXp if p == 0 else dXp[:, p:dXp.shape[1] - p, p:dXp.shape[2] - p, :]


def _tiled(layer: Convolution) -> bool:
    """Whether windows tile the input (strides == filter size, EpyNN's default)."""
    return layer.strides == layer.filter_size


def _patches(layer: Convolution, Xp: jax.Array) -> jax.Array:
    """P (m, oh, ow, fh*fw*c): the window of every output position, offsets outer, c inner.

    Tiled windows (strides == filter size) are a reshape and a transpose of the used
    input; otherwise one strided slice per offset, stacked.
    """
    d = layer.d
    m, c = Xp.shape[0], Xp.shape[3]
    if _tiled(layer):
        P = _used(layer, Xp).reshape(m, d["oh"], d["fh"], d["ow"], d["fw"], c)
        return P.transpose(0, 1, 3, 2, 4, 5).reshape(m, d["oh"], d["ow"], -1)
    pieces = [offset_slice(Xp, a, b, d["oh"], d["ow"], d["sh"], d["sw"])
              for a in range(d["fh"]) for b in range(d["fw"])]
    P = jnp.stack(pieces, axis=3)  # (m, oh, ow, fh*fw, c)
    return P.reshape(*P.shape[:3], -1)


def _unpatch(layer: Convolution, dP: jax.Array) -> jax.Array:
    """Transpose of :func:`_patches`: dXp (m, h + 2p, w + 2p, c) from dP (m, oh, ow, fh*fw*c),
    each window's entries added back at their input positions."""
    d = layer.d
    fh, fw, sh, sw, oh, ow = d["fh"], d["fw"], d["sh"], d["sw"], d["oh"], d["ow"]
    hp, wp = d["h"] + 2 * d["p"], d["w"] + 2 * d["p"]
    m, c = dP.shape[0], d["d"]
    dP = dP.reshape(m, oh, ow, fh, fw, c)
    if _tiled(layer):
        dXu = dP.transpose(0, 1, 3, 2, 4, 5).reshape(m, oh * fh, ow * fw, c)
        return jnp.pad(dXu, ((0, 0), (0, hp - oh * fh), (0, wp - ow * fw), (0, 0)))
    dXp = jnp.zeros((m, hp, wp, c), dP.dtype)
    for a in range(fh):
        for b in range(fw):
            dXp = dXp + offset_unslice(dP[:, :, :, a, b, :], a, b, hp, wp, sh, sw)
    return dXp


def _used(layer: Convolution, Xp: jax.Array) -> jax.Array:
    """Xp cropped to the rows/columns some window reads (drops the floor remainder)."""
    d = layer.d
    return Xp[:, :(d["oh"] - 1) * d["sh"] + d["fh"], :(d["ow"] - 1) * d["sw"] + d["fw"], :]


def _linear(layer: Convolution, p: dict, Xp: jax.Array) -> jax.Array:
    """Z = Xp (*) W + b, by the chosen formulation (integer/bool inputs are promoted)."""
    Xp = Xp.astype(jnp.result_type(Xp, p["W"]))
    if layer.resolved_impl == "lax":
        Z = lax.conv_general_dilated(Xp, p["W"], layer.strides, "VALID", dimension_numbers=_DIMS)
    else:
        W = p["W"]
        Z = jnp.dot(_patches(layer, Xp), W.reshape(-1, W.shape[-1]))
    return Z + p["b"]


def _input_grad(layer: Convolution, W: jax.Array, dZ: jax.Array) -> jax.Array:
    """dXp (m, h + 2p, w + 2p, c): transposed convolution of dZ with W."""
    d = layer.d
    fh, fw, sh, sw = d["fh"], d["fw"], d["sh"], d["sw"]
    hp, wp = d["h"] + 2 * d["p"], d["w"] + 2 * d["p"]
    if layer.resolved_impl == "lax":
        # Rows/cols past the last window (floor remainder) get no gradient: extra high padding.
        rh, rw = hp - (d["oh"] - 1) * sh - fh, wp - (d["ow"] - 1) * sw - fw
        Wt = jnp.flip(W, (0, 1)).transpose(0, 1, 3, 2)  # (fh, fw, u, c)
        return lax.conv_general_dilated(
            dZ, Wt, (1, 1), ((fh - 1, fh - 1 + rh), (fw - 1, fw - 1 + rw)),
            lhs_dilation=(sh, sw), dimension_numbers=_DIMS)
    return _unpatch(layer, jnp.dot(dZ, W.reshape(-1, W.shape[-1]).T))


def _kernel_grad(layer: Convolution, Xp: jax.Array, dZ: jax.Array) -> jax.Array:
    """dW (fh, fw, c, u): the input correlated with dZ."""
    if layer.resolved_impl == "lax":
        # Channels as the batch, samples as the contracted feature, dZ dilated by the strides.
        return lax.conv_general_dilated(
            _used(layer, Xp), dZ, (1, 1), "VALID", rhs_dilation=layer.strides,
            dimension_numbers=("CHWN", "IHWO", "HWNC"))
    P = _patches(layer, Xp)
    # one contraction over the m*oh*ow windows of the (windows, k) patches, the layout
    # the forward product used: XLA then shares the patches with the forward instead of
    # building them a second time transposed (as tensordot made it do)
    dW = lax.dot_general(P.reshape(-1, P.shape[-1]), dZ.reshape(-1, dZ.shape[-1]),
                         (((0,), (0,)), ((), ())))
    d = layer.d
    return dW.reshape(d["fh"], d["fw"], d["d"], d["u"])


# -- the contract ---------------------------------------------------------------


def forward(layer: Convolution, p: dict, X: jax.Array, key=None, training: bool = False):
    """Z = pad(X) (*) W + b; A = f(Z). ``fc = {'X' (unpadded), 'Z', 'A'}``."""
    check_X(layer, X)
    Z = _linear(layer, p, _pad(layer, X))
    A = activations.activate(layer.activate, Z, layer.hpars)
    return A, {"X": X, "Z": Z, "A": A}


def backward(layer: Convolution, p: dict, fc: dict, dA: jax.Array):
    """dZ = dA * f'(Z); dX = unpad(transposed conv of dZ with W). ``bc = {'dA', 'dZ', 'dX'}``."""
    check_dA(layer, fc, dA)
    dZ = activations.backprop(layer.activate, dA, fc["Z"], fc["A"], layer.hpars)
    dX = _unpad(layer, _input_grad(layer, p["W"], dZ))
    return dX, {"dA": dA, "dZ": dZ, "dX": dX}


def compute_gradients(layer: Convolution, p: dict, fc: dict, bc: dict) -> dict:
    """dW = pad(X) correlated with dZ; db = sum over m, oh, ow of dZ (zeros without bias)."""
    dZ = bc["dZ"]
    dW = _kernel_grad(layer, _pad(layer, fc["X"]).astype(dZ.dtype), dZ)
    db = jnp.sum(dZ, axis=(0, 1, 2))
    return {"dW": dW, "db": db if layer.use_bias else jnp.zeros_like(db)}


# Convolution's methods are the five functions above: layer.forward(...) is forward(layer, ...).
Convolution.compute_shapes = compute_shapes
Convolution.initialize_parameters = initialize_parameters
Convolution.forward = forward
Convolution.backward = backward
Convolution.compute_gradients = compute_gradients
