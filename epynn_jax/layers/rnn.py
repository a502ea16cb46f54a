"""RNN: the Elman recurrent layer, with backpropagation through time written out.

Shapes (m = batch, s = steps, e = features per step, u = units):
X (m, s, e), U (e, u), V (u, u), b (1, u); every per-step cache (``h_``,
``h``, ``hp``; ``dh_``, ``dh``, ``dhn``) is stacked over time as (m, s, u);
A = h (m, s, u) with ``sequences=True``, else the last state h[:, -1] (m, u).

Forward, from h_{-1} = 0, for t = 0 .. s-1 (one ``lax.scan`` over time)::

    hp_t = h_{t-1}                          previous state
    h__t = X_t . U + hp_t . V + b           pre-activation
    h_t  = f(h__t)

Backward (dA = dL/dA; without ``sequences`` dA becomes zeros at every step but
the last), from dh = 0 after the last step, for t = s-1 .. 0 (one reverse
``lax.scan``)::

    dhn_t = dh                              gradient arriving from step t+1
    dh__t = (dA_t + dhn_t) * f'(h__t)
    dh_t  = dh__t . V^T                     sent to step t-1
    dX_t  = dh__t . U^T

Gradients, summed over the batch and the steps (one contraction each)::

    dU = sum_t X_t^T . dh__t     dV = sum_t hp_t^T . dh__t     db = sum_t sum_m dh__t

Implementation (same numbers, less kept per step): each step is ONE product
[X_t hp] . [[U], [V]] (``_recurrent.joint_product``; why, and what it was
measured to save: ``docs/performance.md``, "Recurrent layers");
``hp`` is ``h`` shifted by one step, computed after it; f' of tanh and
sigmoid is taken from the activation (1 - a^2, a (1 - a)). So under ``jit``
XLA drops the pre-activations from the training step, and an evaluation
(A only) keeps nothing but the carry.

Clipping (``clip_gradients``, on by default as in EpyNN): with
total = sqrt(sum over every g entry of sum((g + 1e-16)^2)) and
coef = 0.25 / (total + 1e-16), every g entry is multiplied by coef when
coef < 1. The clipped ``g`` is then deliberately not the exact gradient.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from epynn_jax.layers._recurrent import (
    check_dA,
    check_fields,
    check_sample_shape,
    check_sequence,
    clip,
    derivative,
    full_dA,
    joint_product,
    joint_weights,
    previous,
    time_major,
    time_steps,
)
from epynn_jax.layers.base import Layer, float_dtype
from epynn_jax.maths import activations, initializers, prng

__all__ = ["RNN"]


@dataclasses.dataclass(frozen=True)
class RNN(Layer):
    """Elman RNN with ``unit_cells`` units; returns all states if ``sequences``."""

    uses_key = False  # draws nothing (see Layer.uses_key)
    sequential = True  # a loop over the steps (see Layer.sequential)

    unit_cells: int = 1
    activate: str = "tanh"
    initialization: str = "xavier"
    clip_gradients: bool = True
    sequences: bool = False

    def __post_init__(self) -> None:
        check_fields(self, ("activate",))

    @property
    def d(self) -> dict:
        s, e = self._require_built("d")
        return {"u": self.unit_cells, "s": s, "e": e}


def compute_shapes(layer: RNN, X_shape: tuple[int, ...]) -> RNN:
    """Input must be (m, s, e): a sequence of s steps of e features."""
    check_sample_shape(layer, X_shape)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: RNN, key: jax.Array) -> dict:
    """U (e, u), then V (u, u), by ``initialization`` (one key each); b (1, u) zeros."""
    _, e = layer._require_built("initialize_parameters")
    u = layer.unit_cells
    init = initializers.INITIALIZERS[layer.initialization]
    kU, kV = prng.split(key, 2)
    return {
        "U": init(kU, (e, u), float_dtype()),
        "V": init(kV, (u, u), float_dtype()),
        "b": jnp.zeros((1, u), float_dtype()),
    }


def forward(layer: RNN, p: dict, X: jax.Array, key=None, training: bool = False):
    """One scan over time. ``fc = {'X', 'h_', 'h', 'hp', 'A'}``, caches (m, s, u)."""
    check_sequence(layer, p["U"].shape[0], X)
    W = joint_weights(p["U"], p["V"])  # (e + u, u)

    def step(hp, x):
        h_ = joint_product(x, hp, W, p["b"])  # X_t . U + hp . V + b
        h = activations.activate(layer.activate, h_, layer.hpars)
        return h, {"h_": h_, "h": h}

    h0 = jnp.zeros((X.shape[0], layer.unit_cells), W.dtype)
    h_last, steps = jax.lax.scan(step, h0, time_steps(X, W.dtype))
    fc = {"X": X, **{k: time_major(v) for k, v in steps.items()}}
    fc["hp"] = previous(fc["h"])
    A = fc["h"] if layer.sequences else h_last
    return A, {**fc, "A": A}


def backward(layer: RNN, p: dict, fc: dict, dA: jax.Array):
    """One reverse scan over time. ``bc = {'dA', 'dhn', 'dh_', 'dh', 'dX'}``, (m, s, .)."""
    check_dA(layer, dA, fc["h"])
    dA = full_dA(layer, dA, fc["h"])

    def step(dhn, xs):
        dA_t, h__t, h_t = xs
        dh_ = (dA_t + dhn) * derivative(layer.activate, h__t, h_t, layer.hpars)
        dh = jnp.dot(dh_, p["V"].T)
        return dh, {"dhn": dhn, "dh_": dh_, "dh": dh}

    dh0 = jnp.zeros_like(fc["h"][:, 0])
    xs = (time_major(dA), time_major(fc["h_"]), time_major(fc["h"]))
    _, steps = jax.lax.scan(step, dh0, xs, reverse=True)
    bc = {k: time_major(v) for k, v in steps.items()}
    dX = jnp.einsum("msu,eu->mse", bc["dh_"], p["U"])
    return dX, {"dA": dA, **bc, "dX": dX}


def compute_gradients(layer: RNN, p: dict, fc: dict, bc: dict) -> dict:
    """dU, dV (contractions over m and s), db (1, u); then EpyNN's clipping if enabled."""
    dh_ = bc["dh_"]
    X = fc["X"].astype(dh_.dtype)
    g = {
        "dU": jnp.einsum("mse,msu->eu", X, dh_),
        "dV": jnp.einsum("msv,msu->vu", fc["hp"], dh_),
        "db": jnp.sum(dh_, axis=(0, 1))[None, :],
    }
    return clip(layer, g)


# RNN's methods are the five functions above: layer.forward(...) is forward(layer, ...).
RNN.compute_shapes = compute_shapes
RNN.initialize_parameters = initialize_parameters
RNN.forward = forward
RNN.backward = backward
RNN.compute_gradients = compute_gradients
