"""Streamed ``fit`` (``network.streaming``): data from the host, several batches per call.

What is checked: the same parameters as the in-memory epoch, bitwise (arrays, and an
iterable that yields the in-memory batch order); a memory-mapped set larger than the
device budget trains without ever being held whole; Ctrl-C, batch checkpoints and
resume mid-epoch; bad batches named; at most two chunk programs per fit; streamed
evaluation equal to a one-shot forward in float64.
"""

from __future__ import annotations

import tracemalloc

import chex
import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.errors import TrainingInterrupted
from epynn_jax.io import Checkpoints, load_checkpoint
from epynn_jax.network import streaming
from epynn_jax.network.streaming import Stream

from .test_fit_compiles import compiled

N_TRAIN, BATCH = 150, 16          # 9 batches per epoch (6 samples dropped)
NET = network.build([layers.Dense(8, "relu"), layers.Dropout(0.3),
                     layers.Dense(2, "softmax")], (6,))
PARAMS = network.init(NET, 1)
KW = dict(epochs=3, batch_size=BATCH, key=3, loss="CCE", metrics=("accuracy",))


def _data(n=N_TRAIN + 40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, n)]
    return {"dtrain": (X[:N_TRAIN], Y[:N_TRAIN]), "dval": (X[N_TRAIN:], Y[N_TRAIN:])}


DATA = _data()


@pytest.fixture(scope="module")
def in_memory():
    return network.fit(NET, PARAMS, DATA, **KW)


def _bitwise(a, b):
    chex.assert_trees_all_equal(a.params, b.params)
    chex.assert_trees_all_equal(a.opt_state, b.opt_state)


def _shuffles(key, epochs):
    """The in-memory epoch's batches, by its documented rule: the state key splits into
    (next key, shuffle key, step key); a permutation of the whole set, cut in batches."""
    key, out = jax.random.key(key) if isinstance(key, int) else key, []
    for _ in range(epochs):
        key, shuffle, _ = jax.random.split(key, 3)
        perm = np.asarray(jax.random.permutation(shuffle, N_TRAIN))
        out.append(perm[: N_TRAIN // BATCH * BATCH].reshape(-1, BATCH))
    return out


class Loader:
    """A re-iterable loader (like a DataLoader): one pass per epoch, in a given order."""

    def __init__(self, X, Y, orders):
        self.X, self.Y, self.orders, self.passes = X, Y, orders, 0

    def __len__(self):
        return len(self.orders[0])

    def __iter__(self):
        order = self.orders[self.passes]
        self.passes += 1
        for rows in order:
            yield self.X[rows], self.Y[rows]


# -- the same parameters ---------------------------------------------------------------


@pytest.mark.parametrize("chunk", [4, 9])  # 4, 4, 1 batches per call; one call per epoch
def test_streamed_arrays_are_bitwise_in_memory(in_memory, chunk):
    streamed = network.fit(NET, PARAMS, DATA, stream=Stream(chunk_batches=chunk), **KW)
    _bitwise(in_memory, streamed)
    for split in ("dtrain", "dval"):
        np.testing.assert_allclose(streamed.history["accuracy"][split],
                                   in_memory.history["accuracy"][split], rtol=1e-6)


def test_iterable_in_the_same_order_is_bitwise_in_memory(in_memory):
    loader = Loader(*DATA["dtrain"], _shuffles(3, KW["epochs"]))
    streamed = network.fit(NET, PARAMS, {"dtrain": loader, "dval": DATA["dval"]},
                           eval_splits=("dval",), stream=Stream(chunk_batches=4, prefetch=1),
                           **KW)
    _bitwise(in_memory, streamed)
    assert loader.passes == KW["epochs"]  # one pass per epoch, none for evaluation


def test_one_shot_iterator_with_steps_per_epoch(in_memory):
    orders = _shuffles(3, KW["epochs"])
    X, Y = DATA["dtrain"]
    batches = ((X[rows], Y[rows]) for order in orders for rows in order)
    streamed = network.fit(NET, PARAMS, {"dtrain": batches, "dval": DATA["dval"]},
                           eval_splits=("dval",), stream=Stream(steps_per_epoch=9), **KW)
    _bitwise(in_memory, streamed)


# -- larger than the device ------------------------------------------------------------


def test_memmap_larger_than_the_budget_streams_in_chunks(tmp_path, monkeypatch):
    n, width = 4096, 32
    X = np.lib.format.open_memmap(tmp_path / "X.npy", "w+", np.float32, (n, width))
    Y = np.lib.format.open_memmap(tmp_path / "Y.npy", "w+", np.float32, (n, 2))
    rng = np.random.default_rng(1)
    X[:] = rng.normal(size=(n, width))
    Y[:] = np.eye(2)[rng.integers(0, 2, n)]
    X.flush(), Y.flush()
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    Y = np.load(tmp_path / "Y.npy", mmap_mode="r")
    set_bytes = X.nbytes + Y.nbytes            # 544 KiB
    budget = 64 * 2**10                        # the device may hold 64 KiB of chunks
    placed = []
    place = streaming._place
    monkeypatch.setattr(streaming, "_place", lambda mesh, device, a, b: (
        placed.append(a.nbytes + b.nbytes), place(mesh, device, a, b))[1])
    net = network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (width,))
    params = network.init(net, 0)
    kw = dict(batch_size=64, loss="CCE", stream=Stream(memory_budget=budget), eval_splits=())
    network.fit(net, params, {"dtrain": (X, Y)}, epochs=1, **kw)  # compiles (not measured)
    placed.clear()
    tracemalloc.start()  # NumPy reports its buffers to tracemalloc
    try:
        result = network.fit(net, params, {"dtrain": (X, Y)}, epochs=2, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # k = 64 KiB // (64 samples x 34 floats x 4 B x (2 prefetched + 2)) = 1 batch per call
    assert len(placed) == 2 * (n // 64) and max(placed) <= budget
    assert peak < set_bytes / 2, f"the host held {peak} bytes of a {set_bytes}-byte set"
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(result.params))
    # without stream=: a memmap streams by itself, and the order is the in-memory one
    auto = network.fit(net, params, {"dtrain": (X, Y)}, epochs=1, batch_size=64, loss="CCE",
                       eval_splits=())
    ref = network.fit(net, params, {"dtrain": (np.asarray(X), np.asarray(Y))}, epochs=1,
                      batch_size=64, loss="CCE", eval_splits=())
    chex.assert_trees_all_equal(auto.params, ref.params)


def test_chunk_batches_from_the_budget():
    assert streaming.chunk_batches(Stream(memory_budget=4000), 100, 50) == 10  # 4000/(100*4)
    assert streaming.chunk_batches(Stream(memory_budget=4000, prefetch=0), 100, 50) == 20
    assert streaming.chunk_batches(Stream(memory_budget=10), 100, 50) == 1
    assert streaming.chunk_batches(Stream(memory_budget=10**9), 100, 50) == 50
    assert streaming.chunk_batches(Stream(chunk_batches=7), 100, None) == 7


def test_process_rows():
    assert [streaming.process_rows(8, i, 4) for i in range(4)] == [
        slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    assert streaming.process_rows(5, 0, 1) == slice(0, 5)
    with pytest.raises(ValueError, match="batch_size 6 does not split evenly over 4"):
        streaming.process_rows(6, 0, 4)


# -- Ctrl-C, checkpoints, resume mid-epoch -----------------------------------------------


class Interrupting:
    """An array-like whose ``n``-th row read raises KeyboardInterrupt (Ctrl-C mid-epoch)."""

    def __init__(self, a, n):
        self.a, self.n, self.reads = a, n, 0
        self.shape, self.dtype = a.shape, a.dtype

    def __getitem__(self, idx):
        self.reads += 1
        if self.reads == self.n:
            raise KeyboardInterrupt
        return self.a[idx]

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def test_ctrl_c_mid_epoch_saves_and_resumes_at_the_batch(in_memory, tmp_path):
    X, Y = DATA["dtrain"]
    kw = dict(KW, eval_splits=("dval",), stream=Stream(chunk_batches=2, prefetch=0))
    data = {"dtrain": (Interrupting(X, 6), Y), "dval": DATA["dval"]}
    with pytest.raises(TrainingInterrupted) as info:
        network.fit(NET, PARAMS, data, checkpoints=Checkpoints(tmp_path), **kw)
    # epoch 0: chunks at batches 0, 2, 4, 6, 8 (reads 1-5); the 6th read is epoch 1's first
    assert (info.value.result.epochs, info.value.result.batches) == (1, 0)
    data["dtrain"] = (Interrupting(X, 3), Y)  # epoch 1: batches 0-3 done, then Ctrl-C
    ck = load_checkpoint(info.value.checkpoint)
    with pytest.raises(TrainingInterrupted) as info:
        network.fit(NET, None, data, checkpoints=Checkpoints(tmp_path), resume=ck, **kw)
    assert "after 1 completed epochs and 4 batches of the next" in str(info.value)
    ck = load_checkpoint(info.value.checkpoint)
    assert (ck.epoch, ck.batch) == (1, 4)
    assert len(ck.history["accuracy"]["dval"]) == 1
    # resume in memory: the rest of epoch 1 streams from the arrays, then whole epochs
    done = network.fit(NET, None, DATA, resume=ck, eval_splits=("dval",), **KW)
    _bitwise(in_memory, done)
    np.testing.assert_allclose(done.history["accuracy"]["dval"],
                               in_memory.history["accuracy"]["dval"], rtol=1e-6)


def test_every_batches_saves_mid_epoch(in_memory, tmp_path):
    seen = []
    ck = Checkpoints(tmp_path, every_batches=4)
    save = ck._save
    ck._save = lambda name, net, progress, meta: (seen.append((progress.epoch, progress.batch)),
                                                  save(name, net, progress, meta))[1]
    result = network.fit(NET, PARAMS, DATA, checkpoints=ck, **KW)
    _bitwise(in_memory, result)  # in-memory data, streamed in chunks of 4 batches
    assert seen == [(0, 4), (0, 8), (1, 4), (1, 8), (2, 4), (2, 8), (3, 0)]
    last = load_checkpoint(tmp_path / "last.epynn")
    assert (last.epoch, last.batch) == (3, 0)


def test_checkpoint_batch_is_validated(tmp_path):
    from epynn_jax.io import save_checkpoint
    opt = network.epynn_sgd()
    with pytest.raises(ValueError, match="batch must be an int >= 0, got -1"):
        save_checkpoint(tmp_path / "c.epynn", NET, PARAMS, opt_state=opt.init(PARAMS),
                        key=jax.random.key(0), epoch=1, batch=-1)


# -- bad batches -----------------------------------------------------------------------


def _batches(n=6, bad=None, value=np.nan, size=None):
    X, Y = DATA["dtrain"]
    out = [(X[i * BATCH:(i + 1) * BATCH].copy(), Y[i * BATCH:(i + 1) * BATCH]) for i in range(n)]
    if bad is not None:
        out[bad][0][1, 2] = value
    if size is not None:
        out[size[0]] = (out[size[0]][0][:size[1]], out[size[0]][1][:size[1]])
    return out


@pytest.mark.parametrize("data, error, match", [
    (_batches(bad=4), ValueError, r"dtrain batch 4 X: contains NaN or inf"),
    (_batches(size=(2, 5)), ValueError, r"batch 2 has 5 samples, not 16"),
    ([(DATA["dtrain"][0][:16, :5], DATA["dtrain"][1][:16])], Exception,
     r"dtrain batch 0 X: expected shape \(m, 6\)"),
    ([(DATA["dtrain"][0][:16], DATA["dtrain"][1][:16, :1])], ValueError,
     r"dtrain batch 0 Y: labels of sample shape \(1,\)"),
    ([DATA["dtrain"][0][:16]] * 3, TypeError, r"batch 0 is not an \(X, Y\) pair"),
    ([], ValueError, r"data\['dtrain'\] yields no batch"),
])
def test_bad_batches_are_named(data, error, match):
    with pytest.raises(error, match=match):
        network.fit(NET, PARAMS, {"dtrain": data}, epochs=1, loss="CCE", eval_splits=())


def test_labels_out_of_range_are_named():
    data = _batches()
    data[3] = (data[3][0], data[3][1] * 2)
    with pytest.raises(ValueError, match=r"dtrain batch 3 Y: loss CCE needs labels in \[0, 1\]"):
        network.fit(NET, PARAMS, {"dtrain": data}, epochs=1, loss="CCE", eval_splits=())


def test_short_last_batch_is_dropped_with_a_warning():
    with pytest.warns(UserWarning, match=r"last batch \(5 samples, not 16\) was dropped"):
        network.fit(NET, PARAMS, {"dtrain": _batches(size=(5, 5))}, epochs=1, loss="CCE",
                    eval_splits=())


def test_one_shot_iterator_needs_steps_for_several_epochs():
    with pytest.raises(ValueError, match="one-shot iterator .* Stream\\(steps_per_epoch=N\\)"):
        network.fit(NET, PARAMS, {"dtrain": iter(_batches())}, epochs=2, loss="CCE")
    with pytest.raises(ValueError, match="cannot be read again to evaluate it"):
        network.fit(NET, PARAMS, {"dtrain": iter(_batches())}, epochs=1, loss="CCE")
    with pytest.raises(ValueError, match="ran out after 3 batches of an epoch of "
                                         "steps_per_epoch=6"):
        network.fit(NET, PARAMS, {"dtrain": iter(_batches(n=9))}, epochs=3, loss="CCE",
                    stream=Stream(steps_per_epoch=6), eval_splits=())


class _SameIterator:
    """An iterable whose ``__iter__`` returns one iterator each time (exhausted after a pass)."""

    def __init__(self, items):
        self.it = iter(items)

    def __iter__(self):
        return self.it


@pytest.mark.parametrize("evaluated", [True, False])
def test_an_iterable_that_yields_nothing_on_a_new_pass_is_named(evaluated):
    # evaluated: its evaluation pass finds it empty (was a TypeError from the metrics);
    # not evaluated: the second epoch did (was: epochs that trained on nothing, silently)
    data = {"dtrain": _SameIterator(_batches())}
    if not evaluated:
        data["dval"] = DATA["dval"]
    with pytest.raises(ValueError, match=r"data\['dtrain'\] yields no batch on a new pass: "
                                         r".*__iter__ must start a new pass"):
        network.fit(NET, PARAMS, data, epochs=1 if evaluated else 2, loss="CCE",
                    eval_splits=None if evaluated else ("dval",))


def test_unknown_length_with_a_schedule_that_needs_it():
    from epynn_jax import Schedule
    gen = (b for b in _batches())
    with pytest.raises(ValueError, match="does not say how many batches an epoch has"):
        network.fit(NET, PARAMS, {"dtrain": gen}, epochs=1, loss="CCE", eval_splits=(),
                    schedule=Schedule(schedule="exp_decay"))


@pytest.mark.parametrize("kw, match", [
    (dict(chunk_batches=0), "chunk_batches must be a positive int"),
    (dict(memory_budget=-1), "memory_budget must be a positive int"),
    (dict(prefetch=-1), "prefetch must be an int >= 0"),
    (dict(steps_per_epoch=1.5), "steps_per_epoch must be a positive int"),
])
def test_stream_options_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        Stream(**kw)


def test_stream_argument_is_checked():
    with pytest.raises(TypeError, match="stream must be a Stream, True or None, got 'yes'"):
        network.fit(NET, PARAMS, DATA, epochs=1, stream="yes")


def test_a_reader_error_reaches_the_caller_with_prefetch():
    def batches():
        yield from _batches(n=3)
        raise OSError("disk gone")
    with pytest.raises(OSError, match="disk gone"):
        network.fit(NET, PARAMS, {"dtrain": batches()}, epochs=1, loss="CCE", eval_splits=(),
                    stream=Stream(prefetch=2, chunk_batches=1))


def test_non_finite_step_names_the_batch():
    data = _batches()
    data[4][0][:] = 3e38  # finite input, the step overflows
    with pytest.raises(network.fitting.NonFiniteError, match="at epoch 0, batch 4") as info:
        network.fit(NET, PARAMS, {"dtrain": data}, epochs=1, loss="CCE", eval_splits=(),
                    stream=Stream(chunk_batches=2, prefetch=0))
    assert info.value.step == 4
    assert "last good chunk" in str(info.value)
    # err.params: the state after batches 0-3, finite
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(info.value.params))


# -- compiles and evaluation -----------------------------------------------------------


def test_at_most_two_chunk_programs_per_fit():
    net = network.build([layers.Dense(5, "relu"), layers.Dense(2, "softmax")], (6,))
    params = network.init(net, 0)
    with compiled() as names:
        network.fit(net, params, DATA, stream=Stream(chunk_batches=4), **KW)  # 4, 4, 1
    assert names.count("jit(train_chunk)") == 2, names
    with compiled() as names:  # another fit, another epoch count: nothing new
        network.fit(net, params, DATA, stream=Stream(chunk_batches=4), **{**KW, "epochs": 2})
    assert "jit(train_chunk)" not in names, names


def test_streamed_evaluation_equals_one_forward(x64):
    rng = np.random.default_rng(5)
    net = network.build([layers.Dense(3, "softmax")], (6,))
    params = network.init(net, 2)
    X, Y = rng.normal(size=(53, 6)), np.eye(3)[rng.integers(0, 3, 53)]
    names = ("accuracy", "CCE", "precision_macro", "fscore_macro")
    one = network.evaluate(net, params, jax.numpy.asarray(X), jax.numpy.asarray(Y), names,
                           chunk=10**6)
    src = streaming.ArraySource(net, "dval", X, Y, "CCE", 16)
    for chunk in (7, 53):  # 8 chunks, the last overlapping; one chunk
        got = streaming.evaluate_source(net, params, src, names, chunk)
        for name in names:
            np.testing.assert_allclose(got[name], one[name], rtol=1e-12)
    loader = [(X[i:i + 10], Y[i:i + 10]) for i in range(0, 53, 10)]  # a last batch of 3
    got = streaming.evaluate_source(
        net, params, streaming.BatchSource(net, "dval", loader, "CCE", None, 1), names)
    for name in names:
        np.testing.assert_allclose(got[name], one[name], rtol=1e-12)


def test_nested_lists_stream_like_arrays(in_memory):
    data = {s: (X.tolist(), Y.tolist()) for s, (X, Y) in DATA.items()}
    _bitwise(in_memory, network.fit(NET, PARAMS, data, stream=True, **KW))


def test_split_kinds():
    X, Y = DATA["dtrain"]
    assert not streaming.is_batch_iterable((X, Y))
    assert not streaming.is_batch_iterable(X)
    assert not streaming.is_batch_iterable((X.tolist(), Y.tolist()))
    assert streaming.is_batch_iterable([(X, Y), (X, Y)])
    assert streaming.is_batch_iterable(iter([(X, Y)]))
    assert not streaming.needs_stream((X, Y), jax.devices("cpu")[0])


SHRINK = """
import os, sys, numpy as np
from epynn_jax import layers, network
from epynn_jax.network.streaming import Stream
d = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.standard_normal((512, 16)).astype(np.float32)
np.save(f"{d}/X.npy", X)
np.save(f"{d}/Y.npy", np.eye(2, dtype=np.float32)[(X[:, 0] > 0).astype(int)])
X, Y = np.load(f"{d}/X.npy", mmap_mode="r"), np.load(f"{d}/Y.npy", mmap_mode="r")
net = network.build([layers.Dense(8, "relu"), layers.Dense(2, "softmax")], (16,))
def cut(epoch, history):
    if epoch == 1:
        os.truncate(f"{d}/X.npy", 1000)
try:
    # no reader thread: with one, the next epoch's chunk may be read between the check
    # and the cut (that race crashes, as docs/streaming.md says)
    network.fit(net, network.init(net, 0), {"dtrain": (X, Y)}, epochs=4, batch_size=32,
                loss="CCE", callbacks=[cut], stream=Stream(prefetch=0))
except ValueError as e:
    print("RAISED", e)
"""


def test_a_memory_mapped_file_cut_short_while_training_raises(tmp_path):
    """Reading a mapped file past its new end kills the process (SIGBUS, no exception):
    the file's size is checked before each chunk. In a subprocess, as it was a crash."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", SHRINK, str(tmp_path)], capture_output=True,
                         text=True, timeout=240, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert "RAISED dtrain" in out.stdout and "X.npy behind the memory-mapped data shrank " \
        "from" in out.stdout and "to 1000 bytes while training" in out.stdout, out.stdout
