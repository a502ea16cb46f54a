"""The compiled epoch: one SGD step, one epoch as ONE jitted call, its non-finite guard.

One epoch is one compiled call: the training set stays on the device, the batches
(EpyNN's rule: ``N // batch_size`` of them, the remainder dropped; shuffled from
the state's key, or in the order the caller gives) are a ``lax.scan`` whose step
runs forward -> dL/dA -> the hand-written backward -> an optax update; then
every split is evaluated (full-set forward, ``training=False``) in the same call.
Python runs once per epoch. Both :func:`~epynn_jax.network.fitting.fit` and the
EpyNN facade's ``train()`` run this function.

The optimizer enters as its ``update`` function, a static argument: the
optimizer's numbers (learning rates, schedules) live in its state, so a new rate
reuses the compiled epoch (see :mod:`~epynn_jax.network.optim`).

The smaller pieces below (:func:`forward_jit`, :func:`backward_update`,
:func:`step_caches`) run a network in parts; the facade uses them around its
eager NumPy layers and to fill EpyNN's ``fc``/``bc``/``g`` dicts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from epynn_jax.errors import NonFiniteError
from epynn_jax.layers.base import gradients_to_params
from epynn_jax.maths import losses
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.network import parallel
from epynn_jax.network.model import Network, Params, backward, forward
from epynn_jax.network.objective import gradients

__all__ = [
    "TrainState",
    "train_step",
    "epoch_batches",
    "evaluate",
    "Guard",
    "guarded_train_step",
    "run_epoch",
    "finite_scores",
    "non_finite_error",
    "scores",
    "predict_jit",
    "forward_jit",
    "backward_update",
    "step_caches",
    "last_step_caches",
]

Update = Callable  # an optax ``GradientTransformation.update``


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree)."""

    params: Params
    opt_state: Any
    key: jax.Array


def _update_of(optimizer) -> Update:
    return optimizer.update if hasattr(optimizer, "update") else optimizer


# -- one step ---------------------------------------------------------------------------


def _train_step(net: Network, update: Update, loss: str, state: TrainState, X, Y):
    """:func:`train_step` that also returns the gradients: ``((state, cost), grads)``."""
    key, sub = jax.random.split(state.key)
    grads, A, _, _, _ = gradients(net, state.params, X, Y, loss, sub, True)
    updates, opt_state = update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (TrainState(params, opt_state, key), jnp.mean(losses.loss(loss, Y, A))), grads


def train_step(net: Network, optimizer, loss: str, state: TrainState, X, Y):
    """One SGD step on one batch; returns ``(state, batch cost)`` (pure, jit-able).

    ``optimizer`` is an optax ``GradientTransformation`` or its ``update`` function.
    """
    return _train_step(net, _update_of(optimizer), loss, state, X, Y)[0]


def epoch_batches(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Shuffled sample indices (n_batches, batch_size); the remainder is dropped.

    A ``batch_size`` larger than ``n`` is one batch of all ``n`` samples (as in EpyNN).
    """
    batch_size = min(batch_size, n)
    n_batches = max(n // batch_size, 1)
    return jax.random.permutation(key, n)[: n_batches * batch_size].reshape(n_batches, batch_size)


def evaluate(net: Network, params: Params, X, Y, metric_names: Sequence[str]) -> dict:
    """Every metric on one full set (``training=False``)."""
    A, _ = forward(net, params, X, None, False)
    return {name: metrics_lib.metric(name, Y, A) for name in metric_names}


@functools.partial(jax.jit, static_argnames=("metric_names",))
def scores(metric_names: tuple[str, ...], Y: jax.Array, A: jax.Array) -> dict:
    """``{metric: value}`` of given outputs ``A`` against labels ``Y`` (compiled)."""
    return {name: metrics_lib.metric(name, Y, A) for name in metric_names}


@functools.partial(jax.jit, static_argnames=("net",))
def predict_jit(net: Network, params: Params, X: jax.Array) -> jax.Array:
    """The output ``A`` of ``net`` on ``X`` (no dropout), compiled; no validation."""
    return forward(net, params, X, None, False)[0]


# -- the non-finite guard ---------------------------------------------------------------


def _finite_sum(tree) -> jax.Array:
    """One bool: the sum of every element of ``tree`` is finite.

    A NaN or inf anywhere makes the sum non-finite, so one reduction per leaf
    (fused with the gradient computation) replaces an element-wise test.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.array(True)
    return jnp.isfinite(sum(jnp.sum(x) for x in leaves))


class Guard(NamedTuple):
    """Non-finite watch carried through the scan of ``run_epoch(..., guard=True)``.

    ``ok``: no bad step yet; ``bad_layers`` (n_layers,) bool: the layers whose
    gradient or updated parameters were non-finite at the first bad step;
    ``bad_step``: its index in the epoch (-1: none); ``step``: steps seen.
    """

    ok: jax.Array
    bad_layers: jax.Array
    bad_step: jax.Array
    step: jax.Array


def guarded_train_step(net: Network, optimizer, loss: str, carry: tuple[TrainState, Guard],
                       X, Y):
    """:func:`train_step` that also records the first step whose cost, gradients or
    updated parameters are not finite.

    Only small flags are added to the step (one sum per layer's gradients and
    parameters); the parameters are not masked: when ``guard.ok`` is False after
    the epoch, the caller discards the epoch and keeps the state it started from.
    """
    state, guard = carry
    (state, cost), grads = _train_step(net, _update_of(optimizer), loss, state, X, Y)
    layer_ok = jnp.stack([_finite_sum((g, p)) for g, p in zip(grads, state.params)])
    keep = guard.ok & jnp.all(layer_ok) & jnp.isfinite(cost)
    first_bad = guard.ok & ~keep
    guard = Guard(keep, jnp.where(first_bad, ~layer_ok, guard.bad_layers),
                  jnp.where(first_bad, guard.step, guard.bad_step), guard.step + 1)
    return (state, guard), cost


def finite_scores(scores: Mapping) -> bool:
    """Whether every loss value in ``{split: {metric: value}}`` is finite (host values).

    Only losses count (the training loss is always among the scores): a ratio metric
    (precision, recall, ...) is 0/0, NaN, on a split with no predicted or no true
    positives, undefined there as in EpyNN, not a sign of divergence; a network whose
    numbers diverged makes its loss non-finite too.
    """
    return all(math.isfinite(float(v)) for values in scores.values()
               for name, v in values.items() if name in losses.LOSSES)


def non_finite_error(net: Network, epoch: int, guard: Guard | None, state: TrainState,
                     history: dict, where: str = "fit", scores: Mapping | None = None,
                     advice: str = "", offset: int = 0) -> NonFiniteError:
    """The error for a failed epoch (from its host-side ``guard`` or its ``scores``).

    ``state`` is the state the epoch started from (the last good one); it goes
    into the error's ``params``/``opt_state``/``key`` with ``history``. The guard's
    layer ``i`` is layer ``i + offset`` of ``net`` (the facade trains without its
    first layer, the Embedding).
    """
    bad, step, origin, what = (), None, None, "the training loss"
    if guard is not None and not bool(guard.ok):
        bad = tuple(int(i) + offset for i, b in enumerate(jax.device_get(guard.bad_layers)) if b)
        step = int(guard.bad_step)
        if bad:
            origin = max(bad)  # backward runs last-to-first: the deepest bad layer began it
            what = (f"the gradient or update of layer {origin} ({net.layers[origin].name}) "
                    f"(non-finite in layers {list(bad)})")
        at = f"at epoch {epoch}, batch {step}"
    else:
        failed = [f"{m} on {s}" for s, values in (scores or {}).items()
                  for m, v in values.items() if m in losses.LOSSES and not jnp.isfinite(v)]
        what = f"the evaluation ({', '.join(failed)})"
        at = f"after epoch {epoch}"
    advice = advice or ("Try a lower learning rate, scaled inputs, or fit(debug=True) to find "
                        "the operation.")
    return NonFiniteError(
        f"{where}: {what} became NaN or inf {at}; training stopped and err.params holds the "
        f"parameters of the last good epoch. {advice}",
        epoch=epoch, step=step, layer_index=origin,
        layer_name=None if origin is None else net.layers[origin].name, bad_layers=bad,
        params=state.params, opt_state=state.opt_state, key=state.key, history=history)


# -- the epoch ----------------------------------------------------------------------------


def _epoch_keys(key: jax.Array, n_batches: int):
    """``(next state key, shuffle key, one key per step)``: ONE vectorized split.

    The key a step returns is not carried: without a stochastic layer XLA then
    drops every key computation from the loop (carrying the key ran a sequential
    threefry split per step, about 20 % of a small Dense epoch's CPU time).
    """
    key, shuffle_key, step_key = jax.random.split(key, 3)
    return key, shuffle_key, jax.random.split(step_key, n_batches)


@functools.partial(jax.jit, static_argnames=("net", "update", "loss", "metric_names",
                                              "batch_size", "guard", "mesh"))
def run_epoch(net: Network, update: Update, loss: str, metric_names: tuple[str, ...],
              batch_size: int, state: TrainState, train: tuple, splits: Mapping[str, tuple],
              guard: bool = False, *, idx: jax.Array | None = None, mesh=None):
    """One epoch as one compiled call: shuffle, scan over batches, evaluate every split.

    ``update`` is the optimizer's update function (``optimizer.update``). The
    batches are ``idx`` (n_batches, batch) sample indices into ``train`` when
    given (the facade passes EpyNN's host-side order), else a shuffle of
    ``train`` from the state's key (:func:`epoch_batches`).

    Returns ``(state, batch_costs, {split: {metric: value}})``. With
    ``guard=True`` (what :func:`~epynn_jax.network.fitting.fit` uses) each step is
    :func:`guarded_train_step` and a fourth value, the :class:`Guard`, is
    returned; the host checks ``guard.ok`` once per epoch. With a ``mesh`` (see
    :mod:`~epynn_jax.network.parallel`) every batch is split over the mesh
    axis ``'data'``.
    """
    X, Y = train
    n_batches = idx.shape[0] if idx is not None else max(X.shape[0] // min(batch_size,
                                                                            X.shape[0]), 1)
    key, shuffle_key, step_keys = _epoch_keys(state.key, n_batches)
    if idx is None:
        idx = epoch_batches(shuffle_key, X.shape[0], batch_size)
    if mesh is not None:
        idx = parallel.constrain_indices(idx, mesh)

    def batch(batch_idx):
        XY = (X[batch_idx], Y[batch_idx])
        return XY if mesh is None else parallel.constrain_batch(XY, mesh)

    if guard:
        watch = Guard(jnp.array(True), jnp.zeros(len(net.layers), bool), jnp.array(-1),
                      jnp.array(0))

        def guarded(carry, x):
            (params, opt_state), watch = carry
            (st, watch), cost = guarded_train_step(
                net, update, loss, (TrainState(params, opt_state, x[1]), watch), *batch(x[0]))
            return ((st.params, st.opt_state), watch), cost

        ((params, opt_state), watch), costs = jax.lax.scan(
            guarded, ((state.params, state.opt_state), watch), (idx, step_keys))
    else:
        def step(carry, x):
            st, cost = train_step(net, update, loss, TrainState(*carry, x[1]), *batch(x[0]))
            return (st.params, st.opt_state), cost

        (params, opt_state), costs = jax.lax.scan(step, (state.params, state.opt_state),
                                                  (idx, step_keys))
    state = TrainState(params, opt_state, key)
    if mesh is not None:
        splits = parallel.constrain_samples(splits, mesh)
    scores = {name: evaluate(net, params, *xy, metric_names) for name, xy in splits.items()}
    return (state, costs, scores, watch) if guard else (state, costs, scores)


# -- a network in parts -----------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("net", "training"))
def forward_jit(net: Network, params: Params, X: jax.Array, key, training: bool):
    """``(A, fcs)``: :func:`~epynn_jax.network.model.forward`, compiled."""
    return forward(net, params, X, key, training)


@functools.partial(jax.jit, static_argnames=("net", "update"))
def backward_update(net: Network, update: Update, params: Params, opt_state, fcs: tuple,
                    dA: jax.Array):
    """Backward through ``net`` from ``dA``, then the optimizer's step on its parameters.

    Returns ``(dX, params, opt_state, gs, bcs)``.
    """
    dX, gs, bcs = backward(net, params, fcs, dA)
    grads = tuple(gradients_to_params(p, g) for p, g in zip(params, gs))
    updates, opt_state = update(grads, opt_state, params)
    return dX, optax.apply_updates(params, updates), opt_state, gs, bcs


@functools.partial(jax.jit, static_argnames=("loss",))
def loss_and_deriv(loss: str, Y: jax.Array, A: jax.Array):
    """``(mean cost, dL/dA)`` of one batch."""
    return jnp.mean(losses.loss(loss, Y, A)), losses.loss_deriv(loss, Y, A)


@functools.partial(jax.jit, static_argnames=("net", "loss"))
def step_caches(net: Network, loss: str, params: Params, X: jax.Array, Y: jax.Array, key):
    """Every layer's ``fc``, ``bc`` and ``g`` for one batch (no update)."""
    A, fcs = forward(net, params, X, key, True)
    _, gs, bcs = backward(net, params, fcs, losses.loss_deriv(loss, Y, A))
    return fcs, bcs, gs


@functools.partial(jax.jit, static_argnames=("net", "update", "loss"))
def last_step_caches(net: Network, update: Update, loss: str, state: TrainState, train: tuple,
                     idx: jax.Array):
    """The ``fc``, ``bc`` and ``g`` of an epoch's LAST step, replayed from the state the
    epoch started from with the batches ``idx`` (as :func:`run_epoch` ran them: the same
    step keys, the same updates before it)."""
    X, Y = train
    _, _, step_keys = _epoch_keys(state.key, idx.shape[0])

    def step(carry, x):
        st, _ = train_step(net, update, loss, TrainState(*carry, x[1]), X[x[0]], Y[x[0]])
        return (st.params, st.opt_state), None

    (params, _), _ = jax.lax.scan(step, (state.params, state.opt_state),
                                  (idx[:-1], step_keys[:-1]))
    _, sub = jax.random.split(step_keys[-1])  # the key the last train_step drew with
    return step_caches(net, loss, params, X[idx[-1]], Y[idx[-1]], sub)
