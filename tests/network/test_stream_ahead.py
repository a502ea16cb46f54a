"""A streamed ``fit`` dispatches the next epoch's first chunk before it ends an epoch.

``streaming.stream_epoch`` queues epoch ``e + 1``'s first chunk on the device before
it reads epoch ``e``'s last guard, so the device does not wait while the host
records, evaluates, calls back and saves. What is checked: the order of dispatches
and reads, one dispatch per chunk (the chunk dispatched ahead is not dispatched
again), the same parameters as the in-memory fit, a callback's stop and a failed
epoch dropping the chunk dispatched ahead, an error reading the next epoch raised
only after this epoch is recorded, ``prefetch=0`` and ``debug`` reading nothing ahead,
the first chunk read in the caller's thread, and the reader thread reading under the
caller's 64-bit mode.
"""

from __future__ import annotations

import threading

import chex
import numpy as np
import pytest

from epynn_jax import Schedule, layers, network
from epynn_jax.errors import NonFiniteError
from epynn_jax.network import streaming
from epynn_jax.network.streaming import Stream
from epynn_jax.testing import x64

N, BATCH = 48, 16                 # 3 batches per epoch: one chunk
NET = network.build([layers.Dense(5, "relu"), layers.Dense(2, "softmax")], (4,))
PARAMS = network.init(NET, 2)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, 4)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[RNG.integers(0, 2, N)]
KW = dict(batch_size=BATCH, key=5, loss="CCE", eval_splits=())


def test_the_next_epochs_chunk_is_queued_before_this_epochs_guard_is_read(events):
    result = network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=3, stream=True, **KW)
    # one chunk per epoch: epoch 1's is dispatched before epoch 0's guard is read, and
    # so on; the last epoch has no next one. Before: d r d r d r.
    assert events == ["d", "d", "r", "d", "r", "r"]
    in_memory = network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=3, **KW)
    chex.assert_trees_all_equal(result.params, in_memory.params)
    chex.assert_trees_all_equal(result.opt_state, in_memory.opt_state)


def test_several_chunks_an_epoch_dispatch_each_chunk_once(events):
    stream = Stream(chunk_batches=2)  # chunks of 2 and 1 batches
    result = network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=2, stream=stream, **KW)
    assert events == ["d", "d", "r", "d", "r", "d", "r", "r"]
    in_memory = network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=2, **KW)
    chex.assert_trees_all_equal(result.params, in_memory.params)


@pytest.mark.parametrize("stream, debug", [(Stream(prefetch=0), False), (True, True)])
def test_nothing_is_dispatched_ahead_reading_in_the_loop_or_debugging(events, stream, debug):
    # prefetch=0 reads each chunk when it is trained (a callback's change to the arrays
    # is read by the next epoch); debug runs op by op and must name the epoch it is in
    network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=2, stream=stream, debug=debug, **KW)
    assert events[:4] == ["d", "r", "d", "r"]


def test_a_callback_that_stops_keeps_the_epoch_it_saw():
    def stop_after_1(epoch, history):
        return epoch < 1

    got = network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=4, stream=True,
                      callbacks=[stop_after_1], **KW)
    want = network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=4, callbacks=[stop_after_1],
                       **KW)
    assert got.epochs == want.epochs == 2
    chex.assert_trees_all_equal(got.params, want.params)
    chex.assert_trees_all_equal(got.opt_state, want.opt_state)
    chex.assert_trees_all_equal(got.key, want.key)


class _SecondPassBad:
    """A loader whose second pass yields a NaN batch first."""

    def __init__(self):
        self.passes = 0

    def __len__(self):
        return N // BATCH

    def __iter__(self):
        self.passes += 1
        for i in range(0, N, BATCH):
            x = X[i:i + BATCH].copy()
            if self.passes == 2 and i == 0:
                x[0, 0] = np.nan
            yield x, Y[i:i + BATCH]


def test_an_error_reading_the_next_epoch_comes_after_this_epoch_is_recorded():
    seen = []
    with pytest.raises(ValueError, match="dtrain batch 0 X: contains NaN"):
        network.fit(NET, PARAMS, {"dtrain": _SecondPassBad()}, epochs=3,
                    callbacks=[lambda epoch, history: seen.append(epoch)], **KW)
    assert seen == [0]  # epoch 0 ended and was called back before epoch 1's error


def test_a_failed_epoch_drops_the_chunk_dispatched_after_it(events):
    # identity layers at a rate of 0.2 diverge in epoch 1: epoch 2's first chunk is
    # dispatched from its end state before its guard is read; the error is epoch 1's
    # and err.params are those after epoch 0, as the in-memory fit reports them
    net = network.build([layers.Dense(5, "identity"), layers.Dense(2, "identity")], (4,))
    params = network.init(net, 2)
    kw = {**KW, "loss": "MSE", "schedule": Schedule(learning_rate=0.2)}
    errors = []
    for stream in (True, None):
        with pytest.raises(NonFiniteError, match="at epoch 1, batch 1") as err:
            network.fit(net, params, {"dtrain": (X, Y)}, epochs=4, stream=stream, **kw)
        errors.append(err.value)
    assert events[:4] == ["d", "d", "r", "d"]  # epoch 2's chunk went out before the failure
    chex.assert_trees_all_equal(errors[0].params, errors[1].params)
    chex.assert_trees_all_equal(errors[0].opt_state, errors[1].opt_state)


def test_the_first_chunk_is_read_in_the_callers_thread(monkeypatch):
    threads = []
    read = streaming._read

    def reading(a, rows, where):
        threads.append(threading.current_thread().name)
        return read(a, rows, where)

    monkeypatch.setattr(streaming, "_read", reading)
    network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=3, stream=True, **KW)
    assert len(threads) == 6  # X and Y of 3 chunks
    assert threads[:2] == [threading.current_thread().name] * 2
    assert set(threads[2:]) == {"epynn_jax-stream"}


def test_the_reader_thread_reads_in_the_callers_64_bit_mode(monkeypatch):
    # jax.enable_x64(True) holds in the thread that entered it: the reader thread read
    # float32 chunks for a float64 fit (and predict), so a streamed fit was no longer the
    # in-memory one
    dtypes = []
    read = streaming._read

    def reading(a, rows, where):
        out = read(a, rows, where)
        dtypes.append(out.dtype)
        return out

    monkeypatch.setattr(streaming, "_read", reading)
    with x64():
        got = network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=3, stream=True, **KW)
        want = network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=3, **KW)
        A = network.predict(NET, got.params, X, chunk=8, stream=True)
        scores = network.evaluate(NET, got.params, X, Y, ("accuracy", "CCE"), chunk=8,
                                  stream=True)
        assert A.dtype == np.float64
        np.testing.assert_array_equal(A, np.asarray(network.predict(NET, got.params, X)))
        np.testing.assert_allclose(float(scores["CCE"]), float(network.evaluate(
            NET, got.params, X, Y, ("CCE",))["CCE"]), rtol=1e-12)
    assert len(dtypes) > 6 and set(dtypes) == {np.dtype(np.float64)}
    chex.assert_trees_all_equal(got.params, want.params)
