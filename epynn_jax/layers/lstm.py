"""LSTM: long short-term memory, with backpropagation through time written out.

Shapes (m = batch, s = steps, e = features per step, u = units):
X (m, s, e); for each gate k in f (forget), i (input), g (candidate), o
(output): Uk (e, u), Vk (u, u), bk (1, u). Every per-step cache is stacked
over time as (m, s, u). A = h (m, s, u) with ``sequences=True``, else h[:, -1].

Forward, from hp = 0 and Cp_ = 0, for t = 0 .. s-1 (one ``lax.scan``)::

    f_ = X_t . Uf + hp . Vf + bf      f = sigma_f(f_)     (activate_forget)
    i_ = X_t . Ui + hp . Vi + bi      i = sigma_i(i_)     (activate_input)
    g_ = X_t . Ug + hp . Vg + bg      g = tanh_g(g_)      (activate_candidate)
    o_ = X_t . Uo + hp . Vo + bo      o = sigma_o(o_)     (activate_output)
    C_ = Cp_ * f + i * g              cell state (carried), Cp_ its previous value
    C  = tanh(C_)                     (activate)
    h  = o * C                        hidden state; hp is its previous value

Inside the scan the four gates are one product per step:
[f_ i_ g_ o_] = [X_t hp] . [[Uf Ui Ug Uo], [Vf Vi Vg Vo]] + [bf bi bg bo].

Backward (dA = dL/dA, zeros but the last step without ``sequences``), from
dh = dC = 0 after the last step, for t = s-1 .. 0 (one reverse ``lax.scan``)::

    dhn = dh,  dCn = dC                            from step t+1
    dh_ = dA_t + dhn
    dC_ = dh_ * o * tanh'(C_) + dCn
    do_ = dh_ * C * sigma_o'(o_)
    dg_ = dC_ * i * tanh_g'(g_)
    di_ = dC_ * g * sigma_i'(i_)
    df_ = dC_ * Cp_ * sigma_f'(f_)
    dC  = dC_ * f                                  to step t-1
    dh  = sum_k dk_ . Vk^T                         to step t-1
    dX_t = sum_k dk_ . Uk^T

Gradients for each gate k, summed over the batch and the steps::

    dUk = sum_t X_t^T . dk_     dVk = sum_t hp_t^T . dk_     dbk = sum_t sum_m dk_

Implementation (same numbers, less kept per step): each step is ONE product
[X_t hp] . [[U], [V]] (``_recurrent.joint_product``; why, and what it was
measured to save: ``docs/performance.md``, "Recurrent layers");
``hp`` and ``Cp_`` are ``h`` and ``C_`` shifted by one step, computed after
it; f' of tanh and sigmoid is taken from the activation (1 - a^2, a (1 - a)).
So under ``jit`` XLA drops the pre-activations from the training step, and an
evaluation (A only) keeps nothing but the carry.

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

__all__ = ["LSTM"]

GATES = ("f", "i", "g", "o")  # EpyNN's order of parameters and of drawing them


@dataclasses.dataclass(frozen=True)
class LSTM(Layer):
    """LSTM with ``unit_cells`` units; returns all states if ``sequences``."""

    uses_key = False  # draws nothing (see Layer.uses_key)
    sequential = True  # a loop over the steps (see Layer.sequential)

    unit_cells: int = 1
    activate: str = "tanh"
    activate_output: str = "sigmoid"
    activate_candidate: str = "tanh"
    activate_input: str = "sigmoid"
    activate_forget: str = "sigmoid"
    initialization: str = "orthogonal"
    clip_gradients: bool = False
    sequences: bool = False

    def __post_init__(self) -> None:
        check_fields(self, ("activate", "activate_output", "activate_candidate",
                            "activate_input", "activate_forget"))

    @property
    def d(self) -> dict:
        s, e = self._require_built("d")
        return {"u": self.unit_cells, "s": s, "e": e}

    @property
    def gate_activations(self) -> dict[str, str]:
        """Activation of each gate's pre-activation, by gate letter."""
        return {"f": self.activate_forget, "i": self.activate_input,
                "g": self.activate_candidate, "o": self.activate_output}


def compute_shapes(layer: LSTM, X_shape: tuple[int, ...]) -> LSTM:
    """Input must be (m, s, e): a sequence of s steps of e features."""
    check_sample_shape(layer, X_shape)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer: LSTM, key: jax.Array) -> dict:
    """Uk (e, u), Vk (u, u) by ``initialization`` drawn in EpyNN's order
    Uf, Vf, Ui, Vi, Ug, Vg, Uo, Vo (one key each); bk (1, u) zeros."""
    return gate_parameters(layer, key, GATES)


def forward(layer: LSTM, p: dict, X: jax.Array, key=None, training: bool = False):
    """One scan over time. ``fc``: X, h, hp, o_, o, i_, i, f_, f, g_, g, C_, Cp_, C, A."""
    check_sequence(layer, p["Uf"].shape[0], X)
    act = layer.gate_activations
    W = joint_weights(stack_gates(p, "U", GATES), stack_gates(p, "V", GATES))  # (e + u, 4u)
    b = stack_gates(p, "b", GATES)  # (1, 4u)

    def step(carry, x):
        hp, Cp_ = carry
        pre = jnp.split(joint_product(x, hp, W, b), len(GATES), axis=-1)
        pre = dict(zip(GATES, pre, strict=True))
        out = {k: activations.activate(act[k], pre[k], layer.hpars) for k in GATES}
        C_ = Cp_ * out["f"] + out["i"] * out["g"]
        C = activations.activate(layer.activate, C_, layer.hpars)
        h = out["o"] * C
        return (h, C_), {"h": h, "C_": C_, "C": C, **{k + "_": pre[k] for k in GATES}, **out}

    zeros = jnp.zeros((X.shape[0], layer.unit_cells), W.dtype)
    (h_last, _), steps = jax.lax.scan(step, (zeros, zeros), time_steps(X, W.dtype))
    fc = {"X": X, **{k: time_major(v) for k, v in steps.items()}}
    fc["hp"], fc["Cp_"] = previous(fc["h"]), previous(fc["C_"])
    A = fc["h"] if layer.sequences else h_last
    return A, {**fc, "A": A}


def backward(layer: LSTM, p: dict, fc: dict, dA: jax.Array):
    """One reverse scan over time. ``bc``: dA, dh_, dh, dhn, dC_, dC, dCn, do_, dg_, di_,
    df_, dX (EpyNN's never-used ``dz_`` is left out)."""
    check_dA(layer, dA, fc["h"])
    dA = full_dA(layer, dA, fc["h"])
    act = layer.gate_activations
    V = stack_gates(p, "V", GATES)

    def step(carry, c):
        dhn, dCn = carry

        def deriv(name, k):  # f'(k_) of the gate or state k
            return derivative(name, c[k + "_"], c[k], layer.hpars)

        dh_ = c["dA"] + dhn
        dC_ = dh_ * c["o"] * deriv(layer.activate, "C") + dCn
        d = {
            "f": dC_ * c["Cp_"] * deriv(act["f"], "f"),
            "i": dC_ * c["g"] * deriv(act["i"], "i"),
            "g": dC_ * c["i"] * deriv(act["g"], "g"),
            "o": dh_ * c["C"] * deriv(act["o"], "o"),
        }
        dgates = jnp.concatenate([d[k] for k in GATES], axis=-1)  # (m, 4u)
        dC = dC_ * c["f"]
        dh = jnp.dot(dgates, V.T)
        out = {"dhn": dhn, "dCn": dCn, "dh_": dh_, "dC_": dC_, "dC": dC, "dh": dh}
        return (dh, dC), {**out, "dgates": dgates}

    names = ("o", "C_", "C", "o_", "i", "g_", "g", "i_", "Cp_", "f_", "f")
    xs = {"dA": time_major(dA), **{k: time_major(fc[k]) for k in names}}
    zeros = jnp.zeros_like(fc["h"][:, 0])
    _, steps = jax.lax.scan(step, (zeros, zeros), xs, reverse=True)
    dgates = time_major(steps.pop("dgates"))  # (m, s, 4u)
    bc = {k: time_major(v) for k, v in steps.items()}
    for k, dk_ in zip(GATES, jnp.split(dgates, len(GATES), axis=-1), strict=True):
        bc["d" + k + "_"] = dk_
    dX = jnp.einsum("msk,ek->mse", dgates, stack_gates(p, "U", GATES))
    return dX, {"dA": dA, **bc, "dX": dX}


def compute_gradients(layer: LSTM, p: dict, fc: dict, bc: dict) -> dict:
    """dUk, dVk, dbk for k in f, i, g, o (one contraction over m and s for all four
    gates); then EpyNN's clipping if enabled."""
    dgates = jnp.concatenate([bc["d" + k + "_"] for k in GATES], axis=-1)  # (m, s, 4u)
    X = fc["X"].astype(dgates.dtype)
    dU = jnp.einsum("mse,msk->ek", X, dgates)
    dV = jnp.einsum("msv,msk->vk", fc["hp"], dgates)
    db = jnp.sum(dgates, axis=(0, 1))[None, :]
    split = [jnp.split(a, len(GATES), axis=-1) for a in (dU, dV, db)]
    g = {}
    for j, k in enumerate(GATES):
        g["dU" + k], g["dV" + k], g["db" + k] = (s[j] for s in split)
    return clip(layer, g)


# LSTM's methods are the five functions above: layer.forward(...) is forward(layer, ...).
LSTM.compute_shapes = compute_shapes
LSTM.initialize_parameters = initialize_parameters
LSTM.forward = forward
LSTM.backward = backward
LSTM.compute_gradients = compute_gradients
