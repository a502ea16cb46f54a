"""Network: an ordered, static tuple of built layers, and its pure functions.

A :class:`Network` is hashable and static under ``jit`` (like its layers).
Parameters live outside it, as a tuple of ``p`` dicts, one per layer.

- ``build(layers, input_shape)`` runs ``compute_shapes`` layer by layer (static
  shape inference; errors name the layer and its position);
- ``init(net, key)`` draws every layer's ``p``;
- ``forward(net, params, X, key, training)`` returns the output and every ``fc``;
- ``backward(net, params, fcs, dA)`` runs the explicit backward chain and
  returns ``dX``, every ``g`` and every ``bc``;
- ``apply(net, params, X, key, training)`` is the same forward through the
  ``custom_vjp`` of each layer, so ``jax.grad`` runs the hand-written backward.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence

import jax
import numpy as np

from epynn_jax.layers.base import Layer, LayerError
from epynn_jax.layers.base import apply as layer_apply

__all__ = ["Network", "build", "init", "forward", "backward", "apply", "split_keys", "check_X"]

Params = tuple[dict, ...]


@dataclasses.dataclass(frozen=True)
class Network:
    """A linear stack of built layers (static, hashable)."""

    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise LayerError("Network: needs at least one layer")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Network: layer {i} is not a Layer: {layer!r}")
            if not layer.built:
                raise LayerError(f"Network: layer {i} ({layer.name}) is not built; use build()")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Sample shape of the input (no batch axis)."""
        return self.layers[0].input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Sample shape of the output (no batch axis)."""
        return self.layers[-1].output_shape

    @property
    def output_activation(self) -> str | None:
        """The output layer's ``activate`` name (None when it has none)."""
        return self.layers[-1].activation.get("activate")

    def __len__(self) -> int:
        return len(self.layers)


jax.tree_util.register_static(Network)


def build(layers: Sequence[Layer], input_shape: Sequence[int]) -> Network:
    """Set every layer's input shape, in order, from the sample shape ``input_shape``.

    Raises ``LayerError`` naming the layer (and its index) that rejects its input.
    """
    ok = isinstance(input_shape, (tuple, list)) and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
        for s in input_shape)
    if not ok:
        raise LayerError(f"build: input_shape must be a tuple of positive ints (the sample "
                         f"shape without the batch axis, e.g. (5,)), got {input_shape!r}")
    shape = tuple(int(s) for s in input_shape)
    built = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"build: layer {i} is not a Layer: {layer!r}")
        try:
            layer = layer.compute_shapes(shape)
            out = layer.output_shape
        except LayerError as err:
            raise LayerError(f"layer {i} ({layer.name}): {err}") from None
        built.append(layer)
        shape = out
    return Network(tuple(built))


def split_keys(net: Network, key: jax.Array | None) -> tuple:
    """One key per layer (``None`` everywhere when ``key`` is None)."""
    if key is None:
        return (None,) * len(net.layers)
    return tuple(jax.random.split(key, len(net.layers)))


def init(net: Network, key: jax.Array) -> Params:
    """Initial parameters: a tuple of ``p`` dicts, one per layer."""
    keys = split_keys(net, key)
    return tuple(layer.initialize_parameters(k) for layer, k in zip(net.layers, keys))


def check_X(net: Network, X, where: str = "X") -> None:
    """Raise before tracing if ``X`` does not fit the network (shape, finiteness)."""
    shape = tuple(np.shape(X))
    if len(shape) != len(net.input_shape) + 1 or shape[1:] != net.input_shape:
        raise LayerError(
            f"{where}: expected shape (m, {', '.join(map(str, net.input_shape))}) for the input "
            f"layer {net.layers[0].name}, got {shape}"
        )
    if shape[0] == 0:
        raise LayerError(f"{where}: no samples (shape {shape})")
    if not isinstance(X, jax.core.Tracer):
        arr = np.asarray(X)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"{where}: contains NaN or inf values")


def forward(net: Network, params: Params, X: jax.Array, key: jax.Array | None = None,
            training: bool = False) -> tuple[jax.Array, tuple[dict, ...]]:
    """A and every layer's ``fc``, running ``forward`` layer by layer."""
    fcs = []
    A = X
    for layer, p, k in zip(net.layers, params, split_keys(net, key)):
        A, fc = layer.forward(p, A, k, training)
        fcs.append(fc)
    return A, tuple(fcs)


def backward(net: Network, params: Params, fcs: tuple[dict, ...], dA: jax.Array):
    """The explicit backward chain: returns ``(dX, gs, bcs)``.

    For each layer from last to first: ``dX, bc = backward(p, fc, dA)``, then
    ``g = compute_gradients(p, fc, bc)``; ``dX`` becomes the previous layer's ``dA``.
    """
    gs, bcs = [None] * len(net.layers), [None] * len(net.layers)
    for i in reversed(range(len(net.layers))):
        layer = net.layers[i]
        dA, bc = layer.backward(params[i], fcs[i], dA)
        gs[i] = layer.compute_gradients(params[i], fcs[i], bc)
        bcs[i] = bc
    return dA, tuple(gs), tuple(bcs)


def apply(net: Network, params: Params, X: jax.Array, key: jax.Array | None = None,
          training: bool = False) -> jax.Array:
    """The network's output, differentiable by ``jax.grad`` through the hand-written backward."""
    A = X
    for layer, p, k in zip(net.layers, params, split_keys(net, key)):
        A = layer_apply(layer, p, A, k, training)
    return A
