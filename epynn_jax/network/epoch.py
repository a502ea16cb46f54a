"""The compiled epoch: one SGD step, one epoch as ONE jitted call, its non-finite guard.

One epoch is one compiled call: the training set stays on the device, the batches
(EpyNN's rule: ``N // batch_size`` of them, the remainder dropped; shuffled from
the state's key, or in the order the caller gives) are a ``lax.scan`` whose step
runs forward -> dL/dA -> the hand-written backward -> an optax update; then
every split is evaluated (full-set forward, ``training=False``) in the same call.
The EpyNN facade's ``train()`` runs one per call (:func:`run_epoch`);
:func:`~epynn_jax.network.fitting.fit` runs the same epoch several times per call
when nothing on the host needs each one (:func:`run_epochs`).

The optimizer enters as its ``update`` function, a static argument: the
optimizer's numbers (learning rates, schedules) live in its state, so a new rate
reuses the compiled epoch (see :mod:`~epynn_jax.network.optim`).

The smaller pieces below (:func:`forward_jit`, :func:`backward_update`,
:func:`step_caches`) run a network in parts; the facade uses them around its
eager NumPy layers and to fill EpyNN's ``fc``/``bc``/``g`` dicts.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.errors import NonFiniteError
from epynn_jax.layers.base import float_dtype, gradients_to_params
from epynn_jax.maths import losses, prng
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.network import _gc, checks, parallel, programs
from epynn_jax.network.model import Network, Params, backward, forward
from epynn_jax.network.objective import gradients
from epynn_jax.network.optim import loss_scale_of

__all__ = [
    "TrainState",
    "train_step",
    "step_keys",
    "train_steps",
    "epoch_batches",
    "EVAL_CHUNK_BYTES",
    "eval_chunk",
    "evaluate",
    "evaluate_splits",
    "Guard",
    "epoch_ok",
    "epoch_guard",
    "guarded_train_step",
    "run_epoch",
    "run_epochs",
    "EPOCH_BLOCK",
    "locate_non_finite",
    "failed_guard",
    "finite_scores",
    "fetch",
    "non_finite_error",
    "scores",
    "predict_jit",
    "stored_predict",
    "stored_run_epoch",
    "stored_run_epochs",
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


def _apply_updates(params: Params, updates) -> Params:
    """``optax.apply_updates``; optax is imported when a step is traced, not with this
    module (it is most of the package's import time, see :mod:`.optim`)."""
    import optax

    return optax.apply_updates(params, updates)


def train_step(net: Network, optimizer, loss: str, state: TrainState, X, Y):
    """One SGD step on one batch; returns ``(state, batch cost)`` (pure, jit-able).

    ``optimizer`` is an optax ``GradientTransformation`` or its ``update`` function.
    """
    key, sub = (None, None) if state.key is None else prng.split(state.key)
    grads, A, _, _, _ = gradients(net, state.params, X, Y, loss, sub, True,
                                  loss_scale_of(state.opt_state))
    updates, opt_state = _update_of(optimizer)(grads, state.opt_state, state.params)
    params = _apply_updates(state.params, updates)
    return TrainState(params, opt_state, key), jnp.mean(losses.loss(loss, Y, A))


def epoch_batches(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Shuffled sample indices (n_batches, batch_size); the remainder is dropped.

    A ``batch_size`` larger than ``n`` is one batch of all ``n`` samples (as in EpyNN).
    """
    batch_size = min(batch_size, n)
    n_batches = max(n // batch_size, 1)
    return prng.permutation(key, n)[: n_batches * batch_size].reshape(n_batches, batch_size)


#: Bytes of forward caches one evaluation chunk may hold, by platform (see
#: :func:`eval_chunk`): on a CPU, chunks of 512 to 6,000 samples evaluated as fast as
#: one forward over the set; an accelerator wants wide chunks to fill it (a recurrent
#: chunk costs its time steps one after the other, whatever its width).
EVAL_CHUNK_BYTES = {"cpu": 16 * 2**20, "default": 256 * 2**20}


@functools.lru_cache(maxsize=256)
def _forward_facts(net: Network, dtype) -> tuple[int, tuple[int, ...], Any]:
    """``(bytes, output sample shape, output dtype)`` of one sample's forward
    (``training=False``) on inputs of ``dtype``; the bytes are its input's, every
    ``fc`` entry's and its output's. From shapes alone: one abstract trace per
    network and dtype."""
    def run(X):
        params = tuple(layer.initialize_parameters(jax.random.key(0)) for layer in net.layers)
        return X, forward(net, params, X, None, False)

    tree = jax.eval_shape(run, jax.ShapeDtypeStruct((1, *net.input_shape), dtype))
    A = tree[1][0]
    size = sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))
    return size, tuple(A.shape[1:]), A.dtype


def eval_chunk(net: Network, budget: int | None = None, platform: str | None = None) -> int:
    """The default evaluation chunk: as many samples as fit ``budget`` bytes of forward
    caches, at least 1.

    ``budget`` defaults to ``EVAL_CHUNK_BYTES`` of ``platform`` (default: JAX's
    default backend): 16 MiB on a CPU, 256 MiB on an accelerator. A sample's bytes
    are those of its input, every layer's ``fc`` entries and its output: an upper
    bound of what XLA keeps live in an evaluation (it drops the caches nothing
    reads). For the examples' models that is 2.8 kB (Dense on 128 steps), 11 kB
    (the 28 x 28 CNN), 68 kB (LSTM(10) on 128 steps): chunks of 5,900, 1,500 and
    240 samples on a CPU.
    """
    if budget is None:
        platform = jax.default_backend() if platform is None else platform
        budget = EVAL_CHUNK_BYTES.get(platform, EVAL_CHUNK_BYTES["default"])
    size = _forward_facts(net, np.dtype(float_dtype()))[0]
    return max(1, int(budget) // max(size, 1))


def _check_chunk(net: Network, chunk: int | None, mesh=None) -> int:
    """``chunk``, or the default one (:func:`eval_chunk`) for the mesh's platform."""
    if chunk is None:
        return eval_chunk(net, platform=None if mesh is None else mesh.devices.flat[0].platform)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"evaluate: chunk must be a positive int (samples), got {chunk!r}")
    return chunk


def evaluate(net: Network, params: Params, X, Y, metric_names: Sequence[str],
             chunk: int | None = None, *, mesh=None) -> dict:
    """Every metric on one set (``training=False``), at most ``chunk`` samples at a time.

    The ``n`` samples are cut into ``k = ceil(n / chunk)`` chunks of ``c =
    ceil(n / k)`` samples (``chunk=None``: :func:`eval_chunk`). With ``k = 1``
    it is one forward over the set; else a ``lax.scan`` runs the forward of
    one chunk at a time and keeps only the sums the metrics need
    (:func:`~epynn_jax.maths.metrics.statistics`), so memory is bounded by the
    chunk, not the set, and every metric (precision, F-score, ... included)
    equals that of one forward over the set. Nothing is padded or copied: the
    last chunk starts at ``n - c`` (overlapping the one before) and counts only
    the rows not counted yet.

    With a ``mesh`` whose ``'data'`` axis has ``d`` devices and ``n`` divisible
    by ``d``, the set is taken as ``d`` contiguous blocks (its sharding) and
    each chunk holds ``c`` rows of every block, so each device evaluates its own
    rows; ``chunk`` then counts the samples of all devices together. ``mesh`` is what
    ``fit`` takes: a Mesh with a ``'data'`` axis or a sequence of devices
    (:func:`~epynn_jax.network.parallel.as_mesh`).
    """
    metric_names = metrics_lib.check_metrics(metric_names, "evaluate: metric_names")
    checks.check_net(net, "evaluate")
    if mesh is not None:  # a list of devices as fit takes it; else a TypeError naming mesh
        mesh = parallel.as_mesh(mesh)
    params = checks.check_params(net, params, "evaluate")  # shapes: checked while tracing too
    checks.check_params_finite(net, params, "evaluate")  # values: not when traced
    checks.check_split(net, "evaluate", X, Y)
    eager = not any(isinstance(a, jax.core.Tracer) for a in (X, Y))
    if eager:  # called eagerly: the values
        X, Y = (checks.as_float_arg(a, f"evaluate {w}") for a, w in ((X, "X"), (Y, "Y")))
        if {"BCE", "CCE", "MSLE"} & set(metric_names):
            Yh = np.asarray(Y)
            for name in metric_names:  # a loss as a metric: labels where it is defined
                checks.check_label_range(Yh, name, "evaluate Y")
        checks.check_compute_range(net, X, "evaluate X")
    chunk = _check_chunk(net, chunk, mesh)
    if eager and not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(params)):
        # one compiled program (op by op, a Dense model's evaluation of 1,000 samples took
        # 15 times as long, and its first call compiled each operation apart: 2.9 s)
        with _gc.paused():  # its first call traces (see network._gc)
            scores = stored_evaluate(net, params, X, Y, metric_names, chunk, mesh)
        return {name: scores[name] for name in metric_names}  # (a compiled dict is sorted)
    return _evaluate(net, params, X, Y, metric_names, chunk, mesh)


def _evaluate(net: Network, params: Params, X: jax.Array, Y: jax.Array,
              metric_names: tuple[str, ...], chunk: int, mesh) -> dict:
    """:func:`evaluate`'s computation, on checked arguments and a chunk size."""
    n = X.shape[0]
    groups = parallel.data_size(mesh) if mesh is not None else 1
    if n % groups:
        groups = 1
    per = max(chunk // groups, 1)
    local = n // groups
    k = -(-local // per)
    if k == 1:
        A, _ = forward(net, params, X, None, False)
        stats = metrics_lib.statistics(metric_names, Y, A)
        return {name: metrics_lib.from_statistics(name, stats, A.dtype) for name in metric_names}
    c = -(-local // k)  # k chunks of nearly equal size: fewer than k rows counted twice
    # (groups, local, ...): contiguous blocks, one per device (one block without a mesh)
    blocks = (X, Y) if groups == 1 else tuple(a.reshape(groups, local, *a.shape[1:])
                                              for a in (X, Y))
    _, out_shape, out_dtype = _forward_facts(net, X.dtype)
    # the statistics of no sample: zeros of the right shapes and dtypes
    zero = metrics_lib.statistics(metric_names, Y[:0], jnp.zeros((0, *out_shape), out_dtype))

    def add_chunk(i, total):
        start = jnp.minimum(i * c, local - c)
        if groups == 1:
            Xc, Yc = (jax.lax.dynamic_slice_in_dim(a, start, c) for a in blocks)
        else:
            Xc, Yc = parallel.constrain_batch(tuple(
                jax.lax.dynamic_slice_in_dim(a, start, c, axis=1).reshape(groups * c,
                                                                          *a.shape[2:])
                for a in blocks), mesh)
        A, _ = forward(net, params, Xc, None, False)
        new = jnp.tile(start + jnp.arange(c) >= i * c, groups)  # rows no chunk counted before
        return jax.tree.map(jnp.add, total, metrics_lib.statistics(metric_names, Yc, A, new))

    stats = jax.lax.fori_loop(0, k, add_chunk, zero)
    return {name: metrics_lib.from_statistics(name, stats, out_dtype) for name in metric_names}


def evaluate_splits(net: Network, params: Params, splits: Mapping[str, tuple],
                    metric_names: Sequence[str], chunk: int | None = None, *,
                    mesh=None) -> dict:
    """``{split: {metric: value}}``: :func:`evaluate` of every split ``(X, Y)``.

    When ``net`` has a recurrent layer (:attr:`Network.sequential`), there are
    several splits and no ``mesh``, the splits are evaluated as ONE set, their
    concatenation of ``N = sum(n_s)`` samples, cut into chunks as
    :func:`evaluate` cuts a set; each chunk's rows are counted in the
    statistics of the split they belong to (a chunk may hold rows of two). The
    loop over the time steps is then compiled once, not once per split (on a
    2-core CPU an LSTM's and a GRU's evaluation of two splits compile 0.17 s
    faster, and run 1 % slower). Every layer treats samples apart when not
    training, so the metrics are those of one forward per split (up to the
    rounding of a product of another width). Not when every split fits in one
    chunk but not all of them together: the chunk loop that sharing would add
    cost an RNN's evaluation 7 %. Without a recurrent layer each split has its
    own forward: copying the sets together cost Dense and the CNN more (5-6 %
    of an epoch) than a second compile of their short forward.
    """
    sizes = [X.shape[0] for X, _ in splits.values()]
    shared = net.sequential and len(splits) > 1 and mesh is None
    if shared:
        chunk = _check_chunk(net, chunk, mesh)
        # each split one forward, but together they would need a loop: apart
        shared = sum(sizes) <= chunk or max(sizes) > chunk
    if not shared:
        return {name: evaluate(net, params, *xy, metric_names, chunk, mesh=mesh)
                for name, xy in splits.items()}
    ends = list(itertools.accumulate(sizes))
    bounds = list(zip([0, *ends[:-1]], ends))
    X = jnp.concatenate([X for X, _ in splits.values()])
    Y = jnp.concatenate([Y for _, Y in splits.values()])
    n = ends[-1]
    k = -(-n // chunk)
    c = -(-n // k)  # k chunks of nearly equal size; the last overlaps the one before

    def chunk_statistics(start, first_new):
        Xc, Yc = (jax.lax.dynamic_slice_in_dim(a, start, c) for a in (X, Y))
        A, _ = forward(net, params, Xc, None, False)
        row = start + jnp.arange(c)
        return [metrics_lib.statistics(metric_names, Yc, A,
                                       (row >= first_new) & (row >= lo) & (row < hi))
                for lo, hi in bounds]

    if k == 1:
        stats = chunk_statistics(0, 0)
    else:
        _, out_shape, out_dtype = _forward_facts(net, X.dtype)
        zero = metrics_lib.statistics(metric_names, Y[:0], jnp.zeros((0, *out_shape),
                                                                     out_dtype))

        def add_chunk(i, totals):
            start = jnp.minimum(i * c, n - c)
            return jax.tree.map(jnp.add, totals, chunk_statistics(start, i * c))

        stats = jax.lax.fori_loop(0, k, add_chunk, [zero] * len(bounds))
    dtype = _forward_facts(net, X.dtype)[2]
    return {name: {m: metrics_lib.from_statistics(m, st, dtype) for m in metric_names}
            for name, st in zip(splits, stats)}


@functools.partial(jax.jit, static_argnames=("metric_names",))
def scores(metric_names: tuple[str, ...], Y: jax.Array, A: jax.Array) -> dict:
    """``{metric: value}`` of given outputs ``A`` against labels ``Y`` (compiled)."""
    return {name: metrics_lib.metric(name, Y, A) for name in metric_names}


evaluate_jit = jax.jit(_evaluate, static_argnames=("net", "metric_names", "chunk", "mesh"))
evaluate_jit.__doc__ = """:func:`evaluate` of checked arguments, compiled; no validation."""


@functools.partial(jax.jit, static_argnames=("net", "chunk"))
def predict_jit(net: Network, params: Params, X: jax.Array, chunk: int | None = None
                ) -> jax.Array:
    """The output ``A`` of ``net`` on ``X`` (no dropout), compiled; no validation.

    ``chunk`` samples at a time, as :func:`evaluate` cuts a set (None:
    :func:`eval_chunk`): memory holds the output and one chunk's forward. The
    overlapping last chunk writes its shared rows again, with their own values.
    """
    chunk = _check_chunk(net, chunk)
    n = X.shape[0]
    k = -(-n // chunk)
    if k == 1:
        return forward(net, params, X, None, False)[0]
    c = -(-n // k)
    _, out_shape, out_dtype = _forward_facts(net, X.dtype)

    def write(i, A):
        start = jnp.minimum(i * c, n - c)
        Ac, _ = forward(net, params, jax.lax.dynamic_slice_in_dim(X, start, c), None, False)
        return jax.lax.dynamic_update_slice_in_dim(A, Ac, start, 0)

    return jax.lax.fori_loop(0, k, write, jnp.zeros((n, *out_shape), out_dtype))


# -- the non-finite guard ---------------------------------------------------------------


class Guard(NamedTuple):
    """Non-finite watch of an epoch (:func:`locate_non_finite`, the steps of
    :func:`guarded_train_step`, or :func:`epoch_guard`; ``run_epoch(..., guard=True)``
    returns only its ``ok``, :func:`epoch_ok`).

    ``ok``: no bad step; ``bad_layers`` (n_layers,) bool: the layers whose updated
    parameters were non-finite at the first bad step; ``bad_step``: its index in the
    epoch (-1: none); ``step``: steps seen. (:func:`epoch_guard` watches the epoch as
    a whole: its ``bad_layers`` are those non-finite at the END of the epoch and its
    ``bad_step`` the first non-finite cost, else the last step; :func:`locate_non_finite`
    replays a bad epoch to find the first bad step and its layers.)
    """

    ok: jax.Array
    bad_layers: jax.Array
    bad_step: jax.Array
    step: jax.Array


def _layers_finite(params: Params) -> jax.Array:
    """(n_layers,) bool: every parameter of layer ``i`` is finite.

    Only the updated parameters are watched, not the gradients: a NaN or inf
    gradient reaches the parameters it updates (``p - r * inf``, ``p - 0 * inf``
    and Adam's moments are all non-finite), and watching both cost a Dense
    epoch about 4 % more for no case found.
    """
    return jnp.stack([checks.finite_sum(p) for p in params])


def epoch_ok(params: Params, costs: jax.Array) -> jax.Array:
    """One bool: the end parameters of an epoch and every step's cost are finite.

    A non-finite parameter stays non-finite through every later update (``p + u`` is
    NaN or inf when ``p`` is), so the end parameters are finite exactly when every
    step's were: one test per epoch instead of one per step (a tenth of a small
    Dense epoch on a CPU). It is ``sum(concatenate(leaves, costs) * 0) == 0``: ``x *
    0`` is 0 for a finite ``x`` and NaN for a NaN or inf, and no sum of zeros
    overflows. XLA fuses the concatenation into the sum, so nothing is copied and the
    test is one kernel (a flag per layer and the first bad cost, computed here
    before, were nine kernels and 0.05 s of a Dense epoch's compile); which layer
    and step failed is found after a failure only (:func:`epoch_guard`,
    :func:`locate_non_finite`).
    """
    leaves = [x.ravel() for x in jax.tree_util.tree_leaves(params)] + [costs.ravel()]
    dtype = jnp.result_type(*leaves)
    return jnp.sum(jnp.concatenate([x.astype(dtype) for x in leaves]) * 0) == 0


@jax.jit
def epoch_guard(params: Params, costs: jax.Array) -> Guard:
    """The :class:`Guard` of a whole epoch from its end parameters and its step costs:
    ``ok`` as :func:`epoch_ok`; ``bad_layers``: the layers whose END parameters are not
    finite; ``bad_step``: the first non-finite cost, else the last step (compiled, and
    called, only after a failed epoch)."""
    layer_ok = _layers_finite(params)
    cost_ok = jnp.isfinite(costs)
    ok = jnp.all(layer_ok) & jnp.all(cost_ok)
    n = costs.shape[0]
    step = jnp.where(jnp.all(cost_ok), n - 1, jnp.argmin(cost_ok))
    return Guard(ok, ~layer_ok & ~ok, jnp.where(ok, -1, step), jnp.asarray(n))


def _guard_of(layer_ok: jax.Array, costs: jax.Array) -> Guard:
    """The :class:`Guard` of an epoch from its steps' flags (n_steps, n_layers) and costs."""
    step_ok = jnp.all(layer_ok, axis=1) & jnp.isfinite(costs)
    ok = jnp.all(step_ok)
    first = jnp.argmin(step_ok)  # the first False
    return Guard(ok, ~layer_ok[first] & ~ok, jnp.where(ok, -1, first),
                 jnp.asarray(costs.shape[0]))


def guarded_train_step(net: Network, optimizer, loss: str, carry: tuple[TrainState, Guard],
                       X, Y):
    """:func:`train_step` that also records the first step whose cost or updated
    parameters are not finite (a non-finite gradient makes the parameters non-finite).

    Only small flags are added to the step (one sum per layer's parameters); the
    parameters are not masked: when ``guard.ok`` is False after the epoch, the caller
    discards the epoch and keeps the state it started from. (``run_epoch`` keeps the
    flags of every step instead of this carry and reduces them once, after the scan.)
    """
    state, guard = carry
    state, cost = train_step(net, optimizer, loss, state, X, Y)
    layer_ok = _layers_finite(state.params)
    keep = guard.ok & jnp.all(layer_ok) & jnp.isfinite(cost)
    first_bad = guard.ok & ~keep
    guard = Guard(keep, jnp.where(first_bad, ~layer_ok, guard.bad_layers),
                  jnp.where(first_bad, guard.step, guard.bad_step), guard.step + 1)
    return (state, guard), cost


def finite_scores(scores: Mapping, loss: str) -> bool:
    """Whether the training ``loss`` is finite on every split of ``{split: {metric: value}}``
    (host values).

    Only the loss trained on counts: a network whose numbers diverged makes it
    non-finite. Other metrics may be NaN where they are undefined, as in EpyNN,
    without any divergence: a ratio metric (precision, recall, ...) is 0/0 on a
    split with no predicted or no true positives, and a loss asked for as a metric
    may leave its domain (``MSLE`` of negative outputs, ``BCE`` of outputs
    outside [0, 1]); they are recorded as NaN and training goes on.
    """
    return all(math.isfinite(float(values[loss])) for values in scores.values()
               if loss in values)


def fetch(tree):
    """``tree`` (an epoch's scores and guard) on the host as NumPy values.

    ``np.asarray`` per leaf, not ``jax.device_get``: for the few scalars of an
    epoch, device_get's per-array asynchronous copies cost about 20 us each on a
    2-core CPU, 4-5x more (a tenth of a 1 ms Dense epoch).
    """
    return jax.tree.map(np.asarray, tree)


def non_finite_error(net: Network | None, epoch: int, guard: Guard | None, state: TrainState,
                     history: dict, where: str = "fit", scores: Mapping | None = None,
                     advice: str = "", offset: int = 0) -> NonFiniteError:
    """The error for a failed epoch (from its host-side ``guard`` or its ``scores``).

    ``state`` is the state the epoch started from (the last good one); it goes
    into the error's ``params``/``opt_state``/``key`` with ``history``. The guard's
    layer ``i`` is layer ``i + offset`` of ``net`` (the facade trains without its
    first layer, the Embedding); without a guard ``net`` is not read (None: a model
    cut into segments around custom layers has no one network).
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


def step_keys(step_key: jax.Array, start, k: int) -> jax.Array:
    """The PRNG keys of steps ``start, ..., start + k - 1`` of an epoch: ``fold_in(step_key, i)``.

    Under JAX's default (partitionable) threefry these are the rows of
    ``jax.random.split(step_key, n)``; a step's key depends only on its index,
    so an epoch run in chunks of batches (:mod:`~epynn_jax.network.streaming`)
    draws exactly what one call over the epoch draws. ``start`` may be traced.
    """
    return prng.fold_in_range(step_key, start, k)


def _epoch_keys(net: Network, key: jax.Array, n_batches: int):
    """``(next state key, shuffle key, one key per step)``: ONE vectorized split.

    The key a step returns is not carried: without a stochastic layer XLA then
    drops every key computation from the loop (carrying the key ran a sequential
    threefry split per step, about 20 % of a small Dense epoch's CPU time). When
    no layer reads a key (``net.uses_keys``) the step keys are None and are not
    traced at all (their hashes were a fifth of a small epoch's trace).
    """
    key, shuffle_key, step_key = prng.split(key, 3)
    return key, shuffle_key, step_keys(step_key, 0, n_batches) if net.uses_keys else None


def train_steps(net: Network, update: Update, loss: str, guard: bool, params: Params,
                opt_state, xs: tuple, batch: Callable):
    """``lax.scan`` of :func:`train_step` over ``xs = (per-step inputs, step keys)``;
    ``batch(input)`` gives the step's ``(X, Y)``.

    Returns ``(params, opt_state, costs (n,), Guard or None)``. With ``guard``
    each step also flags whether each layer's updated parameters are finite
    (one flag per layer and step, reduced once after the scan, :func:`_guard_of`).
    """
    def step(carry, x):
        st, cost = train_step(net, update, loss, TrainState(*carry, x[1]), *batch(x[0]))
        if guard:
            return (st.params, st.opt_state), (cost, _layers_finite(st.params))
        return (st.params, st.opt_state), cost

    (params, opt_state), out = jax.lax.scan(step, (params, opt_state), xs)
    if guard:
        return params, opt_state, out[0], _guard_of(out[1], out[0])
    return params, opt_state, out, None


def _epoch_plan(net: Network, state: TrainState, train: tuple, batch_size: int, idx, mesh):
    """``(next key, (batch indices, step keys), batch)`` of the epoch from ``state``:
    ``idx`` or a shuffle of ``train`` from the state's key; ``batch(indices)`` gathers one
    batch (split over the mesh's ``'data'`` axis when there is one). Inside jit."""
    X, Y = train
    n_batches = idx.shape[0] if idx is not None else max(X.shape[0] // min(batch_size,
                                                                            X.shape[0]), 1)
    key, shuffle_key, keys = _epoch_keys(net, state.key, n_batches)
    if idx is None:
        idx = epoch_batches(shuffle_key, X.shape[0], batch_size)
    if mesh is not None:
        idx = parallel.constrain_indices(idx, mesh)

    def batch(batch_idx):
        XY = (X[batch_idx], Y[batch_idx])
        return XY if mesh is None else parallel.constrain_batch(XY, mesh)

    return key, (idx, keys), batch


@functools.partial(jax.jit, static_argnames=("net", "update", "loss", "metric_names",
                                              "batch_size", "guard", "mesh", "eval_chunk"))
def run_epoch(net: Network, update: Update, loss: str, metric_names: tuple[str, ...],
              batch_size: int, state: TrainState, train: tuple, splits: Mapping[str, tuple],
              guard: bool = False, *, idx: jax.Array | None = None, mesh=None,
              eval_chunk: int | None = None):
    """One epoch as one compiled call: shuffle, scan over batches, evaluate every split.

    ``update`` is the optimizer's update function (``optimizer.update``). The
    batches are ``idx`` (n_batches, batch) sample indices into ``train`` when
    given (the facade passes EpyNN's host-side order), else a shuffle of
    ``train`` from the state's key (:func:`epoch_batches`).

    Returns ``(state, batch_costs, {split: {metric: value}})``. With
    ``guard=True`` (what :func:`~epynn_jax.network.fitting.fit` uses) a fourth
    value, ``ok`` (a bool, :func:`epoch_ok`), says whether every step's cost and
    the parameters after the epoch are finite (then every step's parameters
    were); the host checks it once per epoch and, when it is False,
    :func:`failed_guard` finds the first bad step and its layers. With a
    ``mesh`` (see :mod:`~epynn_jax.network.parallel`) every batch is split over
    the mesh axis ``'data'``.

    Every split is evaluated ``eval_chunk`` samples at a time (None: the
    default of :func:`eval_chunk`), inside this call (:func:`evaluate`): memory
    grows with the chunk, not with the sets, and the metrics are those of one
    forward over each set.
    """
    state, costs, scores = _one_epoch(net, update, loss, metric_names, batch_size, state,
                                      train, splits, idx, mesh, eval_chunk)
    if guard:
        return state, costs, scores, epoch_ok(state.params, costs)
    return state, costs, scores


def _one_epoch(net: Network, update: Update, loss: str, metric_names: tuple[str, ...],
               batch_size: int, state: TrainState, train: tuple, splits: Mapping[str, tuple],
               idx, mesh, eval_chunk):
    """The body of :func:`run_epoch` and of each epoch of :func:`run_epochs` (inside jit):
    ``(state, batch costs, {split: {metric: value}})``."""
    key, xs, batch = _epoch_plan(net, state, train, batch_size, idx, mesh)
    params, opt_state, costs, _ = train_steps(net, update, loss, False, state.params,
                                              state.opt_state, xs, batch)
    state = TrainState(params, opt_state, key)
    if mesh is not None:
        splits = parallel.constrain_samples(splits, mesh)
    return state, costs, evaluate_splits(net, params, splits, metric_names, eval_chunk,
                                         mesh=mesh)


#: The most epochs one :func:`run_epochs` call runs (the length of its score buffers).
EPOCH_BLOCK = 32


@functools.partial(jax.jit, static_argnames=("net", "update", "loss", "metric_names",
                                              "batch_size", "guard", "mesh", "eval_chunk"))
def run_epochs(net: Network, update: Update, loss: str, metric_names: tuple[str, ...],
               batch_size: int, state: TrainState, train: tuple, splits: Mapping[str, tuple],
               epochs, guard: bool = False, *, mesh=None, eval_chunk: int | None = None):
    """``epochs`` epochs of :func:`run_epoch` (its shuffles, steps and evaluation) as ONE
    compiled call: a loop over the epochs.

    ``epochs`` is a traced int from 1 to :data:`EPOCH_BLOCK`, so every count runs the
    same program. ``fit`` runs several epochs per call when nothing on the host needs
    each one (no callback, no checkpoint): launching a compiled call and reading its
    results back costs the host 0.1-0.2 ms on a 2-core CPU, a third of a small Dense
    epoch, paid once per call.

    Returns ``(state, scores, costs)``: ``scores`` is ``{split: (EPOCH_BLOCK,
    len(metric_names))}``, row ``i`` the metrics of epoch ``i`` of the call (in
    the working float dtype; rows from ``epochs`` on are zeros). With
    ``guard=True`` ``costs`` (EPOCH_BLOCK,) is ``sum(batch costs * 0)`` of each
    epoch: 0 when every batch cost was finite, else NaN (see :func:`epoch_ok`);
    None without. The loop does not stop at a bad epoch (a test per epoch made
    the program a tenth slower to compile): the caller checks the costs, the
    scores and the end parameters, and on a failure reruns the epochs from the
    same state one per call (the same program, so bitwise the same epochs) to
    find the bad one.
    """
    dtype = float_dtype()
    start = ({s: jnp.zeros((EPOCH_BLOCK, len(metric_names)), dtype) for s in splits},
             jnp.zeros(EPOCH_BLOCK, dtype) if guard else None)

    def body(i, carry):
        state, (out, bad) = carry
        state, costs, scores = _one_epoch(net, update, loss, metric_names, batch_size, state,
                                          train, splits, None, mesh, eval_chunk)
        out = {s: jax.lax.dynamic_update_index_in_dim(
            out[s], jnp.stack([scores[s][m].astype(dtype) for m in metric_names]), i, 0)
            for s in splits}
        if guard:
            bad = jax.lax.dynamic_update_index_in_dim(bad, jnp.sum(costs * 0).astype(dtype),
                                                      i, 0)
        return state, (out, bad)

    # int32 bounds whatever the count's dtype (an int64 one under x64, an int32 one
    # placed before x64 was switched on)
    epochs = jnp.asarray(epochs).astype(jnp.int32)
    state, (out, bad) = jax.lax.fori_loop(np.int32(0), epochs, body, (state, start))
    return state, out, bad


def stored_run_epochs(net: Network, update: Update, loss: str, metric_names: tuple[str, ...],
                      batch_size: int, state: TrainState, train: tuple,
                      splits: Mapping[str, tuple], epochs, guard: bool = False, *, mesh=None,
                      eval_chunk: int | None = None):
    """:func:`run_epochs`, its program read from the store of compiled programs when a
    process before this one compiled it (:mod:`~epynn_jax.network.programs`: no trace)."""
    return programs.call(
        run_epochs, "run_epochs",
        (net, update, loss, metric_names, batch_size, guard, mesh, eval_chunk),
        (net, update, loss, metric_names, batch_size, state, train, splits, epochs, guard),
        {"mesh": mesh, "eval_chunk": eval_chunk}, (state, train, splits, epochs),
        lambda: jax.tree.structure((state, dict.fromkeys(splits, 0), 0 if guard else None)))


def stored_run_epoch(net: Network, update: Update, loss: str, metric_names: tuple[str, ...],
                     batch_size: int, state: TrainState, train: tuple,
                     splits: Mapping[str, tuple], guard: bool = False, *,
                     idx: jax.Array | None = None, mesh=None, eval_chunk: int | None = None):
    """:func:`run_epoch` through the store of compiled programs (see
    :func:`stored_run_epochs`); ``idx``, when given, a device array."""
    dynamic_kw = {} if idx is None else {"idx": idx}
    return programs.call(
        run_epoch, "run_epoch",
        (net, update, loss, metric_names, batch_size, guard, mesh, eval_chunk),
        (net, update, loss, metric_names, batch_size, state, train, splits, guard),
        {"mesh": mesh, "eval_chunk": eval_chunk, **dynamic_kw}, (state, train, splits),
        lambda: jax.tree.structure((state, 0, {s: dict.fromkeys(metric_names, 0)
                                               for s in splits}, *((0,) if guard else ()))),
        dynamic_kw)


def stored_evaluate(net: Network, params: Params, X, Y, metric_names: tuple[str, ...],
                    chunk: int, mesh=None) -> dict:
    """:func:`evaluate_jit` through the store of compiled programs (see
    :func:`stored_run_epochs`)."""
    return programs.call(evaluate_jit, "evaluate_jit", (net, metric_names, chunk, mesh),
                         (net, params, X, Y, metric_names, chunk, mesh), {}, (params, X, Y),
                         lambda: jax.tree.structure(dict.fromkeys(metric_names, 0)))


def stored_predict(net: Network, params: Params, X: jax.Array, chunk: int | None = None
                   ) -> jax.Array:
    """:func:`predict_jit` through the store of compiled programs (see
    :func:`stored_run_epochs`)."""
    return programs.call(predict_jit, "predict_jit", (net, chunk), (net, params, X, chunk),
                         {}, (params, X), lambda: jax.tree.structure(0))


@functools.partial(jax.jit, static_argnames=("net", "update", "loss", "batch_size", "mesh"))
def locate_non_finite(net: Network, update: Update, loss: str, batch_size: int,
                      state: TrainState, train: tuple, *, idx: jax.Array | None = None,
                      mesh=None) -> Guard:
    """The :class:`Guard` of the epoch :func:`run_epoch` runs from ``state`` (the same
    batches, keys and updates), with a flag per layer and step: the first step whose cost
    or updated parameters are not finite, and those layers.

    ``fit`` calls it only after an epoch whose guard failed (it compiles then, once):
    the epoch itself watches its end parameters and costs only.
    """
    _, xs, batch = _epoch_plan(net, state, train, batch_size, idx, mesh)

    return train_steps(net, update, loss, True, state.params, state.opt_state, xs, batch)[3]


def failed_guard(net: Network, update: Update, loss: str, batch_size: int, state: TrainState,
                 train: tuple, after: Params, costs: jax.Array, *,
                 idx: jax.Array | None = None, mesh=None) -> Guard:
    """The host's :class:`Guard` of an epoch whose ``ok`` came back False: the epoch
    replayed from ``state`` by :func:`locate_non_finite` (the first bad step and its
    layers), or, when the replay finds every step finite, :func:`epoch_guard` of the
    parameters ``after`` the epoch and its ``costs``."""
    located = fetch(locate_non_finite(net, update, loss, batch_size, state, train, idx=idx,
                                      mesh=mesh))
    return fetch(epoch_guard(after, costs)) if located.ok else located


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
    return dX, _apply_updates(params, updates), opt_state, gs, bcs


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
    _, _, keys = _epoch_keys(net, state.key, idx.shape[0])
    head, sub = (None, None) if keys is None else (keys[:-1], prng.split(keys[-1])[1])
    params, _, _, _ = train_steps(net, update, loss, False, state.params, state.opt_state,
                                  (idx[:-1], head), lambda i: (X[i], Y[i]))
    # sub: the key the last train_step drew with
    return step_caches(net, loss, params, X[idx[-1]], Y[idx[-1]], sub)
