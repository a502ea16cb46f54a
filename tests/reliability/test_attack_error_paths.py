"""Attacks on the error paths of ``fit`` and ``EpyNN.train``: an error once training
began keeps what was trained (``err.fit_result``, the checkpoint ``last``, the facade's
layers), and the error itself goes on unchanged.

What is probed (the combinations tests/network/test_fit_errors_keep_progress.py and
tests/compat/test_train_stopped.py leave out): a one-device (or all-host-device) mesh,
bfloat16 and float16 with loss scaling (``skipped_steps``), a resumed run that fails
again (its result, its checkpoint, a second resume bitwise), ``every_batches``
checkpoints and streamed arrays (``Stream(chunk_batches=2, prefetch=0/1/2)``), a
streamed loader failing mid-epoch and a streamed evaluation split failing after an
epoch was trained, the second callback failing after the first returned, callbacks
raising ``StopIteration``, ``SystemExit`` or ``GeneratorExit``, exceptions with
``__slots__`` or a refusing ``__setattr__``, a checkpoint policy whose ``interrupted``
itself raises, and a Ctrl-C arriving while ``fit`` saves the error's checkpoint.
In the facade: ``mesh=``, ``on_nonfinite`` modes, a decaying schedule continued after
a stop, ``predict``/``write`` and the layers' caches right after a stop, and a custom
NumPy layer whose ``forward`` fails on the first batch.

The reference is an oracle run: a callback returning ``False`` at the same epoch, an
uninterrupted run, or (facade) ``train(k)`` with a steady schedule; bitwise.

Found broken, and fixed since (each test says what it was): a callback's
``StopIteration`` came out as ``RuntimeError`` (PEP 479: the callbacks run in a
generator expression); an exception whose ``__setattr__`` raises other than
AttributeError/TypeError is replaced by that error; a Ctrl-C during the error's
checkpoint save escapes bare and the epochs are lost; a callback that breaks fit's
history and then raises gets an unresumable ``last`` saved over a good one; a raising
``after_batches`` is called twice for one chunk; and the facade's segmented path
rewrites untouched float64 weights as float32.
"""

from __future__ import annotations

import sys
import threading

import chex
import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.maths import relu, softmax
from epynn_jax.compat.commons.models import Layer
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.flatten.models import Flatten
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.compat.settings import se_hPars
from epynn_jax.errors import TrainingInterrupted
from epynn_jax.io import Checkpoints, load_checkpoint
from epynn_jax.network.streaming import Stream
from tests.compat.test_custom_layer import make_affine
from tests.compat.test_train_stopped import assert_same_weights, lengths, raise_at, weights
from tests.network.test_fit_errors_keep_progress import assert_same_state as same_state
from tests.network.test_fit_errors_keep_progress import raise_after, stop_after

NOTES = sys.version_info >= (3, 11)
N, BATCH = 40, 8  # 5 batches an epoch
NET = network.build([layers.Dense(5, "relu"), layers.Dropout(0.2), layers.Dense(2, "softmax")],
                    (4,))
PARAMS = network.init(NET, 1)
_RNG = np.random.default_rng(11)
X = _RNG.normal(size=(N, 4)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[(X[:, 0] + X[:, 1] > 0).astype(int)]
DATA = {"dtrain": (X, Y), "dval": (X[:8], Y[:8])}
KW = dict(epochs=5, batch_size=BATCH, loss="CCE", key=7)
READER = "epynn_jax-stream"


class Boom(Exception):
    """The error a probe raises."""


def batches_of(x, y):
    return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x) - BATCH + 1, BATCH)]


def readers() -> int:
    return sum(t.name.startswith(READER) for t in threading.enumerate())


# -- fit: meshes and precision policies ---------------------------------------------------


def test_a_callbacks_error_under_a_mesh_keeps_the_epochs_done():
    devices = jax.devices()[:2] if len(jax.devices()) >= 2 else jax.devices()[:1]
    oracle = network.fit(NET, PARAMS, DATA, mesh=devices, callbacks=[stop_after(2)], **KW)
    with pytest.raises(Boom) as info:
        network.fit(NET, PARAMS, DATA, mesh=devices, callbacks=[raise_after(2, Boom())], **KW)
    same_state(info.value.fit_result, oracle)
    assert info.value.fit_result.epochs == 3


@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
def test_a_callbacks_error_under_16_bit_policies_keeps_state_and_skips(policy):
    oracle = network.fit(NET, PARAMS, DATA, policy=policy, callbacks=[stop_after(1)], **KW)
    with pytest.raises(Boom) as info:
        network.fit(NET, PARAMS, DATA, policy=policy, callbacks=[raise_after(1, Boom())], **KW)
    kept = info.value.fit_result
    same_state(kept, oracle)
    assert kept.skipped_steps == oracle.skipped_steps
    if policy == "float16":
        assert kept.skipped_steps >= 1  # loss scaling starts high: its first steps overflow


# -- fit: resume, checkpoints, streaming --------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_a_resumed_run_that_fails_again_resumes_bitwise(tmp_path, stream):
    kw = {**KW, "epochs": 6}
    straight = network.fit(NET, PARAMS, DATA, stream=stream, **kw)
    with pytest.raises(Boom) as first:
        network.fit(NET, PARAMS, DATA, stream=stream, checkpoints=Checkpoints(tmp_path),
                    callbacks=[raise_after(1, Boom())], **kw)
    assert first.value.fit_result.epochs == 2
    resume = load_checkpoint(first.value.fit_result.checkpoints["last"])
    assert resume.epoch == 2
    with pytest.raises(Boom) as second:  # epochs numbered from the run's start: epoch 3
        network.fit(NET, None, DATA, stream=stream, resume=resume,
                    checkpoints=Checkpoints(tmp_path), callbacks=[raise_after(3, Boom())], **kw)
    kept = second.value.fit_result
    oracle = network.fit(NET, PARAMS, DATA, stream=stream, callbacks=[stop_after(3)], **kw)
    same_state(kept, oracle)  # the whole run's history, not only the resumed part
    resume = load_checkpoint(kept.checkpoints["last"])
    assert (resume.epoch, resume.batch) == (4, 0)
    if NOTES:
        assert "trained 4 epochs before this error" in second.value.__notes__[-1]
    same_state(network.fit(NET, None, DATA, stream=stream, resume=resume, **kw), straight)


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_streamed_arrays_every_batches_and_a_callbacks_error(tmp_path, prefetch):
    """A callback's error after epoch 1: ``last`` is the end of epoch 1 (the chunk of
    epoch 2 dispatched ahead is not in it), whatever was saved mid-epoch before."""
    stream = Stream(chunk_batches=2, prefetch=prefetch)
    straight = network.fit(NET, PARAMS, DATA, stream=stream, **KW)
    with pytest.raises(Boom) as info:
        network.fit(NET, PARAMS, DATA, stream=stream, callbacks=[raise_after(1, Boom())],
                    checkpoints=Checkpoints(tmp_path, every_batches=2), **KW)
    kept = info.value.fit_result
    assert (kept.epochs, kept.batches) == (2, 0)
    resume = load_checkpoint(kept.checkpoints["last"])
    assert (resume.epoch, resume.batch) == (2, 0)
    same_state(network.fit(NET, None, DATA, stream=stream, resume=resume, **KW), straight)
    assert readers() == 0


class FlakyLoader:
    """Batches of (X, Y); the pass ``fail_pass`` raises before its batch ``fail_at``."""

    def __init__(self, fail_pass: int | None = None, fail_at: int = 0,
                 x=X, y=Y):
        self.passes, self.fail_pass, self.fail_at = 0, fail_pass, fail_at
        self.items = batches_of(x, y)

    def __iter__(self):
        self.passes += 1
        for i, b in enumerate(self.items):
            if self.passes == self.fail_pass and i == self.fail_at:
                raise ConnectionError("the data server went away")
            yield b


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_a_loader_failing_mid_epoch_resumes_bitwise(tmp_path, prefetch):
    """The 2nd pass fails before its batch 3 (chunks of 2: the chunk of batches 2-3 is
    never whole): batches 0-1 of epoch 1 are kept; a resume from ``last`` ends as an
    uninterrupted run."""
    stream = Stream(chunk_batches=2, prefetch=prefetch)
    kw = {**KW, "epochs": 3, "eval_splits": ()}
    straight = network.fit(NET, PARAMS, {"dtrain": FlakyLoader()}, stream=stream, **kw)
    with pytest.raises(ConnectionError) as info:
        network.fit(NET, PARAMS, {"dtrain": FlakyLoader(2, 3)}, stream=stream,
                    checkpoints=Checkpoints(tmp_path, every_batches=1), **kw)
    kept = info.value.fit_result
    assert (kept.epochs, kept.batches) == (1, 2)
    resume = load_checkpoint(kept.checkpoints["last"])
    assert (resume.epoch, resume.batch) == (1, 2)
    chex.assert_trees_all_equal(resume.params, kept.params)
    resumed = network.fit(NET, None, {"dtrain": FlakyLoader()}, stream=stream, resume=resume,
                          **kw)
    chex.assert_trees_all_equal(resumed.params, straight.params)
    chex.assert_trees_all_equal(jax.random.key_data(resumed.key),
                                jax.random.key_data(straight.key))
    assert readers() == 0


def test_a_streamed_evaluation_split_failing_after_an_epoch_trained(tmp_path):
    """dval, a loader, fails on its 2nd pass (evaluating epoch 1): epoch 1's batches were
    all trained, not evaluated; the checkpoint resumes and ends as an uninterrupted run."""
    kw = {**KW, "epochs": 3}
    stream = Stream(chunk_batches=2)
    straight = network.fit(NET, PARAMS, {"dtrain": (X, Y), "dval": FlakyLoader(x=X[:16],
                                                                             y=Y[:16])},
                           stream=stream, **kw)
    with pytest.raises(ConnectionError) as info:
        network.fit(NET, PARAMS, {"dtrain": (X, Y), "dval": FlakyLoader(2, 0, X[:16], Y[:16])},
                    stream=stream, checkpoints=Checkpoints(tmp_path), **kw)
    kept = info.value.fit_result
    assert (kept.epochs, kept.batches) == (1, N // BATCH)
    assert all(len(v) == 1 for d in kept.history.values() for v in d.values())
    resume = load_checkpoint(kept.checkpoints["last"])
    assert (resume.epoch, resume.batch) == (1, N // BATCH)
    resumed = network.fit(NET, None, {"dtrain": (X, Y), "dval": FlakyLoader(x=X[:16],
                                                                           y=Y[:16])},
                          stream=stream, resume=resume, **kw)
    same_state(resumed, straight)
    assert readers() == 0


# -- fit: callbacks -----------------------------------------------------------------------


def test_the_second_callbacks_error_after_the_first_returned():
    calls = []
    oracle = network.fit(NET, PARAMS, DATA, callbacks=[stop_after(2)], **KW)

    def first(epoch, history):
        calls.append(epoch)
        return True

    with pytest.raises(Boom) as info:
        network.fit(NET, PARAMS, DATA, callbacks=[first, raise_after(2, Boom())], **KW)
    assert calls == [0, 1, 2]
    same_state(info.value.fit_result, oracle)
    # a first callback that stops: the second is not called at that epoch
    result = network.fit(NET, PARAMS, DATA, callbacks=[stop_after(2), raise_after(2, Boom())],
                         **KW)
    same_state(result, oracle)


# was (fixed since): fit calls the callbacks in a generator expression (any(_call_back(cb,
# ...) for cb in callbacks)): PEP 479 turns a callback's StopIteration into
# RuntimeError('generator raised StopIteration'), so the error is not re-raised unchanged
def test_a_callback_raising_stop_iteration_is_raised_unchanged():
    error = StopIteration("enough")
    with pytest.raises(StopIteration) as info:
        network.fit(NET, PARAMS, DATA, callbacks=[raise_after(1, error)], **KW)
    assert info.value is error and info.value.fit_result.epochs == 2


@pytest.mark.parametrize("error", [SystemExit(3), GeneratorExit()], ids=["SystemExit",
                                                                         "GeneratorExit"])
@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_a_callback_raising_a_base_exception_goes_through_unchanged(error, stream):
    """Not an ``Exception``: raised as it is (no result attached, no checkpoint), and a
    streamed fit's reader thread still ends."""
    with pytest.raises(type(error)) as info:
        network.fit(NET, PARAMS, DATA, callbacks=[raise_after(1, error)], stream=stream, **KW)
    assert info.value is error
    assert not hasattr(info.value, "fit_result")
    assert readers() == 0


def test_an_exception_with_slots_still_gets_the_result():
    class Slotted(Exception):
        __slots__ = ("extra",)

    oracle = network.fit(NET, PARAMS, DATA, callbacks=[stop_after(1)], **KW)
    with pytest.raises(Slotted) as info:
        network.fit(NET, PARAMS, DATA, callbacks=[raise_after(1, Slotted())], **KW)
    same_state(info.value.fit_result, oracle)


class Frozen(Exception):
    """An exception whose instances refuse new attributes with ``error``."""

    error: type[Exception] = AttributeError

    def __setattr__(self, name, value):
        raise type(self).error(f"{type(self).__name__} is frozen")


class FrozenRuntime(Frozen):
    error = RuntimeError


def test_an_exception_refusing_attributes_is_raised_unchanged(tmp_path):
    """No fit_result and no note can be given to it; the checkpoint is still saved."""
    with pytest.raises(Frozen) as info:
        network.fit(NET, PARAMS, DATA, callbacks=[raise_after(1, Frozen("mine"))],
                    checkpoints=Checkpoints(tmp_path, every=5), **KW)
    assert type(info.value) is Frozen and str(info.value) == "mine"
    assert load_checkpoint(tmp_path / "last.epynn").epoch == 2


# was (fixed since): fitting._keep_progress catches only AttributeError/TypeError around
# err.fit_result = ...: an exception whose __setattr__ raises anything else (RuntimeError
# here) replaces the callback's error with the __setattr__ one
def test_an_exception_refusing_attributes_otherwise_is_raised_unchanged():
    with pytest.raises(FrozenRuntime) as info:
        network.fit(NET, PARAMS, DATA, callbacks=[raise_after(1, FrozenRuntime("mine"))], **KW)
    assert str(info.value) == "mine"


# -- fit: the error's checkpoint ----------------------------------------------------------


class FailingInterrupted(Checkpoints):
    """``interrupted`` raises ``error`` (after every epoch, ``last`` is saved as usual)."""

    def __init__(self, directory, error: BaseException, **kw):
        super().__init__(directory, **kw)
        self.error, self.calls = error, 0

    def interrupted(self, net, progress, metadata):
        self.calls += 1
        raise self.error


def test_an_error_inside_checkpoints_interrupted_keeps_the_first_error(tmp_path):
    oracle = network.fit(NET, PARAMS, DATA, callbacks=[stop_after(2)], **KW)
    ck = FailingInterrupted(tmp_path, PermissionError("read-only now"), every=1)
    with pytest.raises(Boom) as info:
        network.fit(NET, PARAMS, DATA, checkpoints=ck, callbacks=[raise_after(2, Boom())], **KW)
    assert ck.calls == 1
    kept = info.value.fit_result
    same_state(kept, oracle)
    # `last` as saved after epoch 2, before the callback raised
    assert load_checkpoint(kept.checkpoints["last"]).epoch == 3
    if NOTES:
        assert "nor could the checkpoint of what was trained be saved: read-only now" in (
            info.value.__notes__[0])
        assert not info.value.__notes__[1].endswith(str(kept.checkpoints["last"]))


# was (fixed since): fit's `except Exception` calls _save_on_error
# (checkpoints.interrupted) BEFORE _keep_progress gives err its fit_result, and
# _save_on_error catches only Exception: a KeyboardInterrupt during that save escapes bare
# (not a TrainingInterrupted, no .result), its __context__ (the callback's error) has no
# fit_result either: the 3 epochs are lost
def test_ctrl_c_while_fit_saves_the_errors_checkpoint_keeps_the_epochs(tmp_path):
    """A Ctrl-C during the save that follows an error: whatever is raised (the
    KeyboardInterrupt, as a Ctrl-C must stop), the epochs trained are not lost with it."""
    ck = FailingInterrupted(tmp_path, KeyboardInterrupt())
    with pytest.raises(BaseException) as info:
        network.fit(NET, PARAMS, DATA, checkpoints=ck, callbacks=[raise_after(2, Boom())], **KW)
    err = info.value
    assert isinstance(err, (KeyboardInterrupt, Boom))
    kept = err.result if isinstance(err, TrainingInterrupted) else getattr(err, "fit_result",
                                                                           None)
    assert kept is not None and kept.epochs == 3


# -- the facade: EpyNN.train --------------------------------------------------------------

FX = _RNG.normal(size=(30, 3, 2))
FY = (FX[:, 0, 0] > 0).astype(int)


@pytest.fixture
def quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def model(schedule: str = "steady", custom: bool = False, lr: float = 0.05) -> EpyNN:
    emb = Embedding(X_data=FX, Y_data=FY, Y_encode=True, batch_size=6)
    middle = [make_affine(Layer)()] if custom else []
    m = EpyNN([emb, Flatten(), *middle, Dense(4, relu), Dense(2, softmax)], name="attacked")
    m.initialize(loss="MSE", seed=5, se_hPars={**se_hPars, "learning_rate": lr,
                                               "schedule": schedule})
    return m


def test_facade_stopped_under_a_mesh_goes_on_bitwise(monkeypatch, quiet):
    devices = jax.devices()[:1]
    full = model("exp_decay")
    full.train(6, init_logs=False, mesh=devices)
    m = model("exp_decay")
    with monkeypatch.context() as patch:
        raise_at(patch, EpyNN, "report", 3, Boom())  # epoch 2 recorded, then its report
        with pytest.raises(Boom):
            m.train(6, init_logs=False, mesh=devices)
    assert m._done_epochs == 3 and lengths(m) == {3}
    m.train(3, init_logs=False, mesh=devices)
    assert_same_weights(m, full)
    assert m.metrics == full.metrics


@pytest.mark.parametrize("schedule", ["lin_decay", "exp_decay"])
def test_facade_stopped_in_a_second_train_with_a_decaying_schedule(monkeypatch, quiet,
                                                                   schedule):
    """``train(3)`` then ``train(5)`` stopped 2 epochs in, then ``train(3)``: the rates
    (planned for 8 epochs by the first two calls) go on as ``train(3); train(5)``."""
    full = model(schedule)
    full.train(3, init_logs=False)
    full.train(5, init_logs=False)
    m = model(schedule)
    m.train(3, init_logs=False)
    with monkeypatch.context() as patch:
        raise_at(patch, EpyNN, "report", 3, Boom())  # the 3rd epoch of this call reported
        with pytest.raises(Boom):
            m.train(5, init_logs=False)
    assert m._done_epochs == 6 and lengths(m) == {6} and m.e == 5
    m.train(2, init_logs=False)
    assert_same_weights(m, full)
    assert m.metrics == full.metrics


@pytest.mark.parametrize("on_nonfinite", ["stop", "raise", "ignore"])
def test_facade_predict_write_and_caches_right_after_a_stop(monkeypatch, quiet, tmp_path,
                                                            on_nonfinite):
    """After a stop at epoch 2 recorded, the model IS ``train(3)``'s: its predictions,
    the file it writes, the last batch's caches and the outputs of its sets."""
    from epynn_jax.compat.commons.library import read_model

    alone = model()
    alone.train(3, init_logs=False, on_nonfinite=on_nonfinite)
    m = model()
    with monkeypatch.context() as patch:
        raise_at(patch, EpyNN, "report", 3, Boom())
        with pytest.raises(Boom):
            m.train(6, init_logs=False, on_nonfinite=on_nonfinite)
    assert m._done_epochs == 3
    np.testing.assert_array_equal(m.predict(FX[:7]).A, alone.predict(FX[:7]).A)
    for a, b in zip(m.layers[1:], alone.layers[1:]):
        for name in ("fc", "bc", "g"):
            da, db = getattr(a, name), getattr(b, name)
            assert da.keys() == db.keys(), name
            for k in da:
                np.testing.assert_array_equal(np.asarray(da[k]), np.asarray(db[k]),
                                              err_msg=f"{type(a).__name__}.{name}[{k}]")
    for da, db in zip(m.embedding.dsets, alone.embedding.dsets):
        np.testing.assert_array_equal(da.A, db.A)
        np.testing.assert_array_equal(da.P, db.P)
    m.write(str(tmp_path / "m.pickle"))
    back = read_model(str(tmp_path / "m.pickle"))
    assert_same_weights(back, alone)


def test_facade_custom_layer_failing_on_the_first_batch(monkeypatch, quiet):
    """A custom layer's ``forward`` raises on the very first batch: nothing was trained,
    the model is as it was (weights, epochs, metrics) and ``train`` works after it."""
    m = model(custom=True)
    before = weights(m)
    custom = m.layers[2]
    with monkeypatch.context() as patch:
        raise_at(patch, type(custom), "forward", 1, Boom("custom forward"))
        with pytest.raises(Boom, match="custom forward") as info:
            m.train(3, init_logs=False)
    assert m._done_epochs == 0 and lengths(m) == {0}
    for pa, pb in zip(weights(m), before):  # (the values it trains on: float32)
        for k in pa:
            np.testing.assert_array_equal(pa[k].astype(np.float32), pb[k].astype(np.float32))
    if NOTES:
        assert "stopped in epoch 0" in "".join(info.value.__notes__)
    m.train(2, init_logs=False)
    assert m._done_epochs == 2 and lengths(m) == {2}
    assert all(np.all(np.isfinite(v)) for p in weights(m) for v in p.values())


# was (fixed since): _train._train_segmented's except: _keep_segments -> _store_segments
# writes every compiled layer's p back from the device (float32) even when no batch was
# trained: a fresh model's float64 Dense weights come back rounded to float32, where the
# compiled path (_stopped, nothing kept) leaves the layers' weights exactly as they were
@pytest.mark.parametrize("custom", [True, False], ids=["segmented", "compiled"])
def test_facade_stopped_before_anything_trained_leaves_the_weights_exact(monkeypatch, quiet,
                                                                          custom):
    """A fresh model's float64 weights, stopped before a batch (a custom layer's forward)
    or an epoch (compiled) was trained, keep their dtype and values."""
    m = model(custom=custom)
    before = weights(m)
    obj, name = (type(m.layers[2]), "forward") if custom else (EpyNN, "_record")
    with monkeypatch.context() as patch:
        raise_at(patch, obj, name, 1, Boom("stopped"))
        with pytest.raises(Boom):
            m.train(3, init_logs=False)
    assert_same_weights(m, before)


# -- fit: more of the error's checkpoint --------------------------------------------------


# was (fixed since): fit's `except Exception` saves progress.history as the callback left
# it: _call_back refuses a changed history only when the callback returns, so a callback
# that clears (or edits) fit's own history and then raises makes
# _save_on_error/checkpoints.interrupted overwrite `last` (saved good at epoch 2) with an
# epoch-3 checkpoint whose history has 0 entries for accuracy/dval; the note names it as
# the checkpoint to resume, and resume refuses it ('history does not have 3 epochs in
# every entry'); err.fit_result.history is as corrupted
def test_a_callback_that_breaks_the_history_then_raises_leaves_a_resumable_checkpoint(
        tmp_path):
    straight = network.fit(NET, PARAMS, DATA, **KW)

    def breaks(epoch, history):
        if epoch == 2:
            history["accuracy"]["dval"].clear()
            raise Boom()

    with pytest.raises(Boom) as info:
        network.fit(NET, PARAMS, DATA, checkpoints=Checkpoints(tmp_path, every=2),
                    callbacks=[breaks], **KW)
    resume = load_checkpoint(tmp_path / "last.epynn")
    same_state(network.fit(NET, None, DATA, resume=resume, **KW), straight)
    kept = getattr(info.value, "fit_result", None)
    assert kept is None or all(len(v) == kept.epochs for d in kept.history.values()
                               for v in d.values())


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_failing_mid_epoch_save_keeps_the_batch_it_reached(tmp_path, prefetch):
    """``every_batches`` saves of streamed arrays: the 3rd save (epoch 1, batch 2) fails
    (a full disk); fit's own save after the error fails too (the disk is still full):
    the error keeps 1 epoch and 2 batches, ``last`` on disk is the 2nd save (epoch 0,
    batch 4), and a resume from it ends as an uninterrupted run."""

    class FullDisk(Checkpoints):
        saves = 0

        def _save(self, *args):
            FullDisk.saves += 1
            if FullDisk.saves >= 3:
                raise OSError(28, "No space left on device")
            return super()._save(*args)

    stream = Stream(chunk_batches=2, prefetch=prefetch)
    straight = network.fit(NET, PARAMS, DATA, stream=stream, **KW)
    with pytest.raises(OSError) as info:
        network.fit(NET, PARAMS, DATA, stream=stream,
                    checkpoints=FullDisk(tmp_path, every_batches=2), **KW)
    kept = info.value.fit_result
    assert (kept.epochs, kept.batches) == (1, 2)  # saves at (0, 2), (0, 4), then (1, 2)
    assert FullDisk.saves >= 4  # (5: see the test after this one)
    resume = load_checkpoint(tmp_path / "last.epynn")
    assert (resume.epoch, resume.batch) == (0, 4)
    if NOTES:
        assert "nor could the checkpoint" in info.value.__notes__[0]
        assert "1 epoch and 2 batches of the next" in info.value.__notes__[1]
    same_state(network.fit(NET, None, DATA, stream=stream, resume=resume, **KW), straight)
    assert readers() == 0


# was (fixed since): streaming.stream_epoch: settle_pending() clears `pending` only after
# settle() returns; when on_chunk itself raises (fit's checkpoints.after_batches: a
# failing save), the `except Exception` handler settles the same chunk again, so
# after_batches is called twice for (epoch 1, batch 2): a failed save is silently retried,
# a policy's after_batches sees one chunk twice
def test_after_batches_is_told_of_each_chunk_once_when_it_raises(tmp_path):
    told = []

    class Raising(Checkpoints):
        def after_batches(self, net, progress, metadata):
            told.append((progress.epoch, progress.batch))
            if (progress.epoch, progress.batch) == (1, 2):
                raise Boom("after_batches")
            return super().after_batches(net, progress, metadata)

    with pytest.raises(Boom):
        network.fit(NET, PARAMS, DATA, stream=Stream(chunk_batches=2, prefetch=0),
                    checkpoints=Raising(tmp_path, every_batches=2), **KW)
    assert told == [(0, 2), (0, 4), (0, 5), (1, 2)]


def test_a_failing_final_save_resumes_to_the_end(tmp_path):
    """``finish``'s save fails once: fit's save after it holds every epoch, and resuming
    it trains nothing more and returns the uninterrupted run."""

    class FailsOnce(Checkpoints):
        def finish(self, net, progress, metadata):
            raise OSError(5, "I/O error")

    straight = network.fit(NET, PARAMS, DATA, **KW)
    with pytest.raises(OSError) as info:
        network.fit(NET, PARAMS, DATA, checkpoints=FailsOnce(tmp_path), **KW)
    same_state(info.value.fit_result, straight)
    resume = load_checkpoint(info.value.fit_result.checkpoints["last"])
    assert (resume.epoch, resume.batch) == (KW["epochs"], 0)
    same_state(network.fit(NET, None, DATA, resume=resume, **KW), straight)
