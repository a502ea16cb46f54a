"""Attacks on the streamed ``fit``'s lookahead: epoch ``e + 1``'s first chunk is
dispatched on the device before epoch ``e``'s last guard is read, and the feeder's first
chunk is read in the caller's thread.

What is probed: stops at every epoch (the chunk dispatched ahead never leaks into the
result), failures in an epoch whose successor's chunk is in flight (a NaN or inf step,
a non-finite evaluation, a bad batch read ahead), Ctrl-C at every point of the hand-over
(the feeder's first read, ``first_of``, the head's dispatch, the last guard's read, the
evaluation, a callback, a checkpoint) with a resume from its checkpoint, a resume from
every ``Checkpoints(every_batches=N)`` save, one- and several-chunk epochs, loaders
whose next pass raises, one-shot iterators, ``prefetch`` 0/1/2/4, a one-device mesh,
16-bit policies, several fits in threads, and the reader thread's end. The reference
is the in-memory fit (bitwise) or ``Stream(prefetch=0)``, which reads nothing ahead.

Found broken, fixed in c1b5874 (the tests marked "was"): an error dispatching the next
epoch's first chunk ahead escaped before the epoch was recorded; a Ctrl-C between the
reader thread's start and fit's (predict's, evaluate's) hold on it left the thread
running; and, already before the lookahead, a loader refilling one buffer for each
batch was trained on a chunk's last batch ``k`` times and evaluated on a buffer it
refilled while the compiled call read it.
"""

from __future__ import annotations

import functools
import itertools
import shutil
import threading

import chex
import jax
import numpy as np
import pytest

from epynn_jax import Schedule, layers, network
from epynn_jax.errors import NonFiniteError, TrainingInterrupted
from epynn_jax.io import Checkpoints, load_checkpoint
from epynn_jax.network import checks, streaming
from epynn_jax.network.streaming import Stream

N, BATCH = 50, 8                  # 6 batches an epoch, 2 samples dropped
N_BATCHES = N // BATCH
# (a Dropout: the steps draw keys, so a chunk trained with another epoch's or step's
# keys is seen)
NET = network.build([layers.Dense(5, "relu"), layers.Dropout(0.3), layers.Dense(2, "softmax")],
                    (4,))
PARAMS = network.init(NET, 2)
KEY = 5
_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(N, 4)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[_RNG.integers(0, 2, N)]
XV = _RNG.normal(size=(12, 4)).astype(np.float32)
YV = np.eye(2, dtype=np.float32)[_RNG.integers(0, 2, 12)]
DATA = {"dtrain": (X, Y), "dval": (XV, YV)}
KW = dict(batch_size=BATCH, key=KEY, loss="CCE", eval_splits=("dval",))
READER = "epynn_jax-stream"


# -- helpers -----------------------------------------------------------------------------


@functools.cache
def _in_memory(epochs: int = 3, stop: int | None = None, policy: str | None = None,
               check_finite: bool = True):
    """The in-memory fit (cached): ``stop``, a callback returning False after that epoch."""
    callbacks = () if stop is None else (_stop_after(stop),)
    return network.fit(NET, PARAMS, DATA, epochs=epochs, callbacks=callbacks, policy=policy,
                       check_finite=check_finite, **KW)


def _stop_after(epoch: int):
    def stop(e, history):
        return np.bool_(e < epoch)  # a NumPy False stops too
    return stop


def _same_state(a, b) -> None:
    chex.assert_trees_all_equal(a.params, b.params)
    chex.assert_trees_all_equal(a.opt_state, b.opt_state)
    chex.assert_trees_all_equal(a.key, b.key)


def _same_run(a, b) -> None:
    _same_state(a, b)
    assert (a.epochs, a.batches) == (b.epochs, b.batches)
    assert a.history.keys() == b.history.keys()
    for m in a.history:
        assert a.history[m].keys() == b.history[m].keys()
        for s in a.history[m]:
            np.testing.assert_allclose(a.history[m][s], b.history[m][s], rtol=1e-6,
                                       err_msg=f"{m} on {s}")


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == READER and t.is_alive()]


@pytest.fixture
def no_reader_left():
    """Fails the test when a reader thread started during it is still running after it."""
    before = set(_readers())
    yield
    left = [t for t in _readers() if t not in before]
    assert not left, f"reader threads left running: {left}"


def _dropped_then_used() -> tuple[int, int]:
    """A training row that epoch 0 drops (the remainder) and epoch 1 trains on, and the
    batch of epoch 1 that holds it (the in-memory epochs' shuffles from ``KEY``)."""
    orders = streaming.ArraySource(NET, "dtrain", X, Y, "CCE", BATCH).orders(
        checks.check_key(KEY))
    first, second = next(orders), next(orders)
    row = next(r for r in range(N) if r not in first and r in second)
    return row, int(np.nonzero((second == row).any(axis=1))[0][0])


# -- bitwise: the lookahead changes nothing -----------------------------------------------


@pytest.mark.parametrize("chunk", [1, 4, 6, None])
@pytest.mark.parametrize("prefetch", [0, 1, 2, 4])
def test_streamed_is_bitwise_in_memory_for_every_chunk_and_prefetch(chunk, prefetch,
                                                                     no_reader_left):
    got = network.fit(NET, PARAMS, DATA, epochs=3, callbacks=[lambda e, h: None],
                      stream=Stream(chunk_batches=chunk, prefetch=prefetch), **KW)
    _same_run(got, _in_memory(3))


@pytest.mark.parametrize("epochs", [1, 2])
def test_one_batch_epochs_and_one_epoch_fits(epochs, no_reader_left):
    # one batch an epoch (batch_size = N): every chunk is an epoch's head
    kw = {**KW, "batch_size": N}
    got = network.fit(NET, PARAMS, DATA, epochs=epochs, stream=True, **kw)
    want = network.fit(NET, PARAMS, DATA, epochs=epochs, **kw)
    _same_run(got, want)


@pytest.mark.parametrize("stop", [0, 1, 2, 3])
@pytest.mark.parametrize("chunk, prefetch", [(6, 1), (2, 4), (4, 2)])
def test_a_stop_at_any_epoch_drops_the_chunk_dispatched_ahead(stop, chunk, prefetch,
                                                              no_reader_left):
    got = network.fit(NET, PARAMS, DATA, epochs=4, callbacks=[_stop_after(stop)],
                      stream=Stream(chunk_batches=chunk, prefetch=prefetch), **KW)
    want = _in_memory(4, stop)
    assert got.epochs == min(stop + 1, 4)
    _same_run(got, want)


def test_a_stop_then_a_resume_from_its_checkpoint_is_the_uninterrupted_run(tmp_path):
    stream = Stream(chunk_batches=4)
    stopped = network.fit(NET, PARAMS, DATA, epochs=4, callbacks=[_stop_after(1)],
                          stream=stream, checkpoints=Checkpoints(tmp_path), **KW)
    ck = load_checkpoint(tmp_path / "last.epynn")
    assert (ck.epoch, ck.batch) == (2, 0)
    chex.assert_trees_all_equal(ck.params, stopped.params)
    done = network.fit(NET, None, DATA, epochs=4, resume=ck, stream=stream, **KW)
    _same_run(done, _in_memory(4))


@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
def test_16_bit_policies_stream_bitwise(policy, no_reader_left):
    got = network.fit(NET, PARAMS, DATA, epochs=3, policy=policy,
                      callbacks=[lambda e, h: None], stream=Stream(chunk_batches=4), **KW)
    want = _in_memory(3, policy=policy)
    _same_run(got, want)
    assert got.skipped_steps == want.skipped_steps


def test_check_finite_off_streams_bitwise():
    got = network.fit(NET, PARAMS, DATA, epochs=3, check_finite=False,
                      stream=Stream(chunk_batches=4), **KW)
    _same_run(got, _in_memory(3, check_finite=False))


def test_a_one_device_mesh_streams_bitwise(no_reader_left):
    mesh = jax.devices()[:1]
    kw = dict(epochs=4, mesh=mesh, callbacks=[_stop_after(2)], **KW)
    got = network.fit(NET, PARAMS, DATA, stream=Stream(chunk_batches=4), **kw)
    _same_run(got, network.fit(NET, PARAMS, DATA, **kw))
    assert got.epochs == 3


def test_several_fits_in_threads_at_once(no_reader_left):
    configs = [(Stream(chunk_batches=c, prefetch=p), k)
               for c, p, k in [(1, 1, 3), (4, 2, 5), (6, 4, 7), (2, 0, 9)]]

    def run(stream, key):
        return network.fit(NET, PARAMS, DATA, epochs=3, stream=stream,
                           callbacks=[lambda e, h: None], **{**KW, "key": key})

    want = [network.fit(NET, PARAMS, DATA, epochs=3, **{**KW, "key": k}) for _, k in configs]
    got: list = [None] * len(configs)
    errors: list = []
    barrier = threading.Barrier(len(configs))

    def worker(i):
        try:
            barrier.wait()
            got[i] = run(*configs[i])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(configs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for g, w in zip(got, want):
        _same_run(g, w)


def test_several_fits_of_evaluated_loaders_in_threads_keep_their_passes(no_reader_left):
    # each fit's gate holds its own reader: a shared-state loader per fit, evaluated
    def run(seed, prefetch):
        log: list[str] = []
        rng = np.random.default_rng(seed)
        data = {"dtrain": _SharedShuffle(log, "train", rng, X, Y),
                "dval": _SharedShuffle(log, "val", rng, XV[:8], YV[:8])}
        return network.fit(NET, PARAMS, data, epochs=3, callbacks=[lambda e, h: None],
                           stream=Stream(chunk_batches=2, prefetch=prefetch),
                           batch_size=BATCH, key=KEY, loss="CCE"), log

    want = [run(seed, 0) for seed in range(3)]
    got: list = [None] * 3
    barrier = threading.Barrier(3)

    def worker(i):
        barrier.wait()
        got[i] = run(i, 2)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for (g, glog), (w, wlog) in zip(got, want):
        assert glog == wlog
        _same_run(g, w)


def test_a_head_from_another_state_is_dispatched_again_from_this_one():
    # stream_epoch's contract: the next epoch's call takes the head dispatched ahead
    # when it starts from the state the head was dispatched from; else it trains that
    # chunk again from its own state (never the head's outputs)
    opt = network.epynn_sgd(Schedule(), 3, N_BATCHES)
    src = streaming.ArraySource(NET, "dtrain", X, Y, "CCE", BATCH)
    stream = Stream(chunk_batches=2)
    start = network.TrainState(tuple(PARAMS), opt.init(tuple(PARAMS)), checks.check_key(KEY))

    def epoch(state, e, feeder, **kw):
        try:
            return streaming.stream_epoch(NET, opt.update, "CCE", state, feeder.epoch(e), **kw)
        finally:
            if not kw:
                feeder.close()

    feeder = streaming.Feeder(src, stream, start.key, 0, 0, 3)
    try:
        after0, failed, head = epoch(start, 0, feeder, ahead=functools.partial(
            feeder.first_of, 1))
        assert failed is None and head is not None and head.pending is not None
        other = after0._replace(params=jax.tree.map(lambda a: a * 0.5, after0.params))
        got_other = epoch(other, 1, feeder, head=head)[0]
    finally:
        feeder.close()
    feeder = streaming.Feeder(src, stream, start.key, 0, 0, 3)
    try:
        after0b, _, head = epoch(start, 0, feeder, ahead=functools.partial(feeder.first_of, 1))
        got_same = epoch(after0b, 1, feeder, head=head)[0]
    finally:
        feeder.close()
    want_other = epoch(other, 1, streaming.Feeder(src, stream, after0.key, 1, 0, 3))[0]
    want_same = epoch(after0, 1, streaming.Feeder(src, stream, after0.key, 1, 0, 3))[0]
    chex.assert_trees_all_equal(got_other, want_other)
    chex.assert_trees_all_equal(got_same, want_same)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(want_other.params),
                                                         jax.tree.leaves(want_same.params)))


# -- failures while the next epoch's chunk is in flight -----------------------------------


def _overflowing(row: int):
    """``X`` with one training row of finite values whose step overflows."""
    bad = X.copy()
    bad[row] = 3e38
    return {"dtrain": (bad, Y), "dval": (XV, YV)}


@pytest.mark.parametrize("chunk", [1, 2, 6])
def test_a_non_finite_step_in_an_epochs_head_is_the_in_memory_error(chunk, no_reader_left):
    # the row is trained first in epoch 1: its chunk is dispatched ahead, from epoch 0's
    # end state, before epoch 0's last guard is read
    row, batch = _dropped_then_used()
    data = _overflowing(row)
    errors = []
    for stream in (Stream(chunk_batches=chunk), Stream(chunk_batches=chunk, prefetch=0), None):
        with pytest.raises(NonFiniteError, match=f"at epoch 1, batch {batch}") as info:
            network.fit(NET, PARAMS, data, epochs=3, stream=stream, **KW)
        errors.append(info.value)
    ahead, in_loop, in_memory = errors
    assert ahead.step == in_loop.step == in_memory.step == batch
    chex.assert_trees_all_equal(ahead.params, in_loop.params)
    chex.assert_trees_all_equal(ahead.opt_state, in_loop.opt_state)
    chex.assert_trees_all_equal(ahead.key, in_loop.key)
    assert len(ahead.history["CCE"]["dval"]) == 1  # epoch 0 was recorded
    if batch < chunk:  # the first chunk failed: its state is the end of epoch 0
        chex.assert_trees_all_equal(ahead.params, in_memory.params)


def test_a_non_finite_evaluation_with_the_next_chunk_in_flight(no_reader_left):
    # dval overflows: epoch 0's evaluation fails while epoch 1's first chunk is queued;
    # err.params are the state after epoch 0's chunks, not after epoch 1's head
    data = {"dtrain": (X, Y), "dval": (np.full_like(XV, 3e38), YV)}
    errors = []
    for prefetch in (2, 0):
        with pytest.raises(NonFiniteError, match="after epoch 0") as info:
            network.fit(NET, PARAMS, data, epochs=3, stream=Stream(chunk_batches=4,
                                                                  prefetch=prefetch), **KW)
        errors.append(info.value)
    chex.assert_trees_all_equal(errors[0].params, errors[1].params)
    one_epoch = network.fit(NET, PARAMS, DATA, epochs=3, callbacks=[_stop_after(0)], **KW)
    chex.assert_trees_all_equal(errors[0].params, one_epoch.params)


def test_a_bad_row_read_ahead_raises_after_the_epoch_before_is_recorded(tmp_path,
                                                                      no_reader_left):
    row, batch = _dropped_then_used()
    bad = X.copy()
    bad[row, 1] = np.nan
    data = {"dtrain": (bad, Y), "dval": (XV, YV)}
    seen = []
    first = batch // 2 * 2
    with pytest.raises(ValueError, match=rf"dtrain batches {first}-{first + 1} X: contains "
                                         "NaN"):
        network.fit(NET, PARAMS, data, epochs=3, stream=Stream(chunk_batches=2),
                    callbacks=[lambda e, h: seen.append(e)],
                    checkpoints=Checkpoints(tmp_path, every=1), **KW)
    assert seen == [0]
    # the last checkpoint: what was trained when the error came, the chunks of epoch 1
    # before the bad one included (it was (1, 0) before fit saved on errors)
    ck = load_checkpoint(tmp_path / "last.epynn")
    assert (ck.epoch, ck.batch) == (1, first)
    if first == 0:
        chex.assert_trees_all_equal(ck.params, _in_memory(3, 0).params)
    # the row mended, the run resumes from it to the clean run's end, bitwise
    resumed = network.fit(NET, None, DATA, epochs=3, stream=Stream(chunk_batches=2),
                          resume=ck, allow_new_data=True, **KW)
    _same_state(resumed, _in_memory(3))


@pytest.mark.parametrize("prefetch", [1, 2, 4])
def test_a_bad_row_read_ahead_is_never_raised_after_a_stop(prefetch, no_reader_left):
    # epoch 1 (never trained) holds a NaN row: the reader read it ahead, the fit stopped
    row, _ = _dropped_then_used()
    bad = X.copy()
    bad[row, 0] = np.nan
    data = {"dtrain": (bad, Y), "dval": (XV, YV)}
    got = network.fit(NET, PARAMS, data, epochs=3, callbacks=[_stop_after(0)],
                      stream=Stream(chunk_batches=2, prefetch=prefetch), **KW)
    assert got.epochs == 1
    _same_run(got, _in_memory(3, 0))


@pytest.mark.parametrize("fails, stop", [("once", None), ("once", 0), ("always", None)])
def test_a_failure_dispatching_the_next_epochs_head_comes_after_the_epoch(fails, stop, tmp_path,
                                                                         monkeypatch,
                                                                         no_reader_left):
    # was (before c1b5874): an error dispatching epoch 1's first chunk ahead (out of
    # device memory, say) escaped from epoch 0 before it was settled, recorded, called
    # back and saved, even where a callback stopped after epoch 0. Now: dispatched again
    # by epoch 1, which raises the error if it recurs
    chunk, calls = streaming.train_chunk, []

    def dispatch(*a, **k):
        calls.append(a)
        # call 4: epoch 1's first chunk, dispatched ahead (3 chunks an epoch)
        if len(calls) == 4 or (fails == "always" and len(calls) > 4):
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory allocating the chunk")
        return chunk(*a, **k)

    monkeypatch.setattr(streaming, "train_chunk", dispatch)
    seen = []

    def callback(e, history):
        seen.append(e)
        return None if stop is None else e < stop

    kw = dict(epochs=3, callbacks=[callback], checkpoints=Checkpoints(tmp_path, every=1),
              stream=Stream(chunk_batches=2), **KW)
    if fails == "always":
        with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
            network.fit(NET, PARAMS, DATA, **kw)
        assert seen == [0]
        ck = load_checkpoint(tmp_path / "last.epynn")
        assert (ck.epoch, ck.batch) == (1, 0)
        chex.assert_trees_all_equal(ck.params, _in_memory(3, 0).params)
        return
    got = network.fit(NET, PARAMS, DATA, **kw)
    assert len(calls) >= 4
    _same_run(got, _in_memory(3, stop))
    assert seen == ([0] if stop == 0 else [0, 1, 2])


# -- loaders -------------------------------------------------------------------------------


def _batch_list():
    return [(X[i:i + BATCH], Y[i:i + BATCH]) for i in range(0, N_BATCHES * BATCH, BATCH)]


class _PassFails:
    """A re-iterable loader whose pass ``bad`` raises at its batch ``at``."""

    def __init__(self, bad: int, at: int):
        self.bad, self.at, self.passes = bad, at, 0

    def __len__(self):
        return N_BATCHES

    def __iter__(self):
        self.passes += 1
        if self.passes == self.bad and self.at == -1:
            raise RuntimeError(f"pass {self.passes} cannot start")
        return self._pass(self.passes)

    def _pass(self, n):
        for i, b in enumerate(_batch_list()):
            if n == self.bad and i == self.at:
                raise RuntimeError(f"pass {n} broke at batch {i}")
            yield b


@pytest.mark.parametrize("at", [-1, 0, 3])
@pytest.mark.parametrize("prefetch", [1, 2])
def test_a_loaders_failing_next_pass_raises_after_the_epoch_is_recorded(at, prefetch, tmp_path,
                                                                         no_reader_left):
    seen = []
    with pytest.raises(RuntimeError, match="pass 2") as info:
        network.fit(NET, PARAMS, {"dtrain": _PassFails(2, at)}, epochs=3,
                    callbacks=[lambda e, h: seen.append(e)],
                    checkpoints=Checkpoints(tmp_path, every=1),
                    stream=Stream(chunk_batches=2, prefetch=prefetch),
                    **{**KW, "eval_splits": ()})
    assert seen == [0]
    assert load_checkpoint(tmp_path / "last.epynn").epoch == 1
    if at >= 0:  # the loader's own error, with a note naming the batch
        assert any(f"batch {at}" in note for note in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("at", [-1, 0])
def test_a_loaders_failing_next_pass_is_not_raised_after_a_stop(at, no_reader_left):
    kw = dict(epochs=3, callbacks=[_stop_after(0)], **{**KW, "eval_splits": ()})
    got = network.fit(NET, PARAMS, {"dtrain": _PassFails(2, at)},
                      stream=Stream(chunk_batches=4), **kw)
    want = network.fit(NET, PARAMS, {"dtrain": _batch_list()}, stream=Stream(prefetch=0), **kw)
    assert got.epochs == 1
    _same_run(got, want)


@pytest.mark.parametrize("batches, chunk", [(N_BATCHES, 6), (N_BATCHES + 3, 2),
                                           (N_BATCHES + 3, 6)])
@pytest.mark.parametrize("stop", [None, 0])
def test_a_one_shot_iterator_running_out_in_the_next_epoch(batches, chunk, stop,
                                                           no_reader_left):
    # the generator ends in epoch 1 (at its batch 0 or 3): that epoch's first chunk is
    # read ahead, or its chunk after the head; epoch 0 ends, and is called back, first
    seen = []

    def callback(e, history):
        seen.append(e)
        return None if stop is None else e < stop

    kw = dict(epochs=3, callbacks=[callback],
              stream=Stream(chunk_batches=chunk, steps_per_epoch=N_BATCHES),
              **{**KW, "eval_splits": ()})
    data = {"dtrain": iter(_batch_list() + _batch_list()[:batches - N_BATCHES])}
    if stop is not None:
        got = network.fit(NET, PARAMS, data, **kw)
        want = network.fit(NET, PARAMS, {"dtrain": _batch_list()}, **kw)
        assert got.epochs == 1 and seen == [0, 0]
        _same_run(got, want)
        return
    with pytest.raises(ValueError, match=f"ran out after {batches - N_BATCHES} batches"):
        network.fit(NET, PARAMS, data, **kw)
    assert seen == [0]


class _SharedShuffle:
    """Loaders drawing their order from ONE shared random state in ``__iter__``, logging
    each pass: a pass started out of ``prefetch=0``'s order changes the batches."""

    def __init__(self, log, name, rng, X, Y):
        self.log, self.name, self.rng, self.X, self.Y = log, name, rng, X, Y

    def __len__(self):
        return len(self.X) // BATCH

    def __iter__(self):
        self.log.append(self.name)
        order = self.rng.permutation(len(self.X))
        for i in range(len(self)):
            rows = np.sort(order[i * BATCH:(i + 1) * BATCH])
            yield self.X[rows], self.Y[rows]


@pytest.mark.parametrize("chunk", [2, 6])
def test_an_evaluated_loader_keeps_the_passes_in_prefetch_0s_order(chunk, no_reader_left):
    results, logs = [], []
    for prefetch in (0, 1, 2, 4):
        log: list[str] = []
        rng = np.random.default_rng(1)
        data = {"dtrain": _SharedShuffle(log, "train", rng, X, Y),
                "dval": _SharedShuffle(log, "val", rng, XV[:8], YV[:8])}
        results.append(network.fit(NET, PARAMS, data, epochs=3, callbacks=[_stop_after(5)],
                                   stream=Stream(chunk_batches=chunk, prefetch=prefetch),
                                   batch_size=BATCH, key=KEY, loss="CCE"))
        logs.append(log)
    # made: train and val read their first batch (val's first pass is its first
    # evaluation); then per epoch: train's pass, its evaluation's pass, val's pass
    assert logs[0] == ["train", "val", "train", "train", "train", "val", "train", "train",
                       "val"]
    for log, result in zip(logs[1:], results[1:]):
        assert log == logs[0]
        _same_run(result, results[0])


def test_prefetch_0_reads_no_batch_ahead_of_the_epoch():
    pulled = []

    def batches():
        for i, b in enumerate(itertools.cycle(_batch_list())):
            pulled.append(i)
            yield b

    counts = []
    network.fit(NET, PARAMS, {"dtrain": batches()}, epochs=3,
                callbacks=[lambda e, h: counts.append(len(pulled))],
                stream=Stream(prefetch=0, chunk_batches=4, steps_per_epoch=N_BATCHES),
                **{**KW, "eval_splits": ()})
    assert counts == [N_BATCHES, 2 * N_BATCHES, 3 * N_BATCHES]


@pytest.mark.parametrize("stop", [None, 1])
def test_a_one_shot_iterator_is_the_same_whatever_the_lookahead(stop, no_reader_left):
    kw = dict(epochs=3, callbacks=[] if stop is None else [_stop_after(stop)],
              **{**KW, "eval_splits": ()})
    want = network.fit(NET, PARAMS, {"dtrain": _batch_list()}, stream=Stream(prefetch=0), **kw)
    for chunk, prefetch in [(1, 1), (4, 2), (6, 4), (2, 0)]:
        got = network.fit(NET, PARAMS, {"dtrain": itertools.cycle(_batch_list())},
                          stream=Stream(chunk_batches=chunk, prefetch=prefetch,
                                        steps_per_epoch=N_BATCHES), **kw)
        _same_run(got, want)


# -- Ctrl-C at every point of the hand-over ----------------------------------------------


def _raise_on(calls: list, n: int | None = None, when=None):
    """A wrapper raising KeyboardInterrupt on its ``n``-th call (or the first call where
    ``when(*args)``), else calling through."""
    def wrap(fn):
        def wrapped(*args, **kwargs):
            calls.append(args)
            if (n is not None and len(calls) == n) or (when is not None and when(*args)):
                raise KeyboardInterrupt
            return fn(*args, **kwargs)
        return wrapped
    return wrap


def _nth_read(where: str, n: int):
    """``when`` for :data:`streaming._read`: the ``n``-th read whose place is ``where``."""
    count = itertools.count(1)
    return lambda a, rows, w: w == where and next(count) == n


class _RaisingCheckpoints(Checkpoints):
    """Checkpoints whose ``method`` raises KeyboardInterrupt once at ``(epoch, batch)``."""

    def __init__(self, directory, method, at, **kw):
        super().__init__(directory, **kw)
        self.method, self.at, self.raised = method, at, False

    def _maybe(self, progress):
        if not self.raised and (progress.epoch, progress.batch) == self.at:
            self.raised = True
            raise KeyboardInterrupt

    def after_epoch(self, net, progress, metadata):
        if self.method == "after_epoch":
            self._maybe(progress)
        return super().after_epoch(net, progress, metadata)

    def after_batches(self, net, progress, metadata):
        if self.method == "after_batches":
            self._maybe(progress)
        return super().after_batches(net, progress, metadata)


def _ctrl_c(monkeypatch, point: str, calls: list):
    """Patch the library so that Ctrl-C lands at ``point``; returns fit's extra kwargs."""
    kw: dict = {}
    if point == "the feeder's first read, in the caller's thread":
        monkeypatch.setattr(streaming, "_read", _raise_on(
            calls, when=_nth_read("dtrain batches 0-1 X", 1))(streaming._read))
    elif point == "the reader reading epoch 1's first chunk":
        monkeypatch.setattr(streaming, "_read", _raise_on(
            calls, when=_nth_read("dtrain batches 0-1 X", 2))(streaming._read))
    elif point == "first_of(2)":
        first_of = streaming.Feeder.first_of
        monkeypatch.setattr(streaming.Feeder, "first_of", _raise_on(
            calls, when=lambda self, e: e == 2)(first_of))
    elif point == "dispatching epoch 1's head":
        monkeypatch.setattr(streaming, "train_chunk", _raise_on(calls, 4)(streaming.train_chunk))
    elif point == "dispatching the chunk after epoch 1's head":
        monkeypatch.setattr(streaming, "train_chunk", _raise_on(calls, 5)(streaming.train_chunk))
    elif point == "reading epoch 0's last guard":
        monkeypatch.setattr(streaming, "fetch", _raise_on(calls, 3)(streaming.fetch))
    elif point == "evaluating epoch 1":
        monkeypatch.setattr(streaming, "evaluate_split",
                            _raise_on(calls, 2)(streaming.evaluate_split))
    elif point == "a callback after epoch 1":
        kw["callbacks"] = [_raise_on(calls, when=lambda e, h: e == 1)(lambda e, h: None)]
    elif point == "saving after epoch 1":
        kw["checkpoints"] = lambda d: _RaisingCheckpoints(d, "after_epoch", (2, 0))
    elif point == "saving epoch 1's last chunk":
        kw["checkpoints"] = lambda d: _RaisingCheckpoints(d, "after_batches", (1, N_BATCHES),
                                                          every_batches=2)
    else:
        raise AssertionError(point)
    return kw


@pytest.mark.parametrize("point, where", [
    ("the feeder's first read, in the caller's thread", (0, 0)),
    ("the reader reading epoch 1's first chunk", (0, N_BATCHES)),
    ("first_of(2)", (1, N_BATCHES)),
    ("dispatching epoch 1's head", (0, N_BATCHES)),
    ("dispatching the chunk after epoch 1's head", (1, 2)),
    ("reading epoch 0's last guard", (0, N_BATCHES)),
    ("evaluating epoch 1", (1, N_BATCHES)),
    ("a callback after epoch 1", (2, 0)),
    ("saving after epoch 1", (2, 0)),
    ("saving epoch 1's last chunk", (1, N_BATCHES)),
])
def test_ctrl_c_keeps_the_last_settled_state_and_resumes_bitwise(point, where, tmp_path,
                                                                monkeypatch, no_reader_left):
    calls: list = []
    kw = _ctrl_c(monkeypatch, point, calls)
    checkpoints = kw.pop("checkpoints", Checkpoints)(tmp_path)
    with pytest.raises(TrainingInterrupted) as info:
        network.fit(NET, PARAMS, DATA, epochs=3, stream=Stream(chunk_batches=2),
                    checkpoints=checkpoints, **kw, **KW)
    assert calls or getattr(checkpoints, "raised", False), "the interruption was never reached"
    result = info.value.result
    assert (result.epochs, result.batches) == where
    assert all(len(v) == result.epochs for d in result.history.values() for v in d.values())
    ck = load_checkpoint(info.value.checkpoint)
    assert (ck.epoch, ck.batch) == where
    chex.assert_trees_all_equal(ck.params, result.params)
    chex.assert_trees_all_equal(ck.key, result.key)
    if result.batches in (0, N_BATCHES):  # whole epochs: the in-memory ones' parameters
        last = result.epochs - 1 if result.batches == 0 else result.epochs  # the last trained
        chex.assert_trees_all_equal(result.params,
                                    _in_memory(3, last).params if last >= 0 else PARAMS)
    monkeypatch.undo()
    resumed = network.fit(NET, None, DATA, epochs=3, resume=ck, stream=Stream(chunk_batches=2),
                          **KW)
    _same_run(resumed, _in_memory(3))


def test_ctrl_c_in_a_resumed_fits_first_read_keeps_the_checkpoints_state(tmp_path, monkeypatch,
                                                                          no_reader_left):
    calls: list = []
    monkeypatch.setattr(streaming, "train_chunk", _raise_on(calls, 5)(streaming.train_chunk))
    stream = Stream(chunk_batches=2)
    with pytest.raises(TrainingInterrupted):
        network.fit(NET, PARAMS, DATA, epochs=3, stream=stream, checkpoints=Checkpoints(tmp_path),
                    **KW)
    ck = load_checkpoint(tmp_path / "last.epynn")
    assert (ck.epoch, ck.batch) == (1, 2)
    monkeypatch.setattr(streaming, "_read", _raise_on(
        calls, when=_nth_read("dtrain batches 2-3 X", 1))(streaming._read))
    with pytest.raises(TrainingInterrupted) as info:
        network.fit(NET, None, DATA, epochs=3, stream=stream, resume=ck, **KW)
    result = info.value.result
    assert (result.epochs, result.batches) == (1, 2)
    chex.assert_trees_all_equal(result.params, ck.params)
    chex.assert_trees_all_equal(jax.tree.leaves(result.opt_state), jax.tree.leaves(ck.opt_state))
    monkeypatch.undo()
    _same_run(network.fit(NET, None, DATA, epochs=3, stream=stream, resume=ck, **KW),
              _in_memory(3))


# -- resume from every checkpoint saved within or at the end of an epoch -------------------


class _KeepingCheckpoints(Checkpoints):
    """Checkpoints that keep a copy of every ``last`` they save, by (epoch, batch)."""

    def __init__(self, directory, **kw):
        super().__init__(directory, **kw)
        self.copies: dict = {}

    def _save(self, name, net, progress, metadata):
        path = super()._save(name, net, progress, metadata)
        if name == "last":
            copy = path.with_name(f"e{progress.epoch}b{progress.batch}.epynn")
            shutil.copyfile(path, copy)
            self.copies[(progress.epoch, progress.batch)] = copy
        return path


@pytest.mark.parametrize("every, saves", [
    (2, [(e, b) for e in range(3) for b in (2, 4, 6)]),
    (4, [(e, 4) for e in range(3)]),
    (6, [(e, 6) for e in range(3)]),
])
def test_a_resume_from_every_batch_checkpoint_is_the_uninterrupted_run(every, saves, tmp_path,
                                                                      no_reader_left):
    ck = _KeepingCheckpoints(tmp_path, every_batches=every)
    full = network.fit(NET, PARAMS, DATA, epochs=3, checkpoints=ck, **KW)
    _same_run(full, _in_memory(3))
    assert sorted(ck.copies) == [*saves, (3, 0)]
    streams = itertools.cycle([None, Stream(chunk_batches=1, prefetch=4), Stream(prefetch=0),
                               Stream(chunk_batches=4, prefetch=1)])
    for (epoch, batch), stream in zip(saves, streams):
        saved = load_checkpoint(ck.copies[(epoch, batch)])
        assert (saved.epoch, saved.batch) == (epoch, batch)
        done = network.fit(NET, None, DATA, epochs=3, resume=saved, stream=stream, **KW)
        _same_run(done, full)


def test_a_loader_resumed_mid_epoch_with_the_lookahead_is_the_uninterrupted_run(
        tmp_path, monkeypatch, no_reader_left):
    kw = dict(epochs=3, stream=Stream(chunk_batches=2), **{**KW, "eval_splits": ()})
    full = network.fit(NET, PARAMS, {"dtrain": _batch_list()}, **kw)
    for n in (4, 5, 7):  # Ctrl-C dispatching: epoch 1's head, its second chunk, epoch 2's
        calls: list = []
        monkeypatch.setattr(streaming, "train_chunk",
                            _raise_on(calls, n)(streaming.train_chunk))
        with pytest.raises(TrainingInterrupted) as info:
            network.fit(NET, PARAMS, {"dtrain": _batch_list()},
                        checkpoints=Checkpoints(tmp_path / str(n)), **kw)
        monkeypatch.undo()
        ck = load_checkpoint(info.value.checkpoint)
        assert (ck.epoch, ck.batch) == {4: (0, 6), 5: (1, 2), 7: (1, 6)}[n]
        _same_run(network.fit(NET, None, {"dtrain": _batch_list()}, resume=ck, **kw), full)


# -- debug and the reader thread -----------------------------------------------------------


def test_debug_streams_several_chunks_without_the_lookahead(events, monkeypatch):
    net = network.build([layers.Dense(5, "relu"), layers.Dense(2, "softmax")], (4,))
    params = network.init(net, 2)  # (no Dropout: op by op, it is slow)
    kw = dict(epochs=2, **{**KW, "eval_splits": (), "batch_size": 16})  # 3 batches
    got = network.fit(net, params, DATA, debug=True, stream=Stream(chunk_batches=2), **kw)
    # per epoch: chunk 0, chunk 1, guard 0, guard 1; the next epoch only after
    assert events == ["d", "d", "r", "r"] * 2
    monkeypatch.undo()
    want = network.fit(net, params, DATA, **kw)
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _stop_reader(thread: threading.Thread) -> None:
    """Stop a reader thread that ``fit`` left running (its ``_Prefetch``'s stop event)."""
    prefetch = getattr(getattr(thread, "_target", None), "__self__", None)
    if prefetch is not None:
        prefetch.stop.set()
    thread.join(5)


@pytest.mark.parametrize("caller, window", [
    *((c, w) for c in ("fit", "predict", "evaluate") for w in ("before Thread.start",
                                                               "Thread.start")),
    ("fit", "after Feeder.__init__"),
])
def test_ctrl_c_right_around_the_readers_start_leaves_no_thread(caller, window, monkeypatch):
    # was (before c1b5874): a Ctrl-C after the reader thread started but before fit's
    # 'feeder = _feeder(...)' assignment (in Thread.start's wait for the thread, or on
    # Feeder.__init__'s return) left feeder None: fit's finally closed nothing and the
    # daemon reader polled its full queue forever after TrainingInterrupted
    made: list[threading.Thread] = []
    start = threading.Thread.start

    def starting(self):
        if self.name != READER:
            return start(self)
        made.append(self)
        if window == "before Thread.start":
            raise KeyboardInterrupt  # as Ctrl-C before the thread is started
        start(self)
        if window == "Thread.start":
            raise KeyboardInterrupt  # as Ctrl-C during start()'s wait for the thread

    monkeypatch.setattr(threading.Thread, "start", starting)
    if window == "after Feeder.__init__":
        init = streaming.Feeder.__init__

        def constructed(self, *args, **kwargs):
            init(self, *args, **kwargs)
            raise KeyboardInterrupt  # as Ctrl-C on the constructor's return
        monkeypatch.setattr(streaming.Feeder, "__init__", constructed)
    stream = Stream(prefetch=1)
    try:
        if caller == "fit":
            with pytest.raises(TrainingInterrupted) as info:
                network.fit(NET, PARAMS, DATA, epochs=3, stream=stream, **KW)
            assert (info.value.result.epochs, info.value.result.batches) == (0, 0)
        else:
            with pytest.raises(KeyboardInterrupt):
                if caller == "predict":
                    network.predict(NET, PARAMS, X, chunk=8, stream=stream)
                else:
                    network.evaluate(NET, PARAMS, X, Y, ("accuracy",), chunk=8, stream=stream)
        assert made
        for t in made:
            if t.is_alive():
                t.join(1)
        assert not [t for t in made if t.is_alive()], "the reader thread is still running"
    finally:
        for t in made:
            if t.is_alive():
                _stop_reader(t)


# -- the caller's default device, per thread ----------------------------------------------

_DEVICES_SCRIPT = r"""
import json, os, threading
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, numpy as np
from epynn_jax import Schedule, layers, network
from epynn_jax.network import streaming
from epynn_jax.network.streaming import Stream

rng = np.random.default_rng(0)
X = rng.normal(size=(50, 4)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 50)]
net = network.build([layers.Dense(5, "relu"), layers.Dense(2, "softmax")], (4,))
params = network.init(net, 2)
kw = dict(epochs=3, batch_size=8, key=5, loss="CCE", callbacks=[lambda e, h: None])
put, placed, lock = streaming._put, {}, threading.Lock()

def record(device, *arrays):
    with lock:
        placed.setdefault(threading.current_thread().name, set()).add(str(device))
    return put(device, *arrays)

streaming._put = record
out, barrier = {}, threading.Barrier(2)

def run(i):
    d = jax.devices()[i]
    with jax.default_device(d):
        barrier.wait()
        got = network.fit(net, params, {"dtrain": (X, Y)}, stream=Stream(chunk_batches=2), **kw)
        want = network.fit(net, params, {"dtrain": (X, Y)}, **kw)
    out[i] = {"on": sorted({str(x) for leaf in jax.tree.leaves(got.params)
                            for x in leaf.devices()}),
              "same": all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got.params),
                                                               jax.tree.leaves(want.params))),
              "d": str(d)}

threads = [threading.Thread(target=run, args=(i,), name=f"caller{i}") for i in range(2)]
for t in threads: t.start()
for t in threads: t.join(120)
readers = [t.name for t in threading.enumerate() if t.name == "epynn_jax-stream"]
print("RESULT " + json.dumps({"out": out, "placed": {k: sorted(v) for k, v in placed.items()},
                              "readers": readers}))
"""


def test_fits_in_two_threads_under_two_default_devices_stream_each_to_its_own():
    from tests.parallel.script import run_result

    r = run_result(_DEVICES_SCRIPT)
    out = r["out"]
    assert sorted(out) == ["0", "1"], r
    for i in ("0", "1"):
        assert out[i]["on"] == [out[i]["d"]] and out[i]["same"], r
    # the first chunk is placed in each caller's thread, the others by the readers
    assert r["placed"]["caller0"] == [out["0"]["d"]] and r["placed"]["caller1"] == [out["1"]["d"]]
    assert sorted(r["placed"]["epynn_jax-stream"]) == sorted([out["0"]["d"], out["1"]["d"]])
    assert r["readers"] == []


# -- host buffers passed to the compiled call ---------------------------------------------


class _ReusingLoader:
    """A loader that writes every batch into ONE preallocated (aligned) buffer, as loaders
    with pinned or recycled buffers do: a batch is valid until the next one is asked for."""

    def __init__(self, X, Y):
        self.batches = [(X[i:i + BATCH], Y[i:i + BATCH]) for i in range(0, len(X), BATCH)]
        self.X = checks.aligned((BATCH, X.shape[1]), np.float32)
        self.Y = checks.aligned((BATCH, Y.shape[1]), np.float32)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for x, y in self.batches:
            self.X[...], self.Y[...] = x, y
            yield self.X, self.Y


def test_a_loaders_training_batches_are_copied_before_the_compiled_call(monkeypatch):
    # was (before c1b5874, and already in 92ec7b4): BatchSource.chunks held each checked
    # batch as the loader's own array until k were read, so a loader refilling one buffer
    # trained, with chunk_batches >= 2 (the default), on the chunk's last batch k times
    loader = _ReusingLoader(X[:N_BATCHES * BATCH], Y[:N_BATCHES * BATCH])
    given = []
    chunk = streaming.train_chunk

    def dispatch(net, update, loss, params, opt_state, key, start, Xc, Yc, *a, **k):
        given.append((Xc, Yc))
        return chunk(net, update, loss, params, opt_state, key, start, Xc, Yc, *a, **k)

    monkeypatch.setattr(streaming, "train_chunk", dispatch)
    got = network.fit(NET, PARAMS, {"dtrain": loader}, epochs=2, stream=Stream(chunk_batches=2),
                      **{**KW, "eval_splits": ()})
    assert len(given) == 2 * 3
    assert not any(np.shares_memory(np.asarray(a), buf) for pair in given for a in pair
                   for buf in (loader.X, loader.Y) if isinstance(a, np.ndarray))
    want = network.fit(NET, PARAMS, {"dtrain": _batch_list()}, epochs=2,
                       stream=Stream(chunk_batches=2), **{**KW, "eval_splits": ()})
    _same_run(got, want)


def test_a_loaders_evaluation_batches_are_not_the_loaders_own_buffers(monkeypatch):
    # was (before c1b5874, and already in 92ec7b4 through jax.device_put): fit's
    # evaluation of a loader split handed the loader's own aligned batch arrays to the
    # compiled call (host_float without own=True, then _put as is), which a CPU takes
    # without a copy and runs asynchronously: a loader refilling its buffer for the next
    # batch changed the batch the pending evaluation read (2048 x 256 batches: CCE 7.60
    # instead of 7.48)
    loader = _ReusingLoader(XV[:8], YV[:8])
    given = []
    statistics = streaming._chunk_statistics

    def computing(net, metric_names, params, Xc, Yc, mask):
        given.append((Xc, Yc))
        return statistics(net, metric_names, params, Xc, Yc, mask)

    monkeypatch.setattr(streaming, "_chunk_statistics", computing)
    network.fit(NET, PARAMS, {"dtrain": (X, Y), "dval": loader}, epochs=1, **KW)
    assert given
    shared = [i for i, pair in enumerate(given) for a in pair for buf in (loader.X, loader.Y)
              if isinstance(a, np.ndarray) and np.shares_memory(a, buf)]
    assert not shared, f"evaluation chunks {shared} are the loader's own buffer"
