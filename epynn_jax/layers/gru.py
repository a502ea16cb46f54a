"""GRU: gated recurrent unit, with backpropagation through time written out.

Shapes (m = batch, s = steps, e = features per step, u = units):
X (m, s, e); for z (update gate), r (reset gate) and hh (candidate state):
Uk (e, u), Vk (u, u), bk (1, u). Every per-step cache is stacked over time as
(m, s, u). A = h (m, s, u) with ``sequences=True``, else h[:, -1] (m, u).

Forward, from hp = 0, for t = 0 .. s-1 (one ``lax.scan``; the reset gate
multiplies hp *before* the candidate's matmul, Keras' ``reset_after=False``)::

    z_  = X_t . Uz + hp . Vz + bz              z  = sigma_z(z_)    (activate_update)
    r_  = X_t . Ur + hp . Vr + br              r  = sigma_r(r_)    (activate_reset)
    hh_ = X_t . Uhh + (r * hp) . Vhh + bhh     hh = tanh(hh_)      (activate)
    h   = z * hp + (1 - z) * hh

Inside the scan the three input terms and the two gates' recurrent terms are one
product per step: [X_t hp] . [[Uz Ur Uhh], [Vz Vr 0]] + [bz br bhh].

Backward (dA = dL/dA, zeros but the last step without ``sequences``), from
dh = 0 after the last step, for t = s-1 .. 0 (one reverse ``lax.scan``)::

    dhn  = dh                                  from step t+1
    dh_  = dA_t + dhn
    dhh_ = dh_ * (1 - z) * tanh'(hh_)
    dz_  = dh_ * (hp - hh) * sigma_z'(z_)
    dr_  = (dhh_ . Vhh^T) * hp * sigma_r'(r_)
    dh   = (dhh_ . Vhh^T) * r + dz_ . Vz^T + dr_ . Vr^T + dh_ * z      to step t-1
    dX_t = dz_ . Uz^T + dr_ . Ur^T + dhh_ . Uhh^T

Gradients, summed over the batch and the steps::

    dUk = sum_t X_t^T . dk_ (k = z, r, hh)     dVz = sum_t hp_t^T . dz_
    dVr = sum_t hp_t^T . dr_                   dVhh = sum_t (r_t * hp_t)^T . dhh_
    dbk = sum_t sum_m dk_

Implementation (same numbers, less kept per step): each step is ONE product
[X_t hp] . [[U], [V]] (``_recurrent.joint_product``; why, and what it was
measured to save: ``docs/performance.md``, "Recurrent layers");
``hp`` is ``h`` shifted by one step, computed after it; f' of tanh and
sigmoid is taken from the activation (1 - a^2, a (1 - a)). So under ``jit``
XLA drops the pre-activations from the training step, and an evaluation
(A only) keeps nothing but the carry.

Optional clipping (``clip_gradients``, off by default) as in RNN: EpyNN's
per-layer global norm of 0.25.
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
    gate_parameters,
    joint_product,
    joint_weights,
    previous,
    stack_gates,
    time_major,
    time_steps,
)
from epynn_jax.layers.base import Layer
from epynn_jax.maths import activations

__all__ = ["GRU"]

GATES = ("z", "r", "hh")  # EpyNN's order of parameters and of drawing them


@dataclasses.dataclass(frozen=True)
class GRU(Layer):
    """GRU with ``unit_cells`` units; returns all states if ``sequences``."""

    uses_key = False  # draws nothing (see Layer.uses_key)
    sequential = True  # a loop over the steps (see Layer.sequential)

    unit_cells: int = 1
    activate: str = "tanh"
    activate_update: str = "sigmoid"
    activate_reset: str = "sigmoid"
    initialization: str = "orthogonal"
    clip_gradients: bool = False
    sequences: bool = False

    def __post_init__(self) -> None:
        check_fields(self, ("activate", "activate_update", "activate_reset"))

    @property
    def d(self) -> dict:
        s, e = self._require_built("d")
        return {"u": self.unit_cells, "s": s, "e": e}


def compute_shapes(layer: GRU, X_shape: tuple[int, ...]) -> GRU:
    """Input must be (m, s, e): a sequence of s steps of e features."""
    check_sample_shape(layer, X_shape)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: GRU, key: jax.Array) -> dict:
    """Uk (e, u), Vk (u, u) by ``initialization`` drawn in EpyNN's order
    Uz, Vz, Ur, Vr, Uhh, Vhh (one key each); bk (1, u) zeros."""
    return gate_parameters(layer, key, GATES)


def forward(layer: GRU, p: dict, X: jax.Array, key=None, training: bool = False):
    """One scan over time. ``fc``: X, h, hp, hh_, hh, z, z_, r, r_, A."""
    check_sequence(layer, p["Uz"].shape[0], X)
    u = layer.unit_cells
    # [x hp] . W gives X_t . [Uz Ur Uhh] + hp . [Vz Vr 0]: Vhh multiplies r * hp, after r
    V = jnp.concatenate([stack_gates(p, "V", ("z", "r")), jnp.zeros_like(p["Vhh"])], axis=-1)
    W = joint_weights(stack_gates(p, "U", GATES), V)  # (e + u, 3u)
    b = stack_gates(p, "b", GATES)  # (1, 3u)

    def act(name, Z):
        return activations.activate(name, Z, layer.hpars)

    def step(hp, x):
        pre = joint_product(x, hp, W, b)  # (m, 3u)
        z_, r_ = pre[:, :u], pre[:, u:2 * u]
        z, r = act(layer.activate_update, z_), act(layer.activate_reset, r_)
        hh_ = pre[:, 2 * u:] + jnp.dot(r * hp, p["Vhh"])
        hh = act(layer.activate, hh_)
        h = z * hp + (1 - z) * hh
        return h, {"h": h, "hh_": hh_, "hh": hh, "z": z, "z_": z_, "r": r, "r_": r_}

    h0 = jnp.zeros((X.shape[0], u), W.dtype)
    h_last, steps = jax.lax.scan(step, h0, time_steps(X, W.dtype))
    fc = {"X": X, **{k: time_major(v) for k, v in steps.items()}}
    fc["hp"] = previous(fc["h"])
    A = fc["h"] if layer.sequences else h_last
    return A, {**fc, "A": A}


def backward(layer: GRU, p: dict, fc: dict, dA: jax.Array):
    """One reverse scan over time. ``bc``: dA, dh_, dh, dhn, dhh_, dz_, dr_, dX."""
    check_dA(layer, dA, fc["h"])
    u = layer.unit_cells
    dA = full_dA(layer, dA, fc["h"])
    Vzr = stack_gates(p, "V", ("z", "r"))

    def step(dhn, c):
        def deriv(name, k):  # f'(k_) of the gate or state k
            return derivative(name, c[k + "_"], c[k], layer.hpars)

        dh_ = c["dA"] + dhn
        dhh_ = dh_ * (1 - c["z"]) * deriv(layer.activate, "hh")
        dz_ = dh_ * (c["hp"] - c["hh"]) * deriv(layer.activate_update, "z")
        dhhV = jnp.dot(dhh_, p["Vhh"].T)
        dr_ = dhhV * c["hp"] * deriv(layer.activate_reset, "r")
        dgates = jnp.concatenate([dz_, dr_, dhh_], axis=-1)  # (m, 3u)
        dh = dhhV * c["r"] + jnp.dot(dgates[:, : 2 * u], Vzr.T) + dh_ * c["z"]
        return dh, {"dhn": dhn, "dh_": dh_, "dh": dh, "dgates": dgates}

    names = ("z", "hh_", "hp", "hh", "z_", "r_", "r")
    xs = {"dA": time_major(dA), **{k: time_major(fc[k]) for k in names}}
    _, steps = jax.lax.scan(step, jnp.zeros_like(fc["h"][:, 0]), xs, reverse=True)
    dgates = time_major(steps.pop("dgates"))  # (m, s, 3u)
    bc = {k: time_major(v) for k, v in steps.items()}
    for k, dk_ in zip(GATES, jnp.split(dgates, len(GATES), axis=-1), strict=True):
        bc["d" + k + "_"] = dk_
    dX = jnp.einsum("msk,ek->mse", dgates, stack_gates(p, "U", GATES))
    return dX, {"dA": dA, **bc, "dX": dX}


def compute_gradients(layer: GRU, p: dict, fc: dict, bc: dict) -> dict:
    """dUk, dVk, dbk for k in z, r, hh (dVhh from r * hp); then EpyNN's clipping if enabled."""
    dgates = jnp.concatenate([bc["d" + k + "_"] for k in GATES], axis=-1)  # (m, s, 3u)
    X = fc["X"].astype(dgates.dtype)
    hp = fc["hp"]
    dU = jnp.split(jnp.einsum("mse,msk->ek", X, dgates), len(GATES), axis=-1)
    db = jnp.split(jnp.sum(dgates, axis=(0, 1))[None, :], len(GATES), axis=-1)
    dVz = jnp.einsum("msv,msu->vu", hp, bc["dz_"])
    dVr = jnp.einsum("msv,msu->vu", hp, bc["dr_"])
    dVhh = jnp.einsum("msv,msu->vu", fc["r"] * hp, bc["dhh_"])
    dV = (dVz, dVr, dVhh)
    g = {}
    for j, k in enumerate(GATES):
        g["dU" + k], g["dV" + k], g["db" + k] = dU[j], dV[j], db[j]
    return clip(layer, g)


# GRU's methods are the five functions above: layer.forward(...) is forward(layer, ...).
GRU.compute_shapes = compute_shapes
GRU.initialize_parameters = initialize_parameters
GRU.forward = forward
GRU.backward = backward
GRU.compute_gradients = compute_gradients
