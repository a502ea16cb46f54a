"""``fit`` and ``predict``: the host-side loop around the compiled epoch.

``fit`` validates everything (:mod:`~epynn_jax.network.checks`), builds the
optimizer (EpyNN's SGD by default, :mod:`~epynn_jax.network.optim`), then runs
:func:`~epynn_jax.network.epoch.run_epochs` (several epochs per compiled call when
no callback or checkpoint needs each one, :class:`_Pacer`), turning the guard's
findings into a :class:`~epynn_jax.errors.NonFiniteError`, appending the scores to
the history and calling the callbacks. Saving is not its job: it is given a
``checkpoints`` object (``epynn_jax.io.Checkpoints``, or anything with the
:class:`Checkpointer` methods) and a loaded checkpoint to ``resume`` from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.errors import NonFiniteError, TrainingInterrupted, add_note
from epynn_jax.layers.base import float_dtype
from epynn_jax.maths import losses
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.maths.schedules import Schedule, resolve
from epynn_jax.network import _gc, checks, parallel, streaming
from epynn_jax.network.epoch import (
    EPOCH_BLOCK,
    Guard,
    TrainState,
    failed_guard,
    fetch,
    finite_scores,
    non_finite_error,
    run_epoch,
    stored_predict,
    stored_run_epochs,
)
from epynn_jax.network.epoch import evaluate as _evaluate
from epynn_jax.network.model import Network, Params, check_input_shape
from epynn_jax.network.optim import (
    LossScaleState,
    SkippedStepsWarning,
    check_loss_scaling,
    epynn_sgd,
    loss_scaling,
)
from epynn_jax.network.precision import as_policy, user_stacklevel

if TYPE_CHECKING:
    import optax

__all__ = ["FitResult", "Progress", "Checkpointer", "fit", "predict", "decide",
           "data_fingerprint"]


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns."""

    params: Params
    opt_state: Any
    key: jax.Array
    history: dict[str, dict[str, list[float]]]
    epochs: int
    checkpoints: dict[str, Path] = dataclasses.field(default_factory=dict)
    #: batches done of epoch ``epochs`` (a streamed fit interrupted mid-epoch), else 0
    batches: int = 0
    #: the training steps of this call that loss scaling (float16) skipped, their
    #: gradients not finite (:func:`~epynn_jax.network.optim.loss_scaling`), else 0
    skipped_steps: int = 0


class Progress(NamedTuple):
    """State, history and epochs done, replaced as ONE object so Ctrl-C never splits them.

    ``batch``: the batches done of epoch ``epoch`` (0 between epochs; a streamed
    epoch reports its progress chunk by chunk); ``state.key`` is then still that
    epoch's first key, so a checkpoint of it resumes at batch ``batch``.
    """

    state: TrainState
    history: dict
    epoch: int
    batch: int = 0


class Checkpointer(Protocol):
    """What :func:`fit` asks of its ``checkpoints`` argument (``epynn_jax.io.Checkpoints``).

    Every method gets the network, the :class:`Progress` after the last completed
    epoch and fit's ``metadata`` (loss, metrics, batch size, split, epochs,
    schedule, data fingerprint); the ``save`` methods return ``{name: path}`` of
    the files they wrote.
    """

    def start(self, metric_names: tuple[str, ...], splits: Sequence[str]) -> None:
        """Validate the policy against this fit (before any tracing)."""

    def after_epoch(self, net: Network, progress: Progress, metadata: dict) -> dict[str, Path]:
        """After each completed epoch."""

    def finish(self, net: Network, progress: Progress, metadata: dict) -> dict[str, Path]:
        """After the last epoch (or a callback's stop)."""

    def interrupted(self, net: Network, progress: Progress, metadata: dict) -> Path | None:
        """On Ctrl-C: the file that holds the last completed epoch (or, streaming, chunk),
        if any."""

    # Optional: ``after_batches(net, progress, metadata) -> dict[str, Path]``, called
    # after every chunk of a streamed epoch, and an ``every_batches`` attribute (an int
    # or None): when set, fit streams its epochs so that there are chunks to save after.


def data_fingerprint(splits: Mapping[str, Any], dtype: Any = None) -> dict:
    """``{split: {'n', 'X', 'Y', 'sha256'}}``: sizes, sample shapes and a hash of up to 64
    evenly spaced samples (in ``dtype``, by default the working float dtype), so a resume
    on other data is noticed at a small cost.

    The samples are taken on the host (``fit`` passes the arrays it was given): indexing
    a device array would compile a gather per array shape.
    """
    out = {}
    dtype = np.dtype(float_dtype() if dtype is None else dtype)
    for name, xy in splits.items():
        if isinstance(xy, streaming.BatchSource):  # a loader's batches: their shapes only
            out[name] = {"stream": True, "batch": xy.batch_size, "X": list(xy.sample_shapes[0]),
                         "Y": list(xy.sample_shapes[1])}
            continue
        X, Y = (xy.X, xy.Y) if isinstance(xy, streaming.ArraySource) else xy
        n = int(np.shape(X)[0])
        rows = np.unique(np.linspace(0, n - 1, min(n, 64)).astype(np.int64))
        h = hashlib.sha256()
        for a in (X, Y):
            with np.errstate(over="ignore"):
                sample = np.asarray(a)[rows].astype(dtype)
            h.update(np.ascontiguousarray(sample).tobytes())
        out[name] = {"n": n, "X": list(np.shape(X)[1:]), "Y": list(np.shape(Y)[1:]),
                     "sha256": h.hexdigest()}
    return out


def _stops(answer: Any) -> bool:
    """Whether a callback's ``answer`` asks ``fit`` to stop: ``False``, NumPy's or JAX's
    too (``return acc < 0.9`` on NumPy numbers gives ``np.False_``, which ``is False``
    is not)."""
    if answer is False:
        return True
    if isinstance(answer, (np.bool_, np.ndarray, jax.Array)) and not isinstance(
            answer, jax.core.Tracer):
        return np.shape(answer) == () and np.dtype(answer.dtype) == np.bool_ and not answer
    return False


def _call_back(callback: Callable, progress: Progress, history: dict) -> bool:
    """Call ``callback(epoch, history)``; whether it asks to stop (:func:`_stops`).

    ``history`` is the callbacks' copy of ``fit``'s own (:func:`_synced`): a callback
    that changes it cannot change what ``fit`` records, saves or returns, even when it
    then raises. One it changed is refused here, naming it (the refusal says that the
    callback's intent, whatever it was, did not happen)."""
    before = _outline(history)
    stop = _stops(callback(progress.epoch - 1, history))
    if _outline(history) != before:
        name = getattr(callback, "__qualname__", None) or repr(callback)
        raise ValueError(f"fit: callback {name} changed the history it was given (a metric, "
                         "a split, an epoch or the last values); a callback may read it, not "
                         "change it: keep a copy (copy.deepcopy(history)) to edit or store")
    return stop


def _call_backs(callbacks: Sequence[Callable], progress: Progress,
                view: dict | None) -> tuple[bool, dict]:
    """Call ``callbacks`` in turn until one asks to stop: ``(whether one did, the
    callbacks' history)``, given the one of the last epoch (``view``, None at first).
    (A loop, not ``any()`` over a generator: a callback's ``StopIteration`` would leave
    a generator as ``RuntimeError``, PEP 479.)"""
    view = _synced(view, progress.history)
    for callback in callbacks:
        if _call_back(callback, progress, view):
            return True, view
    return False, view


def _synced(view: dict | None, history: dict) -> dict:
    """The callbacks' copy of ``history``: made once per ``fit`` call, then brought up to
    date by appending the epochs it lacks (a copy per epoch made a long run quadratic)."""
    if view is None:
        return {m: {s: list(v) for s, v in d.items()} for m, d in history.items()}
    for m, d in history.items():
        for s, v in d.items():
            mine = view[m][s]
            mine.extend(v[len(mine):])
    return view


def _outline(history: Any) -> Any:
    """``{metric: {split: (epochs, last value)}}`` of a history (None: not one any more)."""
    try:
        return {m: {s: (len(v), v[-1] if v else None) for s, v in splits.items()}
                for m, splits in history.items()}
    except (AttributeError, TypeError, KeyError, IndexError):
        return None


def _append(history: dict, scores: dict) -> dict:
    """``history`` with one more epoch of ``scores`` ({split: {metric: value}}), in place
    (a copy per epoch made a long run quadratic; see :func:`_truncated` for Ctrl-C)."""
    for split, values in scores.items():
        for m, v in values.items():
            history[m][split].append(float(v))
    return history


def _truncated(history: dict, epochs: int) -> dict:
    """``history`` cut to ``epochs`` entries (a Ctrl-C may land inside :func:`_append`)."""
    return {m: {s: v[:epochs] for s, v in d.items()} for m, d in history.items()}


def _debug_error(epoch: int, err: FloatingPointError, progress: Progress) -> NonFiniteError:
    s = progress.state
    return NonFiniteError(
        f"fit: NaN or inf at epoch {epoch} (debug mode, jax.debug_nans): {err}; the chained "
        "traceback shows the operation; err.params holds the parameters at the start of "
        "that epoch",
        epoch=epoch, params=s.params, opt_state=s.opt_state, key=s.key, history=progress.history)


def _healthy(net: Network, steps: int) -> Guard:
    """The host's :class:`Guard` of an epoch of ``steps`` steps whose guard passed."""
    return Guard(np.bool_(True), np.zeros(len(net.layers), bool), np.asarray(-1),
                 np.asarray(steps))


def _epoch(net, update, loss, metric_names, batch_size, state, train, splits,
           check_finite: bool, debug: bool, mesh=None, eval_chunk=None):
    """One compiled epoch; returns ``(state, scores, guard or None)`` on the host side."""
    if debug:  # op by op (scan becomes a Python loop), so the first bad operation raises
        with jax.disable_jit(), jax.debug_nans(True), jax.debug_infs(True):
            return _epoch(net, update, loss, metric_names, batch_size, state, train, splits,
                          check_finite, False, mesh, eval_chunk)
    if check_finite:
        new, costs, scores, ok = run_epoch(net, update, loss, metric_names, batch_size,
                                           state, train, splits, guard=True, mesh=mesh,
                                           eval_chunk=eval_chunk)
        # only the flag crosses to the host (each array fetched costs 5-10 us here)
        scores, ok = fetch((scores, ok))
        if ok:
            return new, scores, _healthy(net, costs.shape[0])
        # a bad epoch: replay it with a flag per step to find where
        return new, scores, failed_guard(net, update, loss, batch_size, state, train,
                                         new.params, costs, mesh=mesh)
    state, _, scores = run_epoch(net, update, loss, metric_names, batch_size, state,
                                 train, splits, mesh=mesh, eval_chunk=eval_chunk)
    return state, fetch(scores), None


def _schedule_depends_on_epochs(schedule: dict | None, old: Any, new: int) -> bool:
    if not schedule or not isinstance(old, int) or old < 1:
        return bool(schedule)
    s = Schedule(**schedule)
    return s.schedule != "steady" and resolve(s, old) != resolve(s, new)


def _epoch_batches(plan: _DataPlan, train_split: str) -> int | None:
    """The batches of one training epoch; None where a loader does not say (no len())."""
    train = plan.splits[train_split]
    if isinstance(train, streaming.BatchSource) and train.n_batches is None:
        return None
    return plan.steps


def _check_schedule(saved: dict, metadata: dict, where: str) -> None:
    """Raise unless this fit has the schedule the checkpoint recorded (when it recorded
    one): the rates come from the restored optimizer state, so another one would be
    silently ignored. The total epochs are not part of it (:func:`_resume` warns)."""
    was, now = saved.get("schedule"), metadata.get("schedule")
    if was is not None and was != now:
        given = "none (an optimizer was given)" if now is None else Schedule(**now)
        raise ValueError(f"{where} was trained with schedule {Schedule(**was)}, this fit has "
                         f"{given}: resume with the schedule it was started with")


def _restored_state(optimizer, params: Params, leaves) -> Any:
    """The saved optimizer state ``leaves`` restored for ``optimizer``
    (:func:`~.checks.restore_opt_state`), also across float16's loss scaling
    (:func:`_across_loss_scaling`); else restore_opt_state's ``ValueError``."""
    try:
        return checks.restore_opt_state(optimizer, params, leaves)
    except ValueError as err:
        mismatch = err
    try:
        return _across_loss_scaling(optimizer, params, leaves)
    except ValueError:
        raise mismatch from None


def _across_loss_scaling(optimizer, params: Params, leaves) -> Any:
    """A state saved without loss scaling resumed under a float16 policy (its optimizer's
    state, a fresh scale), or one saved with it resumed under another policy (its
    optimizer's state, the scale dropped)."""
    import optax

    fresh = optimizer.init(params)
    if isinstance(fresh, LossScaleState):
        inner = optax.GradientTransformation(lambda p: fresh.inner, None)
        return fresh._replace(inner=checks.restore_opt_state(inner, params, leaves))
    return checks.restore_opt_state(loss_scaling(optimizer), params, leaves).inner


def _resume(ck: Any, net: Network, optimizer, metadata: dict, empty_history: dict,
            epochs: int, allow_new_data: bool, epoch_batches: int | None,
            fingerprint: Callable[[Any], dict] | None = None) -> Progress:
    """The progress stored in the loaded checkpoint ``ck`` (``io.load_checkpoint``), once
    it is known to continue this fit (``epoch_batches``: the batches of one epoch here,
    None if unknown; ``fingerprint(dtype)``: this fit's data fingerprinted in ``dtype``)."""
    where = "fit: resume checkpoint"
    if (ck.net.layers, ck.net.input_shape) != (net.layers, net.input_shape):  # policy may differ
        raise ValueError(f"{where} holds another architecture "
                         f"({', '.join(layer.name for layer in ck.net.layers)})")
    if ck.key is None or ck.epoch is None or ck.opt_state is None:
        raise ValueError(f"{where} is a model file, not a checkpoint (no epoch, optimizer "
                         "state or PRNG key)")
    key = checks.check_key(ck.key, where)
    params = checks.working_dtypes(ck.params)  # (loaded with jax_enable_x64 on, now off)
    saved = checks.check_fit_metadata(ck.metadata or {}, where)
    for field in ("loss", "batch_size", "train_split"):
        if saved.get(field) != metadata[field]:
            raise ValueError(f"{where} was trained with {field}={saved.get(field)!r}, this fit "
                             f"has {metadata[field]!r}")
    _check_schedule(saved, metadata, where)
    opt_state = ck.opt_state
    if isinstance(opt_state, (tuple, list)):  # the saved leaves
        try:
            opt_state = _restored_state(optimizer, params, opt_state)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    else:  # restored when loaded: of this process's dtypes
        opt_state = checks.check_opt_state(optimizer, params, opt_state,
                                           f"{where}'s optimizer state")
    history = ck.history or {}
    want_m, got_m = set(empty_history), set(history)
    want_s = {s for d in empty_history.values() for s in d}
    got_s = {s for d in history.values() for s in d}
    if want_m != got_m or want_s != got_s:
        diff = []
        if want_m != got_m:
            diff.append(f"metrics {sorted(got_m)} in the checkpoint, {sorted(want_m)} in this fit")
        if want_s != got_s:
            diff.append(f"splits {sorted(got_s)} in the checkpoint, {sorted(want_s)} in this fit")
        raise ValueError(f"{where}'s history differs from this fit: {'; '.join(diff)}")
    if any(len(v) != ck.epoch for d in history.values() for v in d.values()):
        raise ValueError(f"{where}'s history does not have {ck.epoch} epochs in every entry")
    if ck.epoch > epochs:
        raise ValueError(f"{where} is at epoch {ck.epoch}, beyond epochs={epochs} "
                         "(epochs is the TOTAL number of epochs)")
    if not allow_new_data and "data" in saved and saved["data"] != metadata["data"] and not (
            # saved with jax_enable_x64 switched the other way: samples hashed as float64
            fingerprint is not None and saved["data"] == fingerprint(
                np.float32 if np.dtype(float_dtype()) == np.float64 else np.float64)):
        changed = sorted(s for s in set(saved["data"]) | set(metadata["data"])
                         if saved["data"].get(s) != metadata["data"].get(s))
        raise ValueError(f"{where} was trained on other data (splits {changed} differ in "
                         "size, shape or content); pass allow_new_data=True if that is intended")
    if metadata.get("epochs") != saved.get("epochs") and _schedule_depends_on_epochs(
            metadata.get("schedule"), saved.get("epochs"), epochs):
        warnings.warn(f"fit: resuming a run planned for {saved.get('epochs')} epochs with "
                      f"epochs={epochs}: this schedule's rates depend on the total, so this "
                      "run will not match an uninterrupted one", stacklevel=3)
    batch = getattr(ck, "batch", 0) or 0
    if ck.epoch == epochs and batch:
        raise ValueError(f"{where} is {batch} batches into epoch {ck.epoch}, beyond "
                         f"epochs={epochs}")
    if epoch_batches is not None and batch > epoch_batches:  # == : all trained, not evaluated
        raise ValueError(f"{where} is {batch} batches into epoch {ck.epoch}, but an epoch of "
                         f"this fit has {epoch_batches} batches")
    return Progress(TrainState(params, opt_state, key), history, ck.epoch, batch)


def fit(
    net: Network,
    params: Params | None,
    data: Mapping[str, tuple],
    *,
    epochs: int,
    loss: str = "MSE",
    metrics: Sequence[str] = ("accuracy",),
    batch_size: int | None = None,
    schedule: Schedule = Schedule(),
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    key: jax.Array | int | None = None,
    train_split: str = "dtrain",
    callbacks: Sequence[Callable[[int, dict], Any]] = (),
    checkpoints: Checkpointer | None = None,
    resume: Any = None,
    allow_new_data: bool = False,
    check_finite: bool = True,
    debug: bool = False,
    mesh: Any = None,
    policy: Any = None,
    eval_chunk: int | None = None,
    eval_splits: Sequence[str] | None = None,
    stream: streaming.Stream | bool | None = None,
) -> FitResult:
    """Train ``net`` until ``epochs`` epochs are done; evaluate every split after each one.

    ``data`` maps split names to ``(X, Y)``; ``data[train_split]`` is trained
    on (shuffled each epoch from ``key``, ``N // batch_size`` batches, the
    remainder dropped; ``batch_size=None`` is one full batch). ``metrics`` are
    metric or loss names; the training loss is always appended. The default
    optimizer is EpyNN's SGD with ``schedule`` (which depends on the total
    ``epochs``). Each callback is called as ``callback(epoch, history)`` after
    every epoch (a copy of the history, to read: changing it is refused) and may
    return ``False`` to stop. Returns params, optimizer
    state, key and the history ``{metric: {split: [value per epoch]}}``.

    ``checkpoints`` (e.g. ``epynn_jax.io.Checkpoints(directory, every=5,
    best=('accuracy', 'dval', 'max'))``) is told after every epoch, at the end and
    on Ctrl-C or an error, and saves what its policy says. ``resume`` (a checkpoint
    loaded with ``epynn_jax.io.load_checkpoint``) continues a run: params, optimizer state,
    PRNG key and history come from it (``params``, ``opt_state`` and ``key`` are
    then ignored), and training runs from its epoch up to ``epochs``, the TOTAL.
    Resuming with the same arguments gives bitwise the parameters of an
    uninterrupted run. A checkpoint records the data it was trained on (sizes,
    shapes, a hash of some samples): resuming on other data raises unless
    ``allow_new_data=True``.

    Ctrl-C: the ``KeyboardInterrupt`` is caught, ``checkpoints`` saves the last
    COMPLETED epoch, and :class:`~epynn_jax.errors.TrainingInterrupted` (a
    ``KeyboardInterrupt``) is raised with ``.result`` (that state as a
    ``FitResult``) and ``.checkpoint``. (Without callbacks or checkpoints, small
    epochs run several per compiled call, up to about 0.2 s of them: the epochs
    of the call a Ctrl-C interrupts are lost, as an interrupted epoch is.)
    Any other error once training has begun (a callback's, a checkpoint save's, a
    loader's) is raised unchanged with ``err.fit_result``: the ``FitResult`` of the
    epochs (and streamed batches) done before it, which ``checkpoints`` also saves
    (as on Ctrl-C).

    Non-finite guard (``check_finite=True``): when a batch's loss or any
    layer's gradient or updated parameters become NaN or inf, or the training
    ``loss`` on an evaluated split does, the epoch is dropped and
    :class:`~epynn_jax.errors.NonFiniteError` is raised naming the epoch, batch
    and layer, with the last good ``params``/``opt_state`` and the ``history``.
    (A metric that is undefined on a split, such as precision at 0/0 or
    ``MSLE`` of negative outputs, is recorded as NaN, as EpyNN does, and
    training goes on.)
    ``debug=True`` runs each epoch op by op (``jax.disable_jit``) under
    ``jax.debug_nans``/``debug_infs``, so the first operation that makes a NaN
    or inf raises (slow; for finding the cause).

    ``mesh`` (a ``jax.sharding.Mesh`` with an axis ``'data'``, or a list of
    devices) trains data-parallel: each batch is split over the devices,
    parameters are replicated and gradients summed across devices (see
    :mod:`~epynn_jax.network.parallel`); ``batch_size`` must be divisible by
    the number of devices.

    ``policy`` (a :class:`~epynn_jax.network.precision.Policy` or a name such as
    ``'bfloat16'``) trains under that precision policy instead of ``net.policy``
    (see :mod:`~epynn_jax.network.precision`); checkpoints record the one used.
    A checkpoint may be resumed under another policy (bitwise equality with an
    uninterrupted run then no longer holds; across float16's loss scaling the
    optimizer's own state carries over and the scale starts afresh or is dropped).
    Under float16, ``FitResult.skipped_steps`` counts the steps loss scaling
    skipped (gradients not finite); a call that skipped every step, and so
    returns the parameters it was given, warns (``optim.SkippedStepsWarning``).

    ``eval_splits`` names the splits evaluated after every epoch (default: every
    split of ``data``; ``()``: none, the fastest epoch, with an empty history).
    A split that is neither trained on nor evaluated is checked for its shapes
    only: ``fit`` converts, places and reads none of its values (checkpoints
    still fingerprint it).
    Each of them is evaluated ``eval_chunk`` samples at a time inside the compiled
    epoch, so memory does not grow with the sets; the metrics equal those of
    one forward over each set. ``None`` takes as many samples as 16 MiB of
    forward caches hold on a CPU, 256 MiB on an accelerator
    (:func:`~epynn_jax.network.epoch.eval_chunk`).

    Streaming (:mod:`~epynn_jax.network.streaming`, ``docs/streaming.md``): a
    split may also be an iterable of ``(X, Y)`` batches (a Grain or PyTorch
    ``DataLoader``, a list, a generator) or memory-mapped arrays; such data, a
    set larger than half the device's memory, or ``stream=True`` /
    ``stream=Stream(...)`` trains from the host, several batches per compiled
    call, the next chunk read and placed while the device trains. Arrays
    stream in the in-memory epoch's batch order (bitwise the same
    parameters); a loader's order is its own. Progress, Ctrl-C, checkpoints
    (``Checkpoints(every_batches=N)``) and ``resume`` then work mid-epoch.
    Streamed values are checked chunk by chunk as they are read (a NaN in batch
    ``i`` raises a ``ValueError`` naming it when that chunk is read).
    """
    with _gc.paused():  # checks, conversions, the optimizer: see network._gc
        checks.check_static(checks.check_net(net, "fit"), "fit")
        if policy is not None:
            net = dataclasses.replace(net, policy=as_policy(policy, "fit"))
        epochs = checks.positive_int(epochs, "epochs")
        allow_new_data, check_finite, debug = (checks.check_bool(v, n) for v, n in (
            (allow_new_data, "allow_new_data"), (check_finite, "check_finite"), (debug, "debug")))
        if eval_chunk is not None:
            eval_chunk = checks.positive_int(eval_chunk, "eval_chunk")
        if not isinstance(data, Mapping):
            raise TypeError(f"fit: data must map split names to (X, Y), got {type(data).__name__}")
        if not all(isinstance(s, str) for s in data):  # (mixed keys: JAX cannot sort them)
            raise TypeError(f"fit: data's split names must be strings, got "
                            f"{[s for s in data if not isinstance(s, str)][:5]}")
        metrics = checks.check_options(schedule, optimizer, callbacks, metrics)
        if checkpoints is not None and not all(callable(getattr(checkpoints, f, None)) for f in (
                "start", "after_epoch", "finish", "interrupted")):
            raise TypeError(f"fit: checkpoints must be a checkpoint policy such as "
                            f"epynn_jax.io.Checkpoints(directory), got {checkpoints!r}")
        if resume is not None and not all(hasattr(resume, f) for f in (
                "net", "params", "opt_state", "key", "epoch", "history", "metadata")):
            raise TypeError(f"fit: resume takes a checkpoint loaded with "
                            f"epynn_jax.io.load_checkpoint(path), got {resume!r}")
        if resume is None or params is not None:  # resuming takes the checkpoint's params
            params = checks.working_dtypes(checks.check_params(net, params))
            if resume is None:
                checks.check_params_finite(net, params)
        loss = losses.check_loss(loss, net.output_activation)
        metric_names = tuple(dict.fromkeys([*(metrics_lib.check_metric(m) for m in metrics), loss]))
        if train_split not in data:
            raise ValueError(f"fit: data has no training split {train_split!r} "
                             f"(splits: {', '.join(data)})")
        evaluated = checks.check_eval_splits(eval_splits, data)
        plan = _plan_data(net, data, loss, train_split, batch_size, epochs, stream, checkpoints,
                          optimizer, schedule, mesh, frozenset((train_split, *evaluated)))
        splits, batch_size, steps = plan.splits, plan.batch_size, plan.steps
        for s in evaluated:
            if isinstance(splits[s], streaming.BatchSource) and splits[s].one_shot:
                raise ValueError(f"fit: data[{s!r}] is a one-shot iterator: it cannot be read "
                                 "again to evaluate it after every epoch; leave it out of "
                                 "eval_splits or pass an iterable that can be read again")
        if mesh is not None:
            mesh = parallel.as_mesh(mesh)
            train = splits[train_split]
            n_train = (train.n if isinstance(train, streaming.ArraySource) else
                       None if isinstance(train, streaming.BatchSource) else train[0].shape[0])
            parallel.check_batch_size(mesh, batch_size, n_train)
        if checkpoints is not None:
            checkpoints.start(metric_names, evaluated)
        metadata: dict[str, Any] = {}  # what checkpoints record and a resume compares
        if checkpoints is not None or resume is not None:  # (nothing else reads it)
            metadata = {"loss": loss, "metrics": list(metric_names), "batch_size": batch_size,
                        "train_split": train_split, "epochs": epochs,
                        "schedule": dataclasses.asdict(schedule) if optimizer is None else None,
                        "data": data_fingerprint(fingerprinted := {
                            s: data[s] if s not in plan.sources else splits[s] for s in data})}
        scaled = False  # (EpyNN's SGD has no loss scaling)
        if optimizer is None:
            optimizer = epynn_sgd(schedule, epochs, steps)
        else:
            scaled = check_loss_scaling(optimizer, params if resume is None else resume.params)
        if net.policy.compute_dtype == "float16" and not scaled:
            optimizer = loss_scaling(optimizer)
        history: dict[str, dict[str, list[float]]] = {m: {s: [] for s in evaluated}
                                                      for m in metric_names}
        if resume is not None:
            progress = _resume(resume, net, optimizer, metadata, history, epochs, allow_new_data,
                               _epoch_batches(plan, train_split),
                               functools.partial(data_fingerprint, fingerprinted))
        else:
            if opt_state is None:
                opt_state = optimizer.init(params)
            else:
                opt_state = checks.check_opt_state(optimizer, params, opt_state)
            progress = Progress(TrainState(tuple(params), opt_state, checks.check_key(key)),
                                history, 0)
        progress = progress._replace(history=_truncated(progress.history, progress.epoch))  # own
        if mesh is not None:
            in_memory = {s: xy for s, xy in splits.items() if s not in plan.sources}
            state, placed = parallel.place(mesh, progress.state, in_memory, train_split)
            splits = {**splits, **placed}
            progress = progress._replace(state=state)
        train, evaluate = splits[train_split], {s: splits[s] for s in evaluated}
        run = functools.partial(_epoch, mesh=mesh, eval_chunk=eval_chunk)
        first = progress.state.opt_state  # (its step counters: the skips of this call)

    saved: dict[str, Path] = {}
    began = (progress.epoch, progress.batch)  # (a resume may begin mid-epoch)
    view = None  # the callbacks' copy of the history (_call_backs)
    streamed = _streams(plan, progress)
    feeder: streaming.Feeder | None = None
    opened: list[streaming.Feeder] = []  # closed at the end, even if made half (Ctrl-C)

    def on_chunk(done: streaming.ChunkDone) -> None:
        """A streamed epoch's progress after each chunk: Ctrl-C and checkpoints see it."""
        nonlocal progress
        progress = Progress(done.state, progress.history, progress.epoch, done.batches)
        if checkpoints is not None and callable(getattr(checkpoints, "after_batches", None)):
            saved.update(checkpoints.after_batches(net, progress, metadata))

    # Several epochs per compiled call when the host has nothing to do after each one
    # (no callback, no checkpoint, not streamed, not debugging); else one.
    pacer = (_Pacer((net, optimizer.update, loss, metric_names, batch_size, check_finite,
                     mesh, eval_chunk, _shapes({train_split: train, **evaluate})))
             if not (callbacks or checkpoints is not None or debug or streamed) else None)
    replay = False  # the next epoch failed in a call of its own: replay it to locate it
    head = None  # streamed: the next epoch's first chunk, dispatched while this one ended
    one_by_one = 0  # a call of several epochs failed: one epoch per call up to this one
    try:
        # (in the try: Ctrl-C while it reads the first chunk is an interrupted fit)
        feeder = _feeder(net, plan, train, data[train_split], loss, batch_size, progress,
                         epochs, mesh, evaluate.values(), opened)
        while progress.epoch < epochs:
            epoch = progress.epoch
            try:
                if feeder is not None and (plan.stream is not None or epoch == feeder.first):
                    state, scores, guard, head = _streamed_epoch(
                        net, optimizer.update, loss, metric_names, progress, feeder.epoch(epoch),
                        evaluate, check_finite, debug, mesh, eval_chunk, on_chunk, head,
                        functools.partial(feeder.first_of, epoch + 1))
                    feeder.evaluated(epoch)  # a loader's next pass may start (streaming._Gate)
                elif debug or replay:
                    state, scores, guard = run(net, optimizer.update, loss, metric_names,
                                               batch_size, progress.state, train, evaluate,
                                               check_finite, debug)
                else:
                    k = (1 if pacer is None or epoch < one_by_one else
                         pacer.epochs(epochs - epoch))
                    state, rows, failed = _epochs(net, optimizer.update, loss, metric_names,
                                                  batch_size, progress.state, train, evaluate,
                                                  check_finite, mesh, eval_chunk, k, pacer)
                    if failed:  # several: rerun them one by one; one: replay it alone
                        one_by_one, replay = epoch + k, k == 1
                        continue
                    progress = Progress(state, _append_rows(progress.history, rows), epoch + k)
            except FloatingPointError as err:  # debug=True: jax.debug_nans found the operation
                raise _debug_error(epoch, err, progress) from err
            if progress.epoch == epoch:  # one epoch run alone (streamed, debug or replayed)
                if guard is not None and not (bool(guard.ok) and finite_scores(scores, loss)):
                    # progress.state: the epoch's first state, or, streaming, the last good
                    # chunk's
                    raise non_finite_error(net, epoch, guard, progress.state, progress.history,
                                           scores=scores, advice=_STREAM_ADVICE if
                                           progress.batch else "")
                progress = Progress(state, _append(progress.history, scores), epoch + 1)
                replay = False
            if checkpoints is not None:
                saved.update(checkpoints.after_epoch(net, progress, metadata))
            if callbacks:
                stop, view = _call_backs(callbacks, progress, view)
                if stop:
                    break
        if checkpoints is not None:
            saved.update(checkpoints.finish(net, progress, metadata))
        if check_finite:  # the guard found them finite: the next fit or predict need not read them
            checks.remember_finite(progress.state.params)
    except KeyboardInterrupt as err:
        progress = progress._replace(history=_truncated(progress.history, progress.epoch))
        last, unsaved = None, ""
        if checkpoints is not None:
            try:
                last = checkpoints.interrupted(net, progress, metadata)
            except (Exception, KeyboardInterrupt) as again:  # noqa: BLE001 (a full disk, a 2nd
                unsaved = f"; its checkpoint could not be saved: {again!r}"  # Ctrl-C: told)
            if last is not None:
                saved["last"] = last
        within = f" and {progress.batch} batches of the next" if progress.batch else ""
        raise TrainingInterrupted(
            f"fit interrupted after {progress.epoch} completed epochs{within}"
            + (f"; checkpoint saved to {last}" if last else "") + unsaved,
            result=_result(progress, saved, _skips(first, progress.state)[0]),
            checkpoint=last) from err
    except Exception as err:  # a callback's, a checkpoint's or a loader's: keep what trained
        if not isinstance(err, NonFiniteError) and (progress.epoch, progress.batch) != began:
            kept = progress._replace(history=_truncated(progress.history, progress.epoch))
            _keep_progress(err, kept, saved, first, functools.partial(
                _save_on_error, err, checkpoints, net, kept, metadata))
        raise
    finally:
        for made in opened:
            made.close()
    skipped, steps = _skips(first, progress.state)
    if skipped and skipped == steps:  # float16: the parameters are the ones it was given
        warnings.warn(_all_skipped(steps, progress.state.opt_state.scale), SkippedStepsWarning,
                      stacklevel=user_stacklevel())
    return _result(progress, saved, skipped)


#: How long one compiled call of several epochs may run (see :class:`_Pacer`).
BLOCK_SECONDS = 0.2
#: Seconds per epoch measured, by configuration (None: compiled, not timed yet).
_PACES: dict[tuple, float | None] = {}


class _Pacer:
    """How many epochs ``fit``'s next compiled call runs (:func:`~.epoch.run_epochs`).

    Each call of a small epoch costs the host tens of microseconds to launch and
    read back; a Dense epoch of 0.5 ms on a 2-core CPU ran 1.3x faster ten to a
    call. A configuration's first call runs one epoch (and compiles); the second
    one epoch, timed; later calls as many epochs as fit in :data:`BLOCK_SECONDS`
    (at most :data:`~.epoch.EPOCH_BLOCK`), so that Ctrl-C still stops training
    within a fraction of a second (the epochs of an interrupted call are lost,
    as an interrupted epoch is). The pace is remembered across ``fit`` calls.
    """

    def __init__(self, key: tuple):
        self.key = key

    def epochs(self, left: int) -> int:
        pace = _PACES.get(self.key)
        if not pace:
            return 1
        return max(1, min(left, EPOCH_BLOCK, int(BLOCK_SECONDS / pace)))

    def record(self, epochs: int, seconds: float) -> None:
        if len(_PACES) > 256:
            _PACES.clear()
        _PACES[self.key] = seconds / epochs if self.key in _PACES else None


def _shapes(splits: Mapping[str, Any]) -> tuple:
    """The shapes and dtypes of ``{split: (X, Y)}`` (part of a :class:`_Pacer` key)."""
    return tuple((s, *((a.shape, a.dtype) for a in xy)) for s, xy in splits.items())


def _epochs(net, update, loss, metric_names, batch_size, state, train, splits,
            check_finite: bool, mesh, eval_chunk, k: int, pacer: _Pacer | None):
    """``k`` epochs in one compiled call (:func:`~.epoch.run_epochs`); returns ``(state,
    [scores of each epoch], failed)``.

    With the guard on, the epochs are good when every batch cost, the ``loss`` on
    every evaluated split and the parameters at the end are finite (a non-finite
    parameter stays so through every later update). Else ``failed`` is True, no
    scores are returned and ``state`` is the one the call started from: the caller
    reruns these epochs one per call to find the bad one."""
    start = time.perf_counter()
    with _gc.paused():
        new, buffers, bad = stored_run_epochs(net, update, loss, metric_names, batch_size,
                                              state, train, splits, _count(k), check_finite,
                                              mesh=mesh, eval_chunk=eval_chunk)
    buffers, bad = fetch((buffers, bad))
    rows = [{s: dict(zip(metric_names, b[i])) for s, b in buffers.items()} for i in range(k)]
    if check_finite and not (np.all(bad[:k] == 0) and all(finite_scores(r, loss) for r in rows)
                             and checks.tree_finite(new.params)):
        return state, [], True
    if pacer is not None:
        if not (check_finite or buffers):  # nothing read back: the call may still run
            jax.block_until_ready(new.params)
        pacer.record(k, time.perf_counter() - start)
    return new, rows, False


@functools.lru_cache(maxsize=EPOCH_BLOCK)
def _count(k: int) -> jax.Array:
    """``k`` placed on the device once (an explicit transfer: a Python int passed to the
    compiled call would be an implicit one, refused under ``jax.transfer_guard``). An int32
    whether 64-bit mode is on or not: a count cached under x64 (int64) and passed after
    it was switched off made the same program compile a second time."""
    return jax.device_put(np.int32(k))


def _append_rows(history: dict, rows: list[dict]) -> dict:
    """:func:`_append` of several epochs' scores."""
    for scores in rows:
        _append(history, scores)
    return history


_STREAM_ADVICE = ("err.params holds the parameters after the last good chunk of batches "
                  "of that epoch. Try a lower learning rate, scaled inputs, or "
                  "fit(debug=True) to find the operation.")


class _DataPlan(NamedTuple):
    """How ``fit`` holds its splits: device arrays, or host sources it streams."""

    splits: dict[str, Any]      # split -> (X, Y) device arrays, or a streaming source
    sources: frozenset[str]     # the streamed splits
    stream: streaming.Stream | None  # None: the in-memory epoch
    batch_size: int
    steps: int


def _plan_data(net: Network, data: Mapping[str, Any], loss: str, train_split: str,
               batch_size: int | None, epochs: int, stream: Any, checkpoints: Any,
               optimizer: Any, schedule: Schedule, mesh: Any, used: frozenset[str]
               ) -> _DataPlan:
    """Validate the splits and choose, per split, the device or a host stream.

    Only the ``used`` splits (the training split and those evaluated) are converted
    and placed; an in-memory split that ``fit`` never reads is checked for its shapes
    only (:func:`~epynn_jax.network.checks.check_split`) and left out of ``splits``:
    converting it cost a third of ``fit``'s per-call time with ``eval_splits=()``.

    Streamed: every split when ``stream`` is given, else each split that needs it
    (:func:`~epynn_jax.network.streaming.needs_stream`: an iterable of batches, a
    memory-mapped array, a set too large for the device) and then the training
    split too, from the host. Checkpoints saved every few batches also stream the
    training split (an in-memory epoch is one call, with no batch to save after).
    """
    stream = streaming.as_stream(stream)
    every = getattr(checkpoints, "every_batches", None) if checkpoints is not None else None
    streamed = {s for s, xy in data.items() if stream is not None or streaming.needs_stream(xy)}
    if streamed or every:
        stream = stream or streaming.Stream()
        streamed.add(train_split)
    if every and stream.chunk_batches is None:
        stream = dataclasses.replace(stream, chunk_batches=every)
    if batch_size is not None:
        batch_size = checks.positive_int(batch_size, "batch_size")
    unread = [s for s in data if s not in streamed and s not in used]
    for s in unread:
        checks.check_pair(net, s, data[s])
    in_memory = checks.check_data(net, {s: xy for s, xy in data.items()
                                        if s not in streamed and s in used}, loss)
    sources = {s: streaming.source(net, s, data[s], loss, batch_size if s == train_split
                                   else None, epochs, stream, mesh)
               for s in data if s in streamed}
    splits = {s: in_memory[s] if s in in_memory else sources[s] for s in data
              if s not in unread}
    train = splits[train_split]
    if isinstance(train, streaming.BatchSource):
        batch_size, steps = train.batch_size, train.n_batches
        if steps is None:
            if optimizer is None and schedule.schedule != "steady":
                raise ValueError(
                    f"fit: data[{train_split!r}] does not say how many batches an epoch has "
                    f"(no len()), and schedule {schedule.schedule!r} needs it: pass "
                    "Stream(steps_per_epoch=N), or an iterable with a length")
            steps = 1  # a steady rate does not depend on the step
    else:
        n_train = train.n if isinstance(train, streaming.ArraySource) else train[0].shape[0]
        batch_size = min(n_train if batch_size is None else batch_size, n_train)
        steps = max(n_train // batch_size, 1)
        if isinstance(train, streaming.ArraySource):
            train.batch_size = batch_size
    return _DataPlan(splits, frozenset(sources), stream, batch_size, steps)


def _streams(plan: _DataPlan, progress: Progress) -> bool:
    """Whether ``fit`` reads a host stream (:func:`_feeder`): streamed splits, or an
    in-memory fit resumed mid-epoch."""
    return plan.stream is not None or bool(progress.batch)


def _feeder(net, plan: _DataPlan, train, given, loss: str, batch_size: int,
            progress: Progress, epochs: int, mesh, evaluate=(), opened: list | None = None
            ) -> streaming.Feeder | None:
    """The reader of the streamed epochs (None: every epoch in memory). An in-memory fit
    resumed mid-epoch streams that one epoch from its training arrays on the host."""
    if not _streams(plan, progress):
        return None
    stream, last = plan.stream, epochs
    if stream is None:
        stream, last = streaming.Stream(), progress.epoch + 1
        train = streaming.ArraySource(net, "train", *(np.asarray(a) for a in given), loss,
                                      batch_size)
    return streaming.Feeder(train, stream, progress.state.key, progress.epoch,
                            progress.batch, last, mesh, evaluate, opened)


def _streamed_epoch(net, update, loss, metric_names, progress: Progress, chunks, evaluate,
                    check_finite: bool, debug: bool, mesh, eval_chunk, on_chunk,
                    head=None, ahead=None):
    """One epoch from a host stream (:func:`~epynn_jax.network.streaming.stream_epoch`),
    then every evaluated split; returns ``(state, scores, guard, head)``: the in-memory
    epoch's three (a failed chunk: the last good state, no scores, its guard) and the
    next epoch's first chunk, dispatched ahead (``head``/``ahead``: see ``stream_epoch``;
    never under ``debug``, which runs op by op)."""
    ctx = contextlib.ExitStack()
    if debug:  # op by op, so the first bad operation raises
        for cm in (jax.disable_jit(), jax.debug_nans(True), jax.debug_infs(True)):
            ctx.enter_context(cm)
    with ctx:
        state, failed, head = streaming.stream_epoch(
            net, update, loss, progress.state, chunks, guard=check_finite, mesh=mesh,
            on_chunk=on_chunk, head=head, ahead=None if debug else ahead)
        if failed is not None:
            return state, {}, failed, None
        scores = {s: streaming.evaluate_split(net, state.params, xy, metric_names, eval_chunk,
                                              mesh) for s, xy in evaluate.items()}
    guard = None
    if check_finite:  # every chunk's guard was read: the epoch is good (scores are checked next)
        guard = _healthy(net, progress.batch)
    return state, fetch(scores), guard, head


def _save_on_error(err: Exception, checkpoints: Any, net: Network, progress: Progress,
                   metadata: dict) -> Path | None:
    """The checkpoint ``checkpoints`` saves of ``progress`` when ``err`` stopped ``fit``
    (as on Ctrl-C: a script that dies of ``err`` can resume from it); ``None`` without
    checkpoints, or when that save fails too or is interrupted (``err`` gains a note:
    ``err`` is raised either way)."""
    if checkpoints is None:
        return None
    try:
        return checkpoints.interrupted(net, progress, metadata)
    except (Exception, KeyboardInterrupt) as again:  # noqa: BLE001 (err is the one to raise)
        why = "Ctrl-C" if isinstance(again, KeyboardInterrupt) else again
        add_note(err, f"fit: nor could the checkpoint of what was trained be saved: {why}")
        return None


def _keep_progress(err: Exception, progress: Progress, saved: dict, first: Any,
                   save: Callable[[], Path | None]) -> None:
    """``err`` stopped ``fit`` after it trained: give it the state of the epochs (and
    streamed batches) completed, as ``err.fit_result`` (a :class:`FitResult`), then
    ``save()`` it as a checkpoint, and a note saying so and where; the error itself goes
    on unchanged (one that takes no attribute gets only the checkpoint)."""
    try:
        skipped = _skips(first, progress.state)[0]
    except Exception:  # noqa: BLE001 (a device that failed: the count is not worth a 2nd error)
        skipped = 0
    result = _result(progress, saved, skipped)
    try:
        err.fit_result = result
    except Exception:  # noqa: BLE001 (__slots__, or a __setattr__ that refuses: err goes on)
        pass
    checkpoint = save()  # (after fit_result: a Ctrl-C during the save loses nothing)
    if checkpoint is not None:
        result.checkpoints["last"] = checkpoint
    done = f"{progress.epoch} epoch{'s' * (progress.epoch != 1)}"
    if progress.batch:
        done += f" and {progress.batch} batches of the next"
    add_note(err, f"fit: trained {done} before this error; its fit_result holds them "
               "(parameters, optimizer state, key, history)"
               + (f"; checkpoint saved to {checkpoint}" if checkpoint is not None else ""))


def _result(progress: Progress, saved: dict, skipped: int = 0) -> FitResult:
    s = progress.state
    return FitResult(s.params, s.opt_state, s.key, progress.history, progress.epoch, dict(saved),
                     progress.batch, skipped)


def _skips(first: Any, state: TrainState) -> tuple[int, int]:
    """``(skipped, steps)``: the steps loss scaling skipped and the steps it was given
    since its state ``first`` (the call's first), read once (four int32 scalars at the
    end of a call); ``(0, 0)`` without loss scaling."""
    last = state.opt_state
    if not (isinstance(first, LossScaleState) and isinstance(last, LossScaleState)):
        return 0, 0
    skipped0, steps0, skipped, steps = (int(v) for v in fetch(
        (first.skipped, first.steps, last.skipped, last.steps)))
    return skipped - skipped0, steps - steps0


def _all_skipped(steps: int, scale: jax.Array) -> str:
    """SkippedStepsWarning's message: every one of ``steps`` steps was skipped."""
    scale = float(fetch(scale))
    exponent = np.log2(scale)
    shown = f"2**{int(exponent)}" if exponent == int(exponent) else f"{scale:g}"
    return (f"fit: loss scaling skipped all {steps} of {steps} training steps of this call "
            f"(their float16 gradients were not finite at every loss scale tried, now "
            f"{shown}): the parameters did not change. Scale the inputs to about unit size, "
            "lower the learning rate, or train under the 'bfloat16' policy (float32's "
            "range, no loss scaling)")


def predict(net: Network, params: Params, X, *, chunk: int | None = None,
            stream: Any = None) -> jax.Array | np.ndarray:
    """The network's output on ``X`` (no dropout), ``chunk`` samples at a time (None: as
    many as :func:`~epynn_jax.network.epoch.eval_chunk` gives, as ``fit`` evaluates).

    ``X`` and ``params`` are checked first (shapes, dtypes, finite values); traced
    ones (``predict`` under ``jax.jit``, ``jax.grad`` or ``jax.vmap``) for their
    shapes and dtypes only.

    ``X`` is streamed from the host, as ``fit`` streams a split, when it is an
    ``np.memmap`` or larger than half the device's memory, or with ``stream=True``
    (or a :class:`~epynn_jax.network.streaming.Stream`: its ``prefetch`` and
    ``memory_budget``): read, checked and placed a chunk at a time, never whole. The
    output is then a NumPy array on the host. Not under a transformation of ``params``
    (``jax.jit``, ``jax.grad``): a traced output cannot be written to the host, so ``X``
    is then read whole, as in memory."""
    checks.check_static(checks.check_net(net, "predict"), "predict")
    if chunk is not None:
        chunk = checks.positive_int(chunk, "chunk", "predict")
    stream = streaming.as_stream(stream, "predict")
    params = checks.check_params(net, params, "predict")
    checks.check_params_finite(net, params, "predict")
    if isinstance(X, jax.core.Tracer):  # under jit, grad or vmap: shapes only
        check_input_shape(net, tuple(X.shape), "X")
    elif (stream is not None or (not isinstance(X, jax.Array)
                                 and streaming.streams_by_itself(X))) and not any(
            isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(params)):
        return _predict_streamed(net, params, X, chunk, stream or streaming.Stream())
    else:
        X = checks.as_float_arg(X, "X")  # (placed by the compiled call)
        check_input_shape(net, tuple(X.shape), "X")
        checks.check_compute_range(net, X, "predict X")
    with _gc.paused():  # its first call traces (see network._gc)
        return stored_predict(net, params, X, chunk)


def _predict_streamed(net: Network, params: Params, X, chunk: int | None,
                      stream: streaming.Stream) -> np.ndarray:
    """:func:`predict` of host data, a chunk at a time (its shapes checked first)."""
    checks.check_unmasked(X, "X")  # (its rows are read through np.asarray)
    X = X if streaming.is_array(X) else np.asarray(X)  # (nested lists)
    if not checks.is_real(X.dtype):
        raise TypeError(f"X: expected numeric data, got dtype {X.dtype}")
    check_input_shape(net, tuple(np.shape(X)), "X")
    # (the collector is paused around each compiled call only: the stream reads the
    # caller's data for as long as it takes, see network._gc)
    return streaming.predict_array(net, params, X, stream, chunk)


def evaluate(net: Network, params: Params, X, Y, metric_names: Sequence[str],
             chunk: int | None = None, *, mesh=None, stream: Any = None) -> dict:
    """Every metric on one set: :func:`~epynn_jax.network.epoch.evaluate`, or, for data
    ``fit`` would stream (an ``np.memmap``, arrays larger than half the device's memory)
    or with ``stream=True``, the same metrics from the host a chunk at a time
    (:func:`~epynn_jax.network.streaming.evaluate_source`): the set is never read
    whole, and the metrics are those of one forward over it."""
    tracing = any(isinstance(a, jax.core.Tracer) for a in (X, Y))
    stream = streaming.as_stream(stream, "evaluate")
    if mesh is not None:  # what fit takes (a list of devices too), checked as fit checks it
        mesh = parallel.as_mesh(mesh)
    on_device = all(isinstance(a, jax.Array) for a in (X, Y))  # chunked there, not read back
    if tracing or (stream is None and (on_device or not streaming.needs_stream((X, Y)))):
        return _evaluate(net, params, X, Y, metric_names, chunk, mesh=mesh)
    metric_names = metrics_lib.check_metrics(metric_names, "evaluate: metric_names")
    checks.check_net(net, "evaluate")
    if chunk is not None:
        chunk = checks.positive_int(chunk, "chunk", "evaluate")
    params = checks.check_params(net, params, "evaluate")
    checks.check_params_finite(net, params, "evaluate")
    X, Y = (a if streaming.is_array(a) else np.asarray(a) for a in (X, Y))
    # the labels checked in each chunk against the strictest loss among the metrics
    labels = next((m for m in ("CCE", "BCE", "MSLE") if m in metric_names), "MSE")
    src = streaming.ArraySource(net, "evaluate", X, Y, labels, int(np.shape(X)[0]) or 1,
                                caller="evaluate")
    scores = streaming.evaluate_source(net, params, src, metric_names, chunk, mesh,
                                       stream or streaming.Stream())
    return {name: scores[name] for name in metric_names}


def decide(A: jax.Array) -> jax.Array:
    """EpyNN's decisions: argmax for several output units, else round."""
    A2 = A.reshape(A.shape[0], -1)
    return jnp.argmax(A2, axis=1) if A2.shape[1] > 1 else jnp.round(A2[:, 0])
