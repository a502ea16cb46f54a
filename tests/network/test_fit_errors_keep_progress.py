"""An error that stops ``fit`` after it trained keeps what it trained.

Ctrl-C (``TrainingInterrupted.result``) and a NaN (``NonFiniteError.params``) hand back
the last good state. Any other error raised once epochs were done (a callback's, a
checkpoint save's on a full disk, a loader's) lost it: ``fit`` returns its state, and
there was none to return. The error now goes on unchanged (its type, its message)
with ``fit_result``: the :class:`FitResult` of the epochs (and streamed batches) done.
"""

from __future__ import annotations

import errno
import sys

import jax
import numpy as np
import pytest

from epynn_jax import io, network
from epynn_jax.errors import NonFiniteError, TrainingInterrupted

NOTES = sys.version_info >= (3, 11)
RNG = np.random.default_rng(4)
X = RNG.normal(size=(40, 4, 2)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[(X[:, 0, 0] > 0).astype(int)]
KW = {"epochs": 6, "batch_size": 8, "loss": "CCE", "key": 3}


def stop_after(n: int):
    """A callback that stops training after epoch ``n`` (0-based): the oracle."""
    return lambda epoch, history: epoch < n


def raise_after(n: int, error: Exception):
    def callback(epoch, history):
        if epoch == n:
            raise error
    return callback


def assert_same_state(a, b) -> None:
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state, jax.random.key_data(a.key))),
                    jax.tree.leaves((b.params, b.opt_state, jax.random.key_data(b.key)))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.history == b.history and a.epochs == b.epochs and a.batches == b.batches


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_a_callbacks_error_keeps_the_epochs_done(net, params, stream):
    data = {"dtrain": (X, Y), "dval": (X[:8], Y[:8])}
    oracle = network.fit(net, params, data, callbacks=[stop_after(2)], stream=stream, **KW)
    with pytest.raises(ZeroDivisionError, match="the callback's own") as info:
        network.fit(net, params, data, stream=stream, **KW,
                    callbacks=[raise_after(2, ZeroDivisionError("the callback's own"))])
    assert type(info.value) is ZeroDivisionError  # the error itself, not a wrapper
    assert info.value.fit_result.epochs == 3
    assert_same_state(info.value.fit_result, oracle)
    if NOTES:
        assert info.value.__notes__ == ["fit: trained 3 epochs before this error; its "
                                        "fit_result holds them (parameters, optimizer state, "
                                        "key, history)"]


def test_a_checkpoint_that_cannot_be_saved_keeps_the_epochs_done(net, params, tmp_path):
    """A full disk at the third save: the OSError as the system gave it, the two epochs
    saved on disk, the three done in ``fit_result``."""

    class FullDisk(io.Checkpoints):
        saves = 0

        def _save(self, *args):
            FullDisk.saves += 1
            if FullDisk.saves >= 3:  # (full for good)
                raise OSError(errno.ENOSPC, "No space left on device")
            return super()._save(*args)

    oracle = network.fit(net, params, {"dtrain": (X, Y)}, callbacks=[stop_after(2)], **KW)
    with pytest.raises(OSError) as info:
        network.fit(net, params, {"dtrain": (X, Y)}, **KW,
                    checkpoints=FullDisk(tmp_path, every=1))
    assert info.value.errno == errno.ENOSPC
    kept = info.value.fit_result
    assert_same_state(kept, oracle)
    assert kept.epochs == 3 and set(kept.checkpoints) == {"last"}
    # the save of the third epoch failed, and so did fit's save of it after the error
    assert FullDisk.saves == 4
    assert io.load_checkpoint(kept.checkpoints["last"]).epoch == 2  # the last one made
    if NOTES:
        assert "nor could the checkpoint of what was trained be saved: [Errno 28]" in (
            info.value.__notes__[0])
        assert "trained 3 epochs before this error" in info.value.__notes__[1]


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_an_error_saves_a_checkpoint_that_resumes_bitwise(net, params, tmp_path, stream):
    """With checkpoints, a script that dies of the error can resume: fit saves what was
    trained (as on Ctrl-C), and the resumed run ends as an uninterrupted one."""
    data = {"dtrain": (X, Y), "dval": (X[:8], Y[:8])}
    with pytest.raises(ZeroDivisionError) as info:
        network.fit(net, params, data, stream=stream, **KW,
                    checkpoints=io.Checkpoints(tmp_path, every=5),
                    callbacks=[raise_after(2, ZeroDivisionError())])
    path = info.value.fit_result.checkpoints["last"]
    if NOTES:
        assert info.value.__notes__[-1].endswith(f"; checkpoint saved to {path}")
    resume = io.load_checkpoint(path)
    assert resume.epoch == 3
    resumed = network.fit(net, None, data, stream=stream, resume=resume, **KW)
    straight = network.fit(net, params, data, stream=stream, **KW)
    assert_same_state(resumed, straight)


def test_a_streamed_error_mid_epoch_saves_the_batch_it_reached(net, params, tmp_path):
    """A loader that fails in the middle of its second pass (its batch 3): the checkpoint
    records the batches of that epoch trained before it, the one in flight on the device
    when the read failed included (it was dropped unread: 2 batches)."""

    class Flaky:
        passes = 0

        def __iter__(self):
            Flaky.passes += 1
            for i in range(0, 40, 8):
                if Flaky.passes == 2 and i == 24:
                    raise ConnectionError("the data server went away")
                yield X[i:i + 8], Y[i:i + 8]

    with pytest.raises(ConnectionError) as info:
        network.fit(net, params, {"dtrain": Flaky()}, eval_splits=(), **KW,
                    checkpoints=io.Checkpoints(tmp_path, every_batches=1))
    kept = info.value.fit_result
    assert (kept.epochs, kept.batches) == (1, 3)
    resume = io.load_checkpoint(kept.checkpoints["last"])
    assert (resume.epoch, resume.batch) == (1, 3)


def test_a_loader_that_fails_mid_run_keeps_the_epochs_done(net, params):
    """A loader whose third pass raises: the two epochs trained before it are kept."""

    class Flaky:
        passes = 0

        def __iter__(self):
            Flaky.passes += 1
            if Flaky.passes == 3:
                raise ConnectionError("the data server went away")
            return iter([(X[i:i + 8], Y[i:i + 8]) for i in range(0, 40, 8)])

    with pytest.raises(ConnectionError, match="went away") as info:
        network.fit(net, params, {"dtrain": Flaky()}, eval_splits=(), **KW)
    kept = info.value.fit_result
    assert kept.epochs == 2 and kept.batches == 0
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(kept.params))
    oracle = network.fit(net, params, {"dtrain": [(X[i:i + 8], Y[i:i + 8])
                                                  for i in range(0, 40, 8)]},
                         eval_splits=(), callbacks=[stop_after(1)], **KW)
    assert_same_state(kept, oracle)


def test_only_an_error_after_training_began_carries_a_result(net, params):
    with pytest.raises(ZeroDivisionError) as info:
        network.fit(net, params, {"dtrain": (X, Y)}, **KW,
                    callbacks=[raise_after(0, ZeroDivisionError())])
    assert info.value.fit_result.epochs == 1  # the callback runs after epoch 0
    with pytest.raises(ValueError, match="epochs") as info:
        network.fit(net, params, {"dtrain": (X, Y)}, **{**KW, "epochs": 0})
    assert not hasattr(info.value, "fit_result")  # refused before training


def test_the_guards_own_error_keeps_its_own_state(net, params):
    """``NonFiniteError`` carries the last good state itself: it gets no ``fit_result``."""
    with pytest.raises(NonFiniteError) as info:
        network.fit(net, jax.tree.map(lambda a: a * 1e30, params), {"dtrain": (X, Y)}, **KW)
    assert not hasattr(info.value, "fit_result") and info.value.params is not None


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     KeyboardInterrupt()], ids=["full-disk", "second-ctrl-c"])
def test_ctrl_c_whose_checkpoint_cannot_be_saved_still_hands_back_the_epochs(net, params,
                                                                             tmp_path,
                                                                             failure):
    """Ctrl-C, then the save of its checkpoint fails (a full disk) or is interrupted (a
    second Ctrl-C): still the TrainingInterrupted with the epochs done, saying why there
    is no checkpoint. (The save's error came out instead, the epochs lost with it.)"""

    class Failing(io.Checkpoints):
        def _save(self, *args):
            raise failure

    def ctrl_c_after(n):
        def callback(epoch, history):
            if epoch == n:
                raise KeyboardInterrupt
        return callback

    oracle = network.fit(net, params, {"dtrain": (X, Y)}, callbacks=[stop_after(2)], **KW)
    with pytest.raises(TrainingInterrupted) as info:
        network.fit(net, params, {"dtrain": (X, Y)}, callbacks=[ctrl_c_after(2)],
                    checkpoints=Failing(tmp_path), **KW)
    assert_same_state(info.value.result, oracle)
    assert info.value.checkpoint is None
    assert str(info.value).startswith("fit interrupted after 3 completed epochs; its "
                                      "checkpoint could not be saved: ")
    assert type(failure).__name__ in str(info.value)
