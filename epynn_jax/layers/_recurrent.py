"""Helpers shared by the recurrent layers (RNN, LSTM, GRU); not a layer.

Validation of constructor fields and inputs, the (m, s, ...) <-> (s, m, ...)
swap between EpyNN's cache layout and the scan's time-major layout, the
previous-step shift, the expansion of dA for ``sequences=False``, activation
derivatives from outputs, and EpyNN's gradient clipping.

Speed note: under ``jit`` XLA drops every per-step cache a caller does not
use. The layers therefore keep few values per step inside their scans (e.g.
``hp`` is ``previous(h)``, computed outside the loop) and take derivatives
from activations, so that a training step stores little per step and an
evaluation stores nothing but the carry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from epynn_jax.layers.base import (
    Layer,
    LayerError,
    check_input,
    count,
    float_dtype,
    initialization,
)
from epynn_jax.maths import activations, initializers, prng

__all__ = [
    "check_fields",
    "check_sample_shape",
    "check_sequence",
    "time_major",
    "previous",
    "check_dA",
    "full_dA",
    "derivative",
    "clip",
]

MAX_NORM = 0.25
E_SAFE = 1e-16


def check_fields(layer: Layer, activation_fields: tuple[str, ...]) -> None:
    """Validate units, activations (softmax refused), initializer and flags."""
    name = layer.name
    object.__setattr__(layer, "unit_cells", count(layer.unit_cells, f"{name}: unit_cells"))
    for field in activation_fields:
        act = activations.check_activation(getattr(layer, field), f"{name}.{field}")
        if act == "softmax":
            raise LayerError(
                f"{name}: softmax is only allowed in Dense layers, not as {field} of {name}"
            )
        object.__setattr__(layer, field, act)
    object.__setattr__(layer, "initialization", initialization(layer.initialization, name))
    for flag in ("clip_gradients", "sequences"):
        if not isinstance(getattr(layer, flag), bool):
            raise LayerError(f"{name}: {flag} must be True or False, got {getattr(layer, flag)!r}")


def check_sample_shape(layer: Layer, X_shape: tuple[int, ...]) -> None:
    """Raise a LayerError unless the sample shape is (s, e), i.e. the input (m, s, e)."""
    if len(X_shape) != 2:
        raise LayerError(
            f"{layer.name}: expected 3-D input (m, steps, features) but got sample shape "
            f"{tuple(X_shape)} (rank {len(X_shape) + 1})"
        )
    check_input(layer, X_shape, 2)


def check_sequence(layer: Layer, e: int, X: jax.Array) -> None:
    """Raise a LayerError for an input that is not (m, s, e) with this layer's e.

    ``e`` is the feature count of the parameters; a built layer's own count wins.
    """
    e = layer.input_shape[-1] if layer.built else e
    if X.ndim != 3:
        raise LayerError(
            f"{layer.name}: expected 3-D input (m, steps, features) but got shape {tuple(X.shape)}"
        )
    if X.shape[2] != e:
        raise LayerError(
            f"{layer.name}: expected {e} features per step (the layer was built for that) "
            f"but got input shape {tuple(X.shape)}"
        )


def time_major(x: jax.Array) -> jax.Array:
    """(m, s, ...) <-> (s, m, ...): caches keep EpyNN's layout, scans run over axis 0."""
    return jnp.swapaxes(x, 0, 1)


def stack_gates(p: dict, prefix: str, gates: tuple[str, ...]) -> jax.Array:
    """[P{g1} P{g2} ...] along the last axis: several gates' parameters as one matrix."""
    return jnp.concatenate([p[prefix + k] for k in gates], axis=-1)


def joint_weights(U: jax.Array, V: jax.Array) -> jax.Array:
    """W = [[U], [V]] (e + u, k): input and recurrent weights stacked, so that one
    product per step, [X_t hp] . W, gives X_t . U + hp . V (see :func:`joint_product`)."""
    return jnp.concatenate([U, V.astype(U.dtype)], axis=0)


def joint_product(x: jax.Array, hp: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """X_t . U + hp . V + b as ONE product [x hp] . W + b: (m, e), (m, u) -> (m, k).

    Called once per step inside the scan, in place of the input terms X . U + b of
    all steps computed before it: no (s, m, k) array is written and read back, and
    the gate arithmetic fuses with the product (figures: ``docs/performance.md``).
    """
    return jnp.dot(jnp.concatenate([x, hp], axis=-1), W) + b


def time_steps(X: jax.Array, dtype) -> jax.Array:
    """X (m, s, e) as the scan's inputs: time-major (s, m, e) in ``dtype``."""
    return time_major(X).astype(dtype)


def previous(x: jax.Array) -> jax.Array:
    """The previous step's value (m, s, u): zeros at step 0, then x[:, :-1]."""
    return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def check_dA(layer: Layer, dA: jax.Array, h: jax.Array) -> None:
    """Raise a LayerError unless dA has the shape of the output A (h is the (m, s, u) cache)."""
    expected = h.shape if layer.sequences else (h.shape[0], h.shape[2])
    if tuple(dA.shape) != tuple(expected):
        raise LayerError(
            f"{layer.name}: dA must have the shape of the output A {tuple(expected)} "
            f"(sequences={layer.sequences}) but got {tuple(dA.shape)}"
        )


def full_dA(layer: Layer, dA: jax.Array, h: jax.Array) -> jax.Array:
    """dL/dh at every step (m, s, u): dA itself, or zeros with dA at the last step."""
    return dA if layer.sequences else jnp.zeros_like(h).at[:, -1].set(dA)


def derivative(name: str, Z: jax.Array, A: jax.Array, hp) -> jax.Array:
    """f'(Z) for A = f(Z); from A for tanh (1 - A^2) and sigmoid (A (1 - A)).

    The same numbers as ``activations.derivative(name, Z)``, but then the
    compiled training step needs not keep the pre-activation Z of every step.
    """
    if name == "tanh":
        return 1 - A**2
    if name == "sigmoid":
        return A * (1 - A)
    return activations.derivative(name, Z, hp)


def gate_parameters(layer: Layer, key: jax.Array, gates: tuple[str, ...]) -> dict:
    """U{k} (e, u), V{k} (u, u) for each gate k in order, one key each drawn in EpyNN's
    order (Uk then Vk, gate by gate), by ``layer.initialization``; b{k} (1, u) zeros."""
    _, e = layer._require_built("initialize_parameters")
    u = layer.unit_cells
    init = initializers.INITIALIZERS[layer.initialization]
    keys = iter(prng.split(key, 2 * len(gates)))
    p = {}
    for k in gates:
        p["U" + k] = init(next(keys), (e, u), float_dtype())
        p["V" + k] = init(next(keys), (u, u), float_dtype())
        p["b" + k] = jnp.zeros((1, u), float_dtype())
    return p


def clip(layer: Layer, g: dict) -> dict:
    """EpyNN's per-layer global-norm clipping to 0.25 (no Python branch on values)."""
    if not layer.clip_gradients:
        return g
    total = jnp.sqrt(sum(jnp.sum((v + E_SAFE) ** 2) for v in g.values()))
    coef = MAX_NORM / (total + E_SAFE)
    return {k: jnp.where(coef < 1, v * coef, v) for k, v in g.items()}
