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
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from epynn_jax.errors import NonFiniteError, TrainingInterrupted
from epynn_jax.layers.base import float_dtype, gradients_to_params
from epynn_jax.maths import losses
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.maths.schedules import Schedule, learning_rates
from epynn_jax.network import parallel
from epynn_jax.network.model import Network, Params, apply, backward, check_X, forward

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
    "Guard",
    "guarded_train_step",
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
    checkpoints: dict[str, Path] = dataclasses.field(default_factory=dict)


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


class EpynnSGDState(NamedTuple):
    """State of :func:`epynn_sgd`: steps taken, and the schedule's numbers
    ``(learning_rate, cycle_descent, decay_k, cycle_epochs, epochs)`` with
    ``decay_k`` and ``cycle_epochs`` already resolved (never 0)."""

    count: jax.Array
    hpars: jax.Array


class EpynnSGD(NamedTuple):
    """EpyNN's SGD as an optax ``GradientTransformation`` (``init``, ``update``).

    The schedule's numbers live in the optimizer *state*; the update function
    depends only on the schedule's kind and ``steps_per_epoch``, and the object
    compares equal to any other with the same two. The compiled epoch (jit's
    cache key includes the optimizer) is then reused across learning rates
    and epoch counts: ``fit(epochs=3)`` then ``fit(epochs=5)`` compile once.
    """

    init: Callable
    update: Callable
    kind: str
    steps_per_epoch: int

    def __hash__(self) -> int:
        return hash((EpynnSGD, self.kind, self.steps_per_epoch))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, EpynnSGD) and other.kind == self.kind
                and other.steps_per_epoch == self.steps_per_epoch)


def _rate(kind: str, hpars: jax.Array, x: jax.Array) -> jax.Array:
    """The rate of epoch ``x``: :func:`~epynn_jax.maths.schedules.learning_rates` in jnp."""
    lr, d, k, epc = hpars[0], hpars[1], hpars[2], hpars[3]
    if kind == "steady":
        return lr
    if kind == "exp_decay":
        return lr * (1 - d) ** (x // epc) * jnp.exp(-(x % epc) * k)
    return lr / (1 + k * 100 * x)


@functools.lru_cache(maxsize=64)
def _epynn_sgd_update(kind: str, steps_per_epoch: int) -> Callable:
    def update(updates, state: EpynnSGDState, params=None):
        hp = state.hpars
        epoch = jnp.minimum(state.count // steps_per_epoch, hp[4].astype(jnp.int32) - 1)
        rate = _rate(kind, hp, epoch.astype(hp.dtype))
        updates = jax.tree_util.tree_map(lambda g: jnp.asarray(-rate, g.dtype) * g, updates)
        return updates, EpynnSGDState(optax.safe_int32_increment(state.count), hp)

    return update


def epynn_sgd(schedule: Schedule = Schedule(), epochs: int = 1,
              steps_per_epoch: int = 1) -> EpynnSGD:
    """EpyNN's update ``p -= lrate[e] * g``: SGD with a per-epoch schedule.

    At step ``t`` the rate is ``lrate[t // steps_per_epoch]`` (the last one
    after the end), ``lrate`` being :func:`~epynn_jax.maths.schedules.learning_rates`
    of ``schedule`` over ``epochs``. The schedule's numbers are part of the
    optimizer state, so a new rate or epoch count needs no new compilation.
    """
    learning_rates(schedule, epochs)  # validates epochs
    epc = schedule.cycle_epochs if schedule.cycle_epochs else epochs
    k = schedule.decay_k if schedule.decay_k else 5 / epc
    numbers = (schedule.learning_rate, schedule.cycle_descent, k, epc, epochs)

    def init(params) -> EpynnSGDState:
        return EpynnSGDState(jnp.zeros([], jnp.int32), jnp.asarray(numbers, float_dtype()))

    steps = int(steps_per_epoch)
    return EpynnSGD(init, _epynn_sgd_update(schedule.schedule, steps), schedule.schedule, steps)


# -- the compiled epoch ---------------------------------------------------------------


def _train_step(net: Network, optimizer: optax.GradientTransformation, loss: str,
                state: TrainState, X, Y):
    """:func:`train_step` that also returns the gradients: ``((state, cost), grads)``."""
    key, sub = jax.random.split(state.key)
    grads, A, _, _, _ = gradients(net, state.params, X, Y, loss, sub, True)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (TrainState(params, opt_state, key), jnp.mean(losses.loss(loss, Y, A))), grads


def train_step(net: Network, optimizer: optax.GradientTransformation, loss: str,
               state: TrainState, X, Y):
    """One SGD step on one batch; returns ``(state, batch cost)`` (pure, jit-able)."""
    return _train_step(net, optimizer, loss, state, X, Y)[0]


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
    gradient or updated parameters were non-finite at the first bad step; ``bad_step``: its index in
    the epoch (-1: none); ``step``: steps seen.
    """

    ok: jax.Array
    bad_layers: jax.Array
    bad_step: jax.Array
    step: jax.Array


def guarded_train_step(net: Network, optimizer: optax.GradientTransformation, loss: str,
                       carry: tuple[TrainState, Guard], X, Y):
    """:func:`train_step` that also records the first step whose cost, gradients or
    updated parameters are not finite.

    Only small flags are added to the step (one sum per layer's gradients and
    parameters); the
    parameters are not masked: when ``guard.ok`` is False after the epoch, the
    caller discards the epoch and keeps the state it started from.
    """
    state, guard = carry
    (state, cost), grads = _train_step(net, optimizer, loss, state, X, Y)
    layer_ok = jnp.stack([_finite_sum((g, p)) for g, p in zip(grads, state.params)])
    keep = guard.ok & jnp.all(layer_ok) & jnp.isfinite(cost)
    first_bad = guard.ok & ~keep
    guard = Guard(keep, jnp.where(first_bad, ~layer_ok, guard.bad_layers),
                  jnp.where(first_bad, guard.step, guard.bad_step), guard.step + 1)
    return (state, guard), cost


@functools.partial(jax.jit, static_argnames=("net", "optimizer", "loss", "metric_names",
                                              "batch_size", "guard", "mesh"))
def run_epoch(net: Network, optimizer: optax.GradientTransformation, loss: str,
              metric_names: tuple[str, ...], batch_size: int, state: TrainState,
              train: tuple, splits: Mapping[str, tuple], guard: bool = False, *, mesh=None):
    """One epoch as one compiled call: shuffle, scan over batches, evaluate every split.

    Returns ``(state, batch_costs, {split: {metric: value}})``. With
    ``guard=True`` (what :func:`fit` uses) each step is
    :func:`guarded_train_step` and a fourth value, the :class:`Guard`, is
    returned; the host checks ``guard.ok`` once per epoch. With a ``mesh`` (see
    :mod:`~epynn_jax.network.parallel`) every batch is split over the mesh
    axis ``'data'``.

    Each step gets its own key from ONE vectorized split before the loop, and
    the key a step returns is not carried: without a stochastic layer XLA then
    drops every key computation from the loop. (Carrying the key ran a
    sequential threefry split per step, about 20 % of a small Dense epoch's CPU
    time against a plain-JAX loop.)
    """
    X, Y = train
    key, shuffle_key, step_key = jax.random.split(state.key, 3)
    idx = epoch_batches(shuffle_key, X.shape[0], batch_size)
    if mesh is not None:
        idx = parallel.constrain_indices(idx, mesh)
    xs = (idx, jax.random.split(step_key, idx.shape[0]))

    def batch(batch_idx):
        XY = (X[batch_idx], Y[batch_idx])
        return XY if mesh is None else parallel.constrain_batch(XY, mesh)

    if guard:
        watch = Guard(jnp.array(True), jnp.zeros(len(net.layers), bool), jnp.array(-1),
                      jnp.array(0))

        def guarded(carry, x):
            (params, opt_state), watch = carry
            (st, watch), cost = guarded_train_step(
                net, optimizer, loss, (TrainState(params, opt_state, x[1]), watch), *batch(x[0]))
            return ((st.params, st.opt_state), watch), cost

        ((params, opt_state), watch), costs = jax.lax.scan(
            guarded, ((state.params, state.opt_state), watch), xs)
    else:
        def step(carry, x):
            st, cost = train_step(net, optimizer, loss, TrainState(*carry, x[1]), *batch(x[0]))
            return (st.params, st.opt_state), cost

        (params, opt_state), costs = jax.lax.scan(step, (state.params, state.opt_state), xs)
    state = TrainState(params, opt_state, key)
    if mesh is not None:
        splits = parallel.constrain_samples(splits, mesh)
    scores = {name: evaluate(net, params, *xy, metric_names) for name, xy in splits.items()}
    return (state, costs, scores, watch) if guard else (state, costs, scores)


# -- fit and predict ------------------------------------------------------------------


def _as_float(a, where: str) -> jax.Array:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where}: expected numeric data, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # finite float64 beyond float32's range becomes inf
        arr = arr.astype(np.dtype(float_dtype()))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: contains NaN or inf values (after conversion to "
                         f"{arr.dtype})")
    return jnp.asarray(arr)


def _positive_int(value: Any, name: str) -> int:
    """A Python or NumPy int >= 1 (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    return int(value)


def check_params(net: Network, params: Any, where: str = "fit") -> Params:
    """Raise before tracing unless ``params`` has one dict per layer with the layer's shapes."""
    if not isinstance(params, (tuple, list)) or len(params) != len(net.layers):
        raise ValueError(f"{where}: params must be a tuple of {len(net.layers)} dicts (one per "
                         f"layer, from network.init), got {type(params).__name__} of "
                         f"{len(params) if isinstance(params, (tuple, list)) else '?'}")
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        expected = layer.param_shapes()
        if not isinstance(p, Mapping) or set(p) != set(expected):
            got = sorted(map(str, p)) if isinstance(p, Mapping) else repr(p)
            raise ValueError(f"{where}: layer {i} ({layer.name}) has parameters "
                             f"{sorted(expected)}, got {got}")
        for k, shape in expected.items():
            got, dtype = tuple(np.shape(p[k])), getattr(p[k], "dtype", np.asarray(p[k]).dtype)
            if got != shape or np.dtype(dtype).kind != "f":
                raise ValueError(f"{where}: layer {i} ({layer.name}) parameter {k!r} must be "
                                 f"float {shape}, got {np.dtype(dtype)} {got}")
    return tuple(params)


def _check_key(key: Any) -> jax.Array:
    if key is None:
        return jax.random.key(0)
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) \
            and key.shape == ():
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,):
        return key  # a legacy jax.random.PRNGKey
    raise TypeError(f"fit: key must be a PRNG key such as jax.random.key(0), got {key!r}")


def _check_options(schedule, optimizer, callbacks, metrics) -> tuple:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"fit: schedule must be a Schedule, got {schedule!r}")
    if optimizer is not None and not (callable(getattr(optimizer, "init", None))
                                      and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"fit: optimizer must be an optax GradientTransformation, got "
                        f"{optimizer!r}")
    if not all(callable(cb) for cb in callbacks):
        raise TypeError(f"fit: every callback must be callable, got {list(callbacks)!r}")
    return (metrics,) if isinstance(metrics, str) else tuple(metrics)


def _check_opt_state(optimizer, params: Params, opt_state: Any) -> None:
    expected = jax.eval_shape(optimizer.init, params)
    same = jax.tree.structure(expected) == jax.tree.structure(opt_state) and all(
        tuple(np.shape(a)) == tuple(b.shape)
        for a, b in zip(jax.tree.leaves(opt_state), jax.tree.leaves(expected)))
    if not same:
        raise ValueError("fit: opt_state does not match the optimizer's state for these params "
                         "(pass the optimizer it came from, or opt_state=None)")


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


# -- checkpoints, resume and the non-finite check (host side of fit) ----------------------

CHECKPOINT_SUFFIX = ".epynn"


class _Progress(NamedTuple):
    """State, history and epochs done, replaced as ONE object so Ctrl-C never splits them."""

    state: TrainState
    history: dict
    epoch: int


class _Checkpointing(NamedTuple):
    directory: Path | None
    every: int | None
    best: tuple[str, str, str] | None


def _check_checkpointing(checkpoint_dir, checkpoint_every, checkpoint_best,
                         metric_names: tuple[str, ...], splits: Mapping) -> _Checkpointing:
    """Validate fit's checkpoint arguments (before any tracing)."""
    if checkpoint_dir is None:
        if checkpoint_every is not None or checkpoint_best is not None:
            raise ValueError("fit: checkpoint_every/checkpoint_best need a checkpoint_dir")
        return _Checkpointing(None, None, None)
    directory = Path(checkpoint_dir)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"fit: checkpoint_dir {str(directory)!r} is not a directory")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or isinstance(
            checkpoint_every, bool) or checkpoint_every < 1):
        raise ValueError(f"fit: checkpoint_every must be a positive int, got {checkpoint_every!r}")
    best = None
    if checkpoint_best is not None:
        if not (isinstance(checkpoint_best, (tuple, list)) and len(checkpoint_best) == 3):
            raise ValueError("fit: checkpoint_best must be a (metric, split, mode) triple, e.g. "
                             f"('accuracy', 'dval', 'max'), got {checkpoint_best!r}")
        metric, split, mode = checkpoint_best
        metric = metrics_lib.check_metric(metric)
        if metric not in metric_names:
            raise ValueError(f"fit: checkpoint_best metric {metric!r} is not computed "
                             f"(metrics: {', '.join(metric_names)})")
        if split not in splits:
            raise ValueError(f"fit: checkpoint_best split {split!r} is not in data "
                             f"(splits: {', '.join(splits)})")
        if mode not in ("max", "min"):
            raise ValueError(f"fit: checkpoint_best mode must be 'max' or 'min', got {mode!r}")
        best = (metric, split, mode)
    directory.mkdir(parents=True, exist_ok=True)
    return _Checkpointing(directory, checkpoint_every, best)


def _best_value(values: Sequence[float], mode: str) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def _improved(history: dict, best: tuple[str, str, str]) -> bool:
    """Whether the last epoch is the best so far (strictly better than every earlier one)."""
    metric, split, mode = best
    values = history[metric][split]
    last, before = values[-1], _best_value(values[:-1], mode)
    if not math.isfinite(last):
        return False
    return before is None or (last > before if mode == "max" else last < before)


def _save(ck: _Checkpointing, name: str, net: Network, progress: _Progress,
          metadata: dict) -> Path:
    from epynn_jax.io.checkpoint import save_checkpoint

    path = ck.directory / f"{name}{CHECKPOINT_SUFFIX}"
    state = progress.state
    return save_checkpoint(path, net, state.params, opt_state=state.opt_state, key=state.key,
                           epoch=progress.epoch, history=progress.history, metadata=metadata)


def _resume(resume, net: Network, optimizer, metadata: dict, empty_history: dict,
            epochs: int) -> _Progress:
    """Load the checkpoint ``resume`` (a file, or a directory holding ``last.epynn``)."""
    from epynn_jax.io.checkpoint import load_checkpoint, restore_opt_state

    path = Path(resume)
    if path.is_dir():
        path = path / f"last{CHECKPOINT_SUFFIX}"
    ck = load_checkpoint(path)
    if ck.net != net:
        raise ValueError(f"fit: resume checkpoint {str(path)!r} holds another architecture "
                         f"({', '.join(layer.name for layer in ck.net.layers)})")
    ck = ck._replace(opt_state=restore_opt_state(optimizer, ck.params, ck.opt_state))
    if ck.key is None:
        raise ValueError(f"fit: resume checkpoint {str(path)!r} has no PRNG key")
    for field in ("loss", "batch_size", "train_split"):
        if ck.metadata.get(field) != metadata[field]:
            raise ValueError(f"fit: resume checkpoint was trained with {field}="
                             f"{ck.metadata.get(field)!r}, this fit has {metadata[field]!r}")
    history = ck.history or {}
    if {m: set(v) for m, v in history.items()} != {m: set(v) for m, v in empty_history.items()} \
            or any(len(v) != ck.epoch for d in history.values() for v in d.values()):
        raise ValueError("fit: resume checkpoint's history has other metrics or splits "
                         f"({sorted(history)}) than this fit ({sorted(empty_history)})")
    if ck.epoch > epochs:
        raise ValueError(f"fit: resume checkpoint is at epoch {ck.epoch}, beyond epochs={epochs} "
                         "(epochs is the TOTAL number of epochs)")
    if metadata.get("epochs") != ck.metadata.get("epochs") and metadata.get("schedule"):
        warnings.warn(f"fit: resuming a run planned for {ck.metadata.get('epochs')} epochs with "
                      f"epochs={epochs}: the default schedule depends on the total, so this run "
                      "will not match an uninterrupted one", stacklevel=3)
    return _Progress(TrainState(tuple(ck.params), ck.opt_state, ck.key), history, ck.epoch)


def _append(history: dict, scores: dict) -> dict:
    """A new history with one more epoch of ``scores`` ({split: {metric: value}})."""
    out = {m: {s: list(v) for s, v in d.items()} for m, d in history.items()}
    for split, values in scores.items():
        for m, v in values.items():
            out[m][split].append(float(v))
    return out


def _non_finite(net: Network, epoch: int, guard: Guard, progress: _Progress) -> NonFiniteError:
    """The error for a failed epoch; its params are those the epoch started from."""
    state = progress.state
    bad = tuple(int(i) for i in np.flatnonzero(np.asarray(guard.bad_layers)))
    step = int(guard.bad_step)
    if bad:
        origin = max(bad)  # backward runs last-to-first: the deepest bad layer is where it began
        what = (f"the gradient or update of layer {origin} ({net.layers[origin].name}) "
                f"(non-finite in layers {list(bad)})")
    else:
        origin, what = None, "the training loss"
    return NonFiniteError(
        f"fit: {what} became NaN or inf at epoch {epoch}, batch {step}; training stopped and "
        "err.params holds the parameters of the last good epoch. Try a lower learning rate, "
        "scaled inputs, or fit(debug=True) to find the operation.",
        epoch=epoch, step=step, layer_index=origin,
        layer_name=None if origin is None else net.layers[origin].name, bad_layers=bad,
        params=state.params, opt_state=state.opt_state, key=state.key, history=progress.history)


def _debug_error(epoch: int, err: FloatingPointError, progress: _Progress) -> NonFiniteError:
    s = progress.state
    return NonFiniteError(
        f"fit: NaN or inf at epoch {epoch} (debug mode, jax.debug_nans): {err}; the chained "
        "traceback shows the operation; err.params holds the parameters at the start of "
        "that epoch",
        epoch=epoch, params=s.params, opt_state=s.opt_state, key=s.key, history=progress.history)


def _epoch(net, optimizer, loss, metric_names, batch_size, state, train, splits,
           check_finite: bool, debug: bool, mesh=None):
    """One compiled epoch; returns ``(state, scores, guard or None)`` on the host side."""
    if debug:  # op by op (scan becomes a Python loop), so the first bad operation raises
        with jax.disable_jit(), jax.debug_nans(True), jax.debug_infs(True):
            return _epoch(net, optimizer, loss, metric_names, batch_size, state, train, splits,
                          check_finite, False, mesh)
    if check_finite:
        state, _, scores, guard = run_epoch(net, optimizer, loss, metric_names, batch_size,
                                            state, train, splits, guard=True, mesh=mesh)
        return state, jax.device_get(scores), jax.device_get(guard)
    state, _, scores = run_epoch(net, optimizer, loss, metric_names, batch_size, state,
                                 train, splits, mesh=mesh)
    return state, jax.device_get(scores), None


def fit(
    net: Network,
    params: Params,
    data: Mapping[str, tuple],
    *,
    epochs: int,
    loss: str = "MSE",
    metrics: Sequence[str] = ("accuracy",),
    batch_size: int | None = None,
    schedule: Schedule = Schedule(),
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    key: jax.Array | None = None,
    train_split: str = "dtrain",
    callbacks: Sequence[Callable[[int, dict], Any]] = (),
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    checkpoint_best: tuple[str, str, str] | None = None,
    resume: str | Path | None = None,
    check_finite: bool = True,
    debug: bool = False,
    mesh: Any = None,
) -> FitResult:
    """Train ``net`` until ``epochs`` epochs are done; evaluate every split after each one.

    ``data`` maps split names to ``(X, Y)``; ``data[train_split]`` is trained
    on (shuffled each epoch from ``key``, ``N // batch_size`` batches, the
    remainder dropped; ``batch_size=None`` is one full batch). ``metrics`` are
    metric or loss names; the training loss is always appended. The default
    optimizer is EpyNN's SGD with ``schedule`` (which depends on the total
    ``epochs``). Each callback is called as ``callback(epoch, history)`` after
    every epoch and may return ``False`` to stop. Returns params, optimizer
    state, key and the history ``{metric: {split: [value per epoch]}}``.

    Checkpoints (files ``last.epynn`` and ``best.epynn`` in ``checkpoint_dir``,
    written atomically by :mod:`epynn_jax.io.checkpoint`): ``last`` every
    ``checkpoint_every`` epochs, at the end, and on Ctrl-C; ``best`` whenever
    the ``checkpoint_best=(metric, split, 'max'|'min')`` value improves.

    ``resume`` (a checkpoint file, or a directory holding ``last.epynn``)
    continues a run: params, optimizer state (with the schedule's step count),
    PRNG key and history come from the checkpoint (overriding ``params``,
    ``opt_state`` and ``key``), and training runs from the saved epoch up to
    ``epochs``, which counts the TOTAL epochs. Resuming with the same arguments
    gives bitwise the parameters of an uninterrupted run.

    Ctrl-C: the ``KeyboardInterrupt`` is caught, the state of the last
    COMPLETED epoch is checkpointed (when ``checkpoint_dir`` is set), and
    :class:`~epynn_jax.errors.TrainingInterrupted` (a ``KeyboardInterrupt``) is
    raised with ``.result`` (that state as a ``FitResult``) and ``.checkpoint``.

    Non-finite guard (``check_finite=True``): when a batch's loss or any
    layer's gradient or updated parameters become NaN or inf, the rest of the
    epoch's updates are dropped on the device and
    :class:`~epynn_jax.errors.NonFiniteError` is raised naming the epoch, batch
    and layer, with the last good ``params``/``opt_state`` and the ``history``.
    ``debug=True`` runs each epoch op by op (``jax.disable_jit``) under
    ``jax.debug_nans``/``debug_infs``, so the first operation that makes a NaN
    or inf raises (slow; for finding the cause).

    ``mesh`` (a ``jax.sharding.Mesh`` with an axis ``'data'``, or a list of
    devices) trains data-parallel: each batch is split over the devices,
    parameters are replicated and gradients summed across devices (see
    :mod:`~epynn_jax.network.parallel`); ``batch_size`` must be divisible by
    the number of devices.
    """
    epochs = _positive_int(epochs, "epochs")
    if not isinstance(data, Mapping):
        raise TypeError(f"fit: data must map split names to (X, Y), got {type(data).__name__}")
    metrics = _check_options(schedule, optimizer, callbacks, metrics)
    if resume is None or params is not None:  # resuming takes the checkpoint's params
        params = check_params(net, params)
    loss = losses.check_loss(loss, net.output_activation)
    metric_names = tuple(dict.fromkeys([*(metrics_lib.check_metric(m) for m in metrics), loss]))
    if train_split not in data:
        raise ValueError(f"fit: data has no training split {train_split!r} "
                         f"(splits: {', '.join(data)})")
    splits = check_data(net, data, loss)
    n_train = splits[train_split][0].shape[0]
    batch_size = min(n_train if batch_size is None else _positive_int(batch_size, "batch_size"),
                     n_train)
    if mesh is not None:
        mesh = parallel.as_mesh(mesh)
        parallel.check_batch_size(mesh, batch_size)
    ck = _check_checkpointing(checkpoint_dir, checkpoint_every, checkpoint_best, metric_names,
                              splits)
    steps = max(n_train // batch_size, 1)
    metadata = {"loss": loss, "metrics": list(metric_names), "batch_size": batch_size,
                "train_split": train_split, "epochs": epochs,
                "schedule": dataclasses.asdict(schedule) if optimizer is None else None}
    if optimizer is None:
        optimizer = epynn_sgd(schedule, epochs, steps)
    history: dict[str, dict[str, list[float]]] = {m: {s: [] for s in splits} for m in metric_names}
    if resume is not None:
        progress = _resume(resume, net, optimizer, metadata, history, epochs)
    else:
        if opt_state is None:
            opt_state = optimizer.init(params)
        else:
            _check_opt_state(optimizer, params, opt_state)
        key = _check_key(key)
        progress = _Progress(TrainState(tuple(params), opt_state, key), history, 0)
    if mesh is not None:
        state, splits = parallel.place(mesh, progress.state, splits, train_split)
        progress = progress._replace(state=state)
    run = _epoch if mesh is None else functools.partial(_epoch, mesh=mesh)

    saved: dict[str, Path] = {}
    last_epoch = None
    try:
        for epoch in range(progress.epoch, epochs):
            try:
                state, scores, guard = run(net, optimizer, loss, metric_names, batch_size,
                                           progress.state, splits[train_split], splits,
                                           check_finite, debug)
            except FloatingPointError as err:  # debug=True: jax.debug_nans found the operation
                raise _debug_error(epoch, err, progress) from err
            if guard is not None and not bool(guard.ok):
                raise _non_finite(net, epoch, guard, progress)
            progress = _Progress(state, _append(progress.history, scores), epoch + 1)
            if ck.best is not None and _improved(progress.history, ck.best):
                saved["best"] = _save(ck, "best", net, progress, metadata)
            if ck.every is not None and progress.epoch % ck.every == 0:
                saved["last"], last_epoch = _save(ck, "last", net, progress, metadata), epoch + 1
            if any(cb(epoch, progress.history) is False for cb in callbacks):
                break
        if ck.directory is not None and last_epoch != progress.epoch:
            saved["last"] = _save(ck, "last", net, progress, metadata)
    except KeyboardInterrupt as err:
        last = saved.get("last") if last_epoch == progress.epoch else None
        if ck.directory is not None and last is None:
            last = saved["last"] = _save(ck, "last", net, progress, metadata)
        raise TrainingInterrupted(
            f"fit interrupted after {progress.epoch} completed epochs"
            + (f"; checkpoint saved to {last}" if last else ""),
            result=_result(progress, saved), checkpoint=last) from err
    return _result(progress, saved)


def _result(progress: _Progress, saved: dict) -> FitResult:
    s = progress.state
    return FitResult(s.params, s.opt_state, s.key, progress.history, progress.epoch, dict(saved))


@functools.partial(jax.jit, static_argnames=("net",))
def _predict(net: Network, params: Params, X):
    return forward(net, params, X, None, False)[0]


def predict(net: Network, params: Params, X) -> jax.Array:
    """The network's output on ``X`` (no dropout)."""
    check_X(net, X)
    return _predict(net, check_params(net, params, "predict"), _as_float(X, "X"))


def decide(A: jax.Array) -> jax.Array:
    """EpyNN's decisions: argmax for several output units, else round."""
    A2 = A.reshape(A.shape[0], -1)
    return jnp.argmax(A2, axis=1) if A2.shape[1] > 1 else jnp.round(A2[:, 0])


