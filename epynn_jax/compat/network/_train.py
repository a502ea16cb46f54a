"""How the facade's ``EpyNN.train()`` drives the core: an adapter, not an engine.

Every epoch runs the core's compiled epoch, :func:`epynn_jax.network.epoch.run_epoch`,
with the batch order EpyNN's generator draws on the host passed in as indices,
EpyNN's per-layer learning rates as ONE gradient transformation
(:func:`epynn_jax.network.optim.epynn_sgd`, one schedule per layer) and the core's
non-finite guard. This module only translates: layers to a :class:`Network`,
``se_hPars`` to :class:`Schedule` objects, the scores to EpyNN's ``metrics`` lists,
a failed guard to one printed line.

A model with custom NumPy layers is cut into segments: runs of compiled layers
(the core's :func:`~epynn_jax.network.epoch.forward_jit` and
:func:`~epynn_jax.network.epoch.backward_update`, with the same optimizer) and
the custom layers, whose own methods run eagerly between them, batch by batch.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import jax
import numpy as np

from epynn_jax.compat import _report
from epynn_jax.compat._builtin import (
    BuiltinLayer,
    for_compiled,
    to_device,
    to_device_array,
    to_host,
)
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.errors import NonFiniteError, add_note
from epynn_jax.maths import prng
from epynn_jax.maths.schedules import Schedule
from epynn_jax.network import epoch as core
from epynn_jax.network import parallel
from epynn_jax.network.model import Network, build
from epynn_jax.network.optim import epynn_sgd

__all__ = ["Segment", "plan", "check_input", "check_params", "train_epochs", "evaluate_sets",
           "forward_segments"]

ON_NONFINITE = ("stop", "raise", "ignore")
ADVICE = "Lower the learning rate (se_hPars) or scale the inputs."


@dataclasses.dataclass
class Segment:
    """A run of layers: ``compiled`` (built-in, one Network) or one eager custom layer."""

    compiled: bool
    indices: tuple[int, ...]
    net: Network | None = None


def compiled_layer(layer):
    """The functional layer to compile for ``layer``, or None if it runs eagerly."""
    if isinstance(layer, BuiltinLayer):
        return layer._fl
    return layer.__dict__.get("_adapter")


def plan(layers: list, sample_shape: tuple[int, ...] | None = None) -> list[Segment]:
    """Segments of the model: maximal runs of compiled layers, and each eager layer alone.

    Each compiled run is the core's :func:`~epynn_jax.network.model.build` of its layers,
    the first run's for ``sample_shape`` when given (the input about to run), any other's
    for the shape its first layer last saw. A layer keeps the shape of the last input
    EpyNN's eager ``forward`` gave it (a recurrent layer takes any number of steps), so
    the run is built anew, never assembled from shapes that may no longer chain."""
    segs, run = [], []
    for i, layer in enumerate(layers):
        if compiled_layer(layer) is not None:
            run.append(i)
            continue
        if run:
            segs.append(Segment(True, tuple(run)))
            run = []
        segs.append(Segment(False, (i,)))
    if run:
        segs.append(Segment(True, tuple(run)))
    for n, s in enumerate(segs):
        if s.compiled:
            fls = [compiled_layer(layers[i]) for i in s.indices]
            shape = sample_shape if n == 0 and sample_shape is not None else fls[0].input_shape
            s.net = build(fls, tuple(shape))
    return segs


def train_sample_shape(model) -> tuple[int, ...] | None:
    """The sample shape of the model's training set (None without one)."""
    X = getattr(getattr(model.embedding, "dtrain", None), "X", None)
    return None if X is None else tuple(np.shape(X)[1:])


def check_input(model, shape: tuple[int, ...], where: str) -> None:
    """Raise ``LayerError`` unless samples of ``shape`` (m, ...) fit the model's built-in
    layers and their parameters, up to its first custom layer (whose output decides the
    rest); nothing is traced (:meth:`~epynn_jax.compat._builtin.BuiltinLayer.check_fits`)."""
    sample = tuple(shape[1:])
    for i, layer in enumerate(model.layers):
        if not isinstance(layer, BuiltinLayer):
            return
        sample = layer.check_fits(sample, f"{where}: layer {i}")


def check_dX(layer, i: int, dX, shape: tuple[int, ...], where: str) -> None:
    """Raise unless a custom layer's ``backward`` returned ``dX`` of its input's ``shape``
    (the layer before it would fail on it, far from the cause)."""
    if tuple(np.shape(dX)) != tuple(shape):
        raise ValueError(f"{where}: layer {i} ({type(layer).__name__}).backward returned dX "
                         f"of shape {tuple(np.shape(dX))}; its input had shape {tuple(shape)}")


def check_params(model, where: str) -> None:
    """Raise ``LayerError`` unless every built-in layer's ``p`` has the shapes its input
    needs (a user may assign ``layer.p['W']``)."""
    for i, layer in enumerate(model.layers):
        if isinstance(layer, BuiltinLayer) and layer._fl is not None:
            layer.check_fits(layer._fl.input_shape, f"{where}: layer {i}")


# -- the optimizer: EpyNN's per-layer rates as one gradient transformation -------------------


def _schedule(layer) -> Schedule | None:
    """The layer's schedule (from its completed ``se_hPars``); None (rate 0) when it does not
    train: a built-in layer with ``trainable = False``, a custom layer without ``lrate``, a
    learning rate of 0."""
    trains = layer.trainable if isinstance(layer, BuiltinLayer) else hasattr(layer, "lrate")
    hp = getattr(layer, "se_hPars", None) or {}
    if not trains or not hp or hp.get("learning_rate") == 0:
        return None
    return Schedule.from_hpars(hp)


def optimizer(layers: list, indices, epochs: int, start: int, steps_per_epoch: int):
    # (own_updates: a compiled custom layer applies its own update_parameters)
    """EpyNN's SGD for layers ``indices``: epoch ``start`` at step 0, over ``epochs`` in all."""
    own = tuple(getattr(compiled_layer(layers[i]), "update", None)
                if not isinstance(layers[i], BuiltinLayer) else None for i in indices)
    return epynn_sgd(tuple(_schedule(layers[i]) for i in indices), epochs, steps_per_epoch,
                     first_epoch=start, own_updates=own)


# -- training -----------------------------------------------------------------------------


def _say_nonfinite(model, err: NonFiniteError) -> None:
    """The one line a diverging run prints (always, even when quiet: it is an error)."""
    line = (f"EpyNN.train: stopped at epoch {err.epoch}"
            + (f", batch {err.step}" if err.step is not None else "")
            + (f", layer {err.layer_index} ({err.layer_name})" if err.layer_name else "")
            + ": NaN or inf; the layers keep the weights of the last good epoch. " + ADVICE)
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _nonfinite(model, err: NonFiniteError, on_nonfinite: str) -> None:
    model.diverged = err
    if on_nonfinite == "raise":
        raise err
    _say_nonfinite(model, err)


def check_mesh(model, mesh):
    """``mesh`` as a :class:`~jax.sharding.Mesh` that can train ``model`` (every layer
    compiled, the batch size divisible by its ``'data'`` devices), else an error; checked
    before ``train`` changes the model's epoch count."""
    mesh = parallel.as_mesh(mesh)
    if any(compiled_layer(layer) is None for layer in model.layers):
        raise ValueError("EpyNN.train: mesh needs every layer compiled; this model has "
                         "eager custom layers")
    n = len(model.embedding.dtrain.ids)
    batch_size = min(model.embedding.se_dataset["batch_size"] or n, n)
    parallel.check_batch_size(mesh, batch_size, n, "EpyNN.train")
    return mesh


def train_epochs(model, start: int, stop: int, on_nonfinite: str = "stop", mesh=None) -> None:
    """Epochs ``start..stop-1`` of ``model``; the layers' dicts are refreshed afterwards."""
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"EpyNN.train: on_nonfinite must be one of {', '.join(ON_NONFINITE)}, "
                         f"got {on_nonfinite!r}")
    check_params(model, "EpyNN.train")
    model.diverged = None
    segs = plan(model.layers, train_sample_shape(model))
    if len(segs) == 1 and segs[0].compiled:
        _train_compiled(model, segs[0].net, start, stop, on_nonfinite, mesh)
    else:
        if mesh is not None:
            raise ValueError("EpyNN.train: mesh needs every layer compiled; this model has "
                             "eager custom layers")
        _train_segmented(model, segs, start, stop, on_nonfinite)
    _report.say("", model)


def _train_compiled(model, net: Network, start: int, stop: int, on_nonfinite: str,
                    mesh) -> None:
    """One :func:`~epynn_jax.network.epoch.run_epoch` call per epoch; the host shuffles
    (EpyNN's generator), records the scores and prints.

    The host reads epoch ``e``'s scores and guard while the device runs epoch
    ``e + 1`` (a pipeline one epoch deep): no epoch waits for the host. When
    epoch ``e`` failed, the already dispatched ``e + 1`` is dropped with it.
    """
    names = tuple(model.metrics)
    splits = model._device_data()
    params = model._device_params()
    # The Embedding (A = X, no parameters) is left out of the compiled epoch: with it the
    # RNN workload's epoch measured up to 20 % slower (the next layer's input gradient
    # then feeds a layer, though nothing reads it).
    k = 1 if isinstance(model.layers[0], Embedding) else 0
    fixed, params, train_net = params[:k], tuple(params[k:]), Network(net.layers[k:])
    # the shuffle's state before the draw of epoch e, for the first epoch and the last two
    drawn = {start: model.embedding._shuffle_state()}
    idx = model.embedding.batch_indices().astype(np.int32)
    opt = optimizer(model.layers, range(k, len(model.layers)), stop, start, idx.shape[0])
    state = core.TrainState(params, opt.init(params), model._key)
    guard = on_nonfinite != "ignore"
    if mesh is not None:
        mesh = parallel.as_mesh(mesh)
        parallel.check_batch_size(mesh, idx.shape[1], splits["dtrain"][0].shape[0],
                                  "EpyNN.train")
        state, splits = parallel.place(mesh, state, splits, "dtrain")
    track = not _report.is_quiet(model) and _report.interactive()
    t0 = time.time()
    recorded = None  # the last epoch recorded: (e, state before it, its outputs, its batches)

    def settle(e: int, before: core.TrainState, out: tuple, batches) -> bool:
        """Record epoch ``e`` (True), or stop at it (False: a NaN or inf)."""
        nonlocal recorded
        scores, ok, cost = core.fetch((out[2], out[3] if guard else None,
                                       out[1][-1] if track else None))
        model._set_epoch(e)
        watch = None
        if guard and not ok:  # replay the epoch, a flag per step: where it failed
            watch = core.failed_guard(train_net, opt.update, model.loss, batches.shape[1],
                                      before, splits["dtrain"], out[0].params, out[1],
                                      idx=batches, mesh=mesh)
            ok = watch.ok
        if guard and not (bool(ok) and _finite(model, scores)):
            err = core.non_finite_error(net, e, watch, before, {}, "EpyNN.train", scores,
                                        advice=ADVICE, offset=k)
            model._store_params(fixed + before.params)
            model._key, model._done_epochs = before.key, e
            _nonfinite(model, err, on_nonfinite)
            return False
        model._record(scores)
        recorded = (e, before, out, batches)
        if track:
            model._progress(e, t0, scores.get("dtrain", {}).get("accuracy"), float(cost))
        model.report()
        return True

    last = None  # (epoch, state before it, its outputs, its batches): dispatched, not read
    try:
        for e in range(start, stop):
            if e > start:
                drawn = {start: drawn[start], e - 1: drawn.get(e - 1),
                         e: model.embedding._shuffle_state()}
                idx = model.embedding.batch_indices().astype(np.int32)
            # the core's epoch, read from its store of compiled programs when a run before
            # this one compiled it (an explicit transfer of the batch order: a device array)
            out = core.stored_run_epoch(train_net, opt.update, model.loss, names, idx.shape[1],
                                        state, splits["dtrain"], splits, guard,
                                        idx=jax.device_put(idx), mesh=mesh)
            if last is not None and not settle(*last):
                return
            last, state = (e, state, out, idx), out[0]
        if not settle(*last):
            return
    except BaseException as err:  # Ctrl-C, a failing report: keep the epochs recorded
        if model.diverged is not err:  # (on_nonfinite='raise': the layers are kept already)
            _stopped(model, err, start, recorded, drawn,
                     lambda r: _keep_epoch(model, fixed, train_net, opt, splits, r))
        raise
    _keep_epoch(model, fixed, train_net, opt, splits, last)


def _stopped(model, err: BaseException, start: int, recorded, drawn: dict, keep) -> None:
    """After ``err`` stopped the compiled ``train``: ``keep(recorded)`` the last epoch
    recorded (the layers' weights, key and epoch count then agree with ``model.metrics``),
    or, with none recorded or its weights unreadable, go back to the model before the
    call; the batch order drawn for the first epoch not kept is drawn again by the next
    ``train`` (``drawn``: the shuffle's state before epoch e's draw). ``err`` gains a
    note saying which."""
    kept = None
    if recorded is not None:
        try:
            keep(recorded)
            kept = recorded[0]
        except Exception as again:  # noqa: BLE001 (a device that failed: err is the error)
            add_note(err, f"EpyNN.train: the weights of the epochs recorded could not be read "
                       f"back ({type(again).__name__}: {again}); they are dropped")
    done = start if kept is None else kept + 1
    if done in drawn:
        model.embedding._set_shuffle_state(drawn[done])
    if kept is None:
        model._done_epochs = start
        _trim_metrics(model, start)
        add_note(err, "EpyNN.train: stopped before an epoch of this call was kept; the model "
                   "keeps the weights it had")
    else:
        add_note(err, f"EpyNN.train: stopped after epoch {kept}; the model keeps the weights of "
                   f"its {kept + 1} epochs trained (train() goes on from there)")


def _trim_metrics(model, epochs: int) -> None:
    """``model.metrics`` cut to ``epochs`` epochs (the epochs whose weights the layers hold)."""
    for values in model.metrics.values():
        for history in values:
            del history[epochs:]


def _keep_epoch(model, fixed: tuple, train_net: Network, opt, splits: dict,
                recorded: tuple) -> None:
    """The model as epoch ``recorded[0]`` left it: its weights and key in the layers and
    the model, its last batch's caches and every set's outputs computed when first read.
    ``recorded``: (epoch, state before it, its outputs, its batch order)."""
    e, before, out, batches = recorded
    state = out[0]
    model._store_params(fixed + state.params)  # (first: the one step that reads the device)
    model._key = state.key
    model._set_epoch(e)
    model._done_epochs = e + 1
    model._pending = lambda: (core.last_step_caches(
        train_net, opt.update, model.loss, before, splits["dtrain"], batches),
        splits["dtrain"][0][batches[-1]])
    model._pending_skip = len(fixed)
    for dset in model.embedding.dsets:  # outputs A and decisions P, computed when first read
        X = splits[dset.name][0]
        dset._defer(lambda X=X: core.stored_predict(train_net, state.params, X),
                    dset.Y.shape[1] > 1)


def _finite(model, scores: dict) -> bool:
    return core.finite_scores(scores, model.loss)


def _train_segmented(model, segs: list[Segment], start: int, stop: int,
                     on_nonfinite: str) -> None:
    """Batch by batch: compiled segments through the core, custom layers eagerly."""
    layers = model.layers
    params = {s: tuple(to_device(layers[i].p) for i in seg.indices)
              for s, seg in enumerate(segs) if seg.compiled}
    idx = model.embedding.batch_indices()
    opts = {s: optimizer(layers, seg.indices, stop, start, idx.shape[0])
            for s, seg in enumerate(segs) if seg.compiled}
    opt_states = {s: opts[s].init(params[s]) for s in opts}
    splits = model._device_data()
    carry = {"key": model._key}
    t0 = time.time()
    last = {}
    outputs = {}
    recorded = None  # the last epoch recorded
    try:
        for e in range(start, stop):
            model._set_epoch(e)
            if e > start:
                idx = model.embedding.batch_indices()
            good = (None if on_nonfinite == "ignore" else  # (the epoch's start, to go back to)
                    (dict(params), dict(last), carry["key"], _custom_weights(model, segs)))
            outputs, scores, cost = _segmented_epoch(model, segs, e, idx, params, opts,
                                                     opt_states, splits, carry, last)
            if on_nonfinite != "ignore" and not (_finite(model, scores)
                                                 and math.isfinite(float(cost))):
                named = (scores if not _finite(model, scores)
                         else {"the last batch": {model.loss: cost}})
                err = core.non_finite_error(None, e, None, core.TrainState((), None, good[2]),
                                            {}, "EpyNN.train", named, advice=ADVICE)
                params0, last0, key0, custom0 = good  # the weights of the last good epoch
                _keep_segments(model, segs, params0, last0, key0, e, custom0)
                model._set_epoch(e)  # (the epoch that failed, as the compiled path leaves it)
                _nonfinite(model, err, on_nonfinite)
                return
            model._record(scores)
            recorded = e
            model._progress(e, t0, scores.get("dtrain", {}).get("accuracy"), cost)
            model.report()
    except BaseException as err:  # Ctrl-C, a custom layer's error: keep where it stopped
        if model.diverged is err:
            raise
        done = start if recorded is None else recorded + 1
        try:
            _keep_segments(model, segs, params, last, carry["key"], done)
        except Exception as again:  # noqa: BLE001 (a device that failed: err is the error)
            add_note(err, f"EpyNN.train: the compiled layers' weights could not be read back "
                       f"({type(again).__name__}: {again})")
        add_note(err, f"EpyNN.train: stopped in epoch {done}; the layers keep the weights of "
                   f"the last batch trained, as EpyNN's do ({done} epochs recorded)")
        raise
    model._key = carry["key"]
    _store_segments(model, segs, params, last)
    model._set_outputs(outputs)


def _custom_weights(model, segs) -> dict[int, dict]:
    """A copy of every custom layer's ``p`` (they update their arrays in place)."""
    return {i: {k: np.array(v, copy=True) for k, v in model.layers[i].p.items()}
            for seg in segs if not seg.compiled for i in seg.indices}


def _keep_segments(model, segs, params, last, key, done: int, custom: dict | None = None
                   ) -> None:
    """The model after ``done`` epochs recorded: the compiled segments' weights
    ``params`` (and caches ``last``), the key, and, given ``custom`` (a
    :func:`_custom_weights` copy: an epoch that made NaN or inf is dropped), the custom
    layers' ``p``; without it, the custom layers keep what they updated batch by batch,
    as EpyNN's do (their own other state, if any, is theirs)."""
    for i, p in (custom or {}).items():
        model.layers[i].p.clear()
        model.layers[i].p.update(p)
    model._key = key
    _store_segments(model, segs, params, last)
    if done:
        model._set_epoch(done - 1)
    model._done_epochs = done


def _segmented_epoch(model, segs, e, idx, params, opts, opt_states, splits, carry, last):
    """One epoch batch by batch (``params``, ``opt_states``, ``last`` and the key in
    ``carry`` updated in place after each batch: an error mid-epoch finds them at the
    batch it stopped in); its outputs, scores and last cost."""
    layers = model.layers
    X, Y = splits["dtrain"]
    cost = None
    for b in idx:
        b = jax.device_put(np.asarray(b))  # (jnp.asarray compiles per shape)
        A, fcs, shapes = X[b], {}, {}
        for s, seg in enumerate(segs):
            if seg.compiled:
                carry["key"], sub = prng.split(carry["key"])
                A, fcs[s] = core.forward_jit(seg.net, params[s], to_device_array(A),
                                             sub, True)
            else:
                shapes[s] = np.shape(A)
                A = layers[seg.indices[0]].forward(np.asarray(A))
        cost, dA = core.loss_and_deriv(model.loss, Y[b], to_device_array(A))
        for s in reversed(range(len(segs))):
            seg = segs[s]
            if seg.compiled:
                dA, params[s], opt_states[s], gs, bcs = core.backward_update(
                    seg.net, opts[s].update, params[s], opt_states[s], fcs[s],
                    to_device_array(dA))
                last[s] = (fcs[s], bcs, gs)
            else:
                layer = layers[seg.indices[0]]
                dA = layer.backward(np.asarray(dA))
                check_dX(layer, seg.indices[0], dA, shapes[s], f"EpyNN.train (epoch {e})")
                layer.compute_gradients()
                layer.update_parameters()
    outputs, scores = evaluate_sets(model, segs, params, splits)
    return outputs, scores, cost


def _store_segments(model, segs, params, last) -> None:
    """The compiled segments' weights (and last caches) in their layers: those a batch
    trained (``last``); the others keep their arrays as they were (a float64 ``p``
    is not rounded through the device's float32)."""
    for s, seg in enumerate(segs):
        if not seg.compiled or s not in last:
            continue
        for j, i in enumerate(seg.indices):
            layer = model.layers[i]
            layer.p.clear()
            layer.p.update(to_host(params[s][j]))
            for name, tree in zip(("fc", "bc", "g"), last[s]):
                target = layer.__dict__.get("_" + name, layer.__dict__.get(name))
                target.clear()
                target.update(to_host(tree[j]))


def forward_segments(model, segs: list[Segment], params: dict, X) -> np.ndarray:
    """The model's output on ``X`` (no dropout), segment by segment; a compiled run is
    rebuilt for an input of another sample shape (more steps: :func:`check_input` has
    checked that the parameters fit it)."""
    A = X
    for s, seg in enumerate(segs):
        if seg.compiled:
            net, shape = seg.net, tuple(np.shape(A)[1:])
            net = net if net.input_shape == shape else build(net.layers, shape, net.policy)
            A = core.predict_jit(net, params[s], for_compiled(A))
        else:
            A = model.layers[seg.indices[0]].forward(np.asarray(A))
    return np.asarray(A)


def evaluate_sets(model, segs: list[Segment], params: dict, splits: dict) -> tuple[dict, dict]:
    """``(outputs, scores)`` of every data set: the model's output, then the core's metrics."""
    outputs, scores = {}, {}
    names = tuple(model.metrics)
    for name, (Xs, Ys) in splits.items():
        A = forward_segments(model, segs, params, Xs)
        outputs[name] = A
        scores[name] = jax.device_get(core.scores(names, Ys, to_device_array(A)))
    return outputs, scores
