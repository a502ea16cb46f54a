"""Training: gradients, the compiled epoch, evaluation, ``fit`` and ``predict``.

One epoch is ONE compiled call: the training set stays on the device, a key
shuffles it, the batches (EpyNN's rule: ``N // batch_size`` of them, the
remainder dropped) are a ``lax.scan`` whose step runs forward -> dL/dA ->
the hand-written backward -> an optax update; then every split is evaluated
(full-set forward, ``training=False``) in the same call. Python runs once per
epoch.

Gradients are those of the *sum* of per-sample losses (EpyNN's convention),
so EpyNN's learning rates carry over unchanged. The default optimizer is
plain SGD with EpyNN's per-epoch schedule; any optax
``GradientTransformation`` can be passed instead.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from epynn_jax.layers.base import float_dtype, gradients_to_params
from epynn_jax.maths import losses
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.maths.schedules import Schedule, learning_rates, optax_schedule
from epynn_jax.network.model import (
    Network,
    Params,
    apply,
    backward,
    check_params,
    check_X,
    forward,
)

__all__ = [
    "TrainState",
    "FitResult",
    "loss_value",
    "gradients",
    "autodiff_gradients",
    "epynn_sgd",
    "train_step",
    "epoch_batches",
    "run_epoch",
    "evaluate",
    "fit",
    "predict",
    "check_data",
]


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree)."""

    params: Params
    opt_state: Any
    key: jax.Array


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns."""

    params: Params
    opt_state: Any
    key: jax.Array
    history: dict[str, dict[str, list[float]]]
    epochs: int


# -- gradients -----------------------------------------------------------------


def loss_value(net: Network, params: Params, X, Y, loss: str = "MSE", key=None,
               training: bool = False) -> jax.Array:
    """Sum over samples of the per-sample loss (the training objective)."""
    A, _ = forward(net, params, X, key, training)
    return jnp.sum(losses.loss(loss, Y, A))


def gradients(net: Network, params: Params, X, Y, loss: str = "MSE", key=None,
              training: bool = True):
    """Hand-written gradients of the summed loss.

    Returns ``(grads, A, fcs, gs, bcs)``: ``grads`` shaped like ``params``
    (``g['dW']`` mapped to ``W``), the output, and every layer's caches.
    """
    A, fcs = forward(net, params, X, key, training)
    dA = losses.loss_deriv(loss, Y, A)
    _, gs, bcs = backward(net, params, fcs, dA)
    grads = tuple(gradients_to_params(p, g) for p, g in zip(params, gs))
    return grads, A, fcs, gs, bcs


def autodiff_gradients(net: Network, params: Params, X, Y, loss: str = "MSE", key=None,
                       training: bool = True, custom_vjp: bool = True) -> Params:
    """``jax.grad`` of the summed loss.

    With ``custom_vjp=True`` it runs through :func:`network.apply` (so the
    hand-written backward); with ``False`` JAX differentiates the forward math.
    """
    def objective(params):
        if custom_vjp:
            A = apply(net, params, X, key, training)
        else:
            A, _ = forward(net, params, X, key, training)
        return jnp.sum(losses.loss(loss, Y, A))

    return jax.grad(objective)(params)


# -- optimizer -------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def epynn_sgd(schedule: Schedule = Schedule(), epochs: int = 1,
              steps_per_epoch: int = 1) -> optax.GradientTransformation:
    """EpyNN's update ``p -= lrate[e] * g`` as an optax SGD with a per-epoch schedule.

    Cached, so the same configuration gives the same object (and reuses
    compiled epochs).
    """
    rates = learning_rates(schedule, epochs)
    return optax.sgd(optax_schedule(rates, steps_per_epoch))


# -- the compiled epoch ---------------------------------------------------------------


def _sgd_step(net: Network, optimizer: optax.GradientTransformation, loss: str, params: Params,
              opt_state, X, Y, key):
    """Gradients on one batch and one optimizer update; returns ``(params, opt_state, cost)``."""
    grads, A, _, _, _ = gradients(net, params, X, Y, loss, key, True)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, jnp.mean(losses.loss(loss, Y, A))


def train_step(net: Network, optimizer: optax.GradientTransformation, loss: str,
               state: TrainState, X, Y):
    """One SGD step on one batch; returns ``(state, batch cost)`` (pure, jit-able)."""
    key, sub = jax.random.split(state.key)
    params, opt_state, cost = _sgd_step(net, optimizer, loss, state.params, state.opt_state,
                                        X, Y, sub)
    return TrainState(params, opt_state, key), cost


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


@functools.partial(jax.jit, static_argnames=("net", "optimizer", "loss", "metric_names",
                                              "batch_size"))
def run_epoch(net: Network, optimizer: optax.GradientTransformation, loss: str,
              metric_names: tuple[str, ...], batch_size: int, state: TrainState,
              train: tuple, splits: Mapping[str, tuple]):
    """One epoch as one compiled call: shuffle, scan over batches, evaluate every split.

    Returns ``(state, batch_costs, {split: {metric: value}})``; ``batch_costs`` is
    the mean loss of each batch before its update, shape (n_batches,).

    The per-step PRNG keys come from one vectorized split before the loop (and
    XLA drops it when no layer uses a key): splitting the key inside the loop
    ran a sequential threefry per step, about 20 % of a small Dense epoch's CPU.
    """
    X, Y = train
    key, shuffle_key, step_key = jax.random.split(state.key, 3)
    idx = epoch_batches(shuffle_key, X.shape[0], batch_size)
    step_keys = jax.random.split(step_key, idx.shape[0])

    def step(carry, xs):
        batch_idx, k = xs
        params, opt_state, cost = _sgd_step(net, optimizer, loss, *carry, X[batch_idx],
                                            Y[batch_idx], k)
        return (params, opt_state), cost

    (params, opt_state), costs = jax.lax.scan(step, (state.params, state.opt_state),
                                              (idx, step_keys))
    scores = {name: evaluate(net, params, *xy, metric_names) for name, xy in splits.items()}
    return TrainState(params, opt_state, key), costs, scores


# -- fit and predict ------------------------------------------------------------------


def _as_float(a, where: str) -> jax.Array:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where}: expected numeric data, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: contains NaN or inf values")
    return jnp.asarray(arr, dtype=float_dtype())


def check_data(net: Network, data: Mapping[str, tuple], loss: str) -> dict[str, tuple]:
    """Validate and convert every split ``{name: (X, Y)}`` before any tracing.

    Checks ranks and sizes against the network, finiteness, and that labels
    fit the output (same shape per sample; within [0, 1] for BCE and CCE).
    """
    out = {}
    for name, xy in data.items():
        if not (isinstance(xy, (tuple, list)) and len(xy) == 2):
            raise TypeError(f"data[{name!r}]: expected a pair (X, Y)")
        X, Y = xy
        check_X(net, X, f"{name} X")
        Yshape = tuple(np.shape(Y))
        if Yshape[:1] != tuple(np.shape(X))[:1]:
            raise ValueError(f"{name}: X has {np.shape(X)[0]} samples but Y has "
                             f"{Yshape[0] if Yshape else 0}")
        if Yshape[1:] != net.output_shape:
            raise ValueError(
                f"{name} Y: labels of sample shape {Yshape[1:]} do not fit the output of "
                f"{net.layers[-1].name} (sample shape {net.output_shape}); one-hot encode "
                f"labels to {net.output_shape[-1]} columns or change the output units"
            )
        Xa, Ya = _as_float(X, f"{name} X"), _as_float(Y, f"{name} Y")
        if loss in ("BCE", "CCE") and (float(jnp.min(Ya)) < 0 or float(jnp.max(Ya)) > 1):
            raise ValueError(f"{name} Y: loss {loss} needs labels in [0, 1]")
        out[name] = (Xa, Ya)
    return out


def _as_schedule(schedule) -> Schedule:
    """A :class:`Schedule`, or an EpyNN ``se_hPars`` dict converted to one."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, Mapping):
        return Schedule.from_hpars(schedule)
    raise TypeError(f"fit: schedule must be a Schedule (or an se_hPars dict), got {schedule!r}; "
                    f"e.g. Schedule(learning_rate=0.1, schedule='exp_decay')")


def _as_key(key) -> jax.Array:
    """A PRNG key from a key, an int seed, or None (seed 0)."""
    if key is None:
        return jax.random.key(0)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                       or (key.dtype == jnp.uint32 and key.shape == (2,))):
        return key
    raise TypeError(f"fit: key must be a jax.random.key, an int seed or None, got {key!r}")


def fit(
    net: Network,
    params: Params,
    data: Mapping[str, tuple],
    *,
    epochs: int,
    loss: str = "MSE",
    metrics: Sequence[str] | str = ("accuracy",),
    batch_size: int | None = None,
    schedule: Schedule | Mapping = Schedule(),
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    key: jax.Array | int | None = None,
    train_split: str = "dtrain",
    callbacks: Sequence[Callable[[int, dict], Any]] = (),
) -> FitResult:
    """Train ``net`` for ``epochs`` epochs; evaluate every split after each one.

    ``data`` maps split names to ``(X, Y)``; ``data[train_split]`` is trained
    on (shuffled each epoch from ``key``, ``N // batch_size`` batches, the
    remainder dropped; ``batch_size=None`` is one full batch). ``metrics`` are
    metric or loss names; the training loss is always appended. The default
    optimizer is EpyNN's SGD with ``schedule`` (a :class:`Schedule` or an EpyNN
    ``se_hPars`` dict). ``key`` is a PRNG key or an int seed. Each callback is called as
    ``callback(epoch, history)`` after every epoch and may return ``False`` to
    stop. Returns params, optimizer state, key and the history
    ``{metric: {split: [value per epoch]}}``.
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    if not isinstance(data, Mapping):
        raise TypeError(f"fit: data must be a mapping of split names to (X, Y) pairs such as "
                        f"{{'dtrain': (X, Y)}}, got {type(data).__name__}")
    if batch_size is not None and (not isinstance(batch_size, int)
                                   or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"fit: batch_size must be a positive int or None, got {batch_size!r}")
    schedule = _as_schedule(schedule)
    check_params(net, params)
    loss = losses.check_loss(loss, net.output_activation)
    metrics = (metrics,) if isinstance(metrics, str) else metrics
    metric_names = tuple(dict.fromkeys([*(metrics_lib.check_metric(m) for m in metrics), loss]))
    if train_split not in data:
        raise ValueError(f"fit: data has no training split {train_split!r} "
                         f"(splits: {', '.join(data)})")
    splits = check_data(net, data, loss)
    n_train = splits[train_split][0].shape[0]
    batch_size = n_train if batch_size is None else min(batch_size, n_train)
    steps = max(n_train // batch_size, 1)
    if optimizer is None:
        optimizer = epynn_sgd(schedule, epochs, steps)
    if opt_state is None:
        opt_state = optimizer.init(params)
    key = _as_key(key)
    state = TrainState(tuple(params), opt_state, key)

    history: dict[str, dict[str, list[float]]] = {m: {s: [] for s in splits} for m in metric_names}
    for epoch in range(epochs):
        state, _, scores = run_epoch(net, optimizer, loss, metric_names, batch_size, state,
                                     splits[train_split], splits)
        for split, values in jax.device_get(scores).items():
            for m, v in values.items():
                history[m][split].append(float(v))
        if any(cb(epoch, history) is False for cb in callbacks):
            epochs = epoch + 1
            break
    return FitResult(state.params, state.opt_state, state.key, history, epochs)


@functools.partial(jax.jit, static_argnames=("net",))
def _predict(net: Network, params: Params, X):
    return forward(net, params, X, None, False)[0]


def predict(net: Network, params: Params, X) -> jax.Array:
    """The network's output on ``X`` (no dropout)."""
    check_X(net, X)
    check_params(net, params)
    return _predict(net, tuple(params), _as_float(X, "X"))


def decide(A: jax.Array) -> jax.Array:
    """EpyNN's decisions: argmax for several output units, else round."""
    A2 = A.reshape(A.shape[0], -1)
    return jnp.argmax(A2, axis=1) if A2.shape[1] > 1 else jnp.round(A2[:, 0])


