"""Attacks on the streamed ``predict`` and ``evaluate`` (a memory-mapped X, ``stream=``):
transformations of the parameters, and files changed while they are read."""

from __future__ import annotations

import gc
import os
import threading

import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.network import streaming
from epynn_jax.network.streaming import Stream

NET = network.build([layers.Dense(4, "relu"), layers.Dense(3, "softmax")], (6,))
PARAMS = network.init(NET, 1)
RNG = np.random.default_rng(5)
X = RNG.normal(size=(10, 6)).astype(np.float32)


def _mapped(path, a):
    np.save(path, a)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("how", ["memmap", "stream=True"])
def test_predict_under_jit_and_grad_of_the_params_is_not_streamed(tmp_path, how):
    # A traced output cannot be written into the host array a streamed predict fills:
    # jax.jit (or grad) over the parameters with a memory-mapped X raised
    # TracerArrayConversionError; X is read whole then, as before streaming.
    Xm = _mapped(tmp_path / "X.npy", X)
    kwargs = {"stream": True} if how == "stream=True" else {}
    data = Xm if how == "memmap" else X
    expected = np.asarray(network.predict(NET, PARAMS, X))
    A = jax.jit(lambda p: network.predict(NET, p, data, **kwargs))(PARAMS)
    np.testing.assert_allclose(np.asarray(A), expected, rtol=1e-6, atol=1e-7)
    grads = jax.grad(lambda p: network.predict(NET, p, data, **kwargs)[:, 0].sum())(PARAMS)
    assert grads[0]["W"].shape == (6, 4) and np.isfinite(np.asarray(grads[0]["W"])).all()


def _after_first_chunk(monkeypatch, action):
    """Run ``action()`` once the first chunk of a stream was read (no reader thread)."""
    read, done = streaming._read, []

    def reading(a, rows, where):
        out = read(a, rows, where)
        if not done:
            done.append(action())
        return out

    monkeypatch.setattr(streaming, "_read", reading)


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_a_file_replaced_or_deleted_at_its_path_is_still_read_whole(tmp_path, monkeypatch,
                                                                    change):
    # The mapping holds the file it mapped: os.replace of a smaller file onto the path (an
    # atomic save of new data) or deleting the path leaves it whole. The check read the
    # size at the path and stopped the stream ("shrank", "cannot be read any more").
    path = tmp_path / "X.npy"
    Xm = _mapped(path, X)
    expected = np.asarray(network.predict(NET, PARAMS, X))

    def act():
        if change == "deleted":
            path.unlink()
        else:
            np.save(tmp_path / "new.npy", X[:2])
            (tmp_path / "new.npy").replace(path)

    _after_first_chunk(monkeypatch, act)
    A = network.predict(NET, PARAMS, Xm, chunk=4, stream=Stream(prefetch=0))
    np.testing.assert_allclose(A, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("call", ["predict", "evaluate"])
def test_a_file_cut_in_place_while_predict_or_evaluate_reads_it_is_named(tmp_path,
                                                                        monkeypatch, call):
    # Cut by 4 bytes: its last page stays mapped, so even a missed check reads zeros, not
    # past the end (SIGBUS). The error names the call reading it, not "training".
    path = tmp_path / "X.npy"
    Xm = _mapped(path, X)
    Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, len(X))]
    _after_first_chunk(monkeypatch, lambda: os.truncate(path, os.path.getsize(path) - 4))
    with pytest.raises(ValueError, match=rf"shrank from \d+ to \d+ bytes while {call} read it"):
        if call == "predict":
            network.predict(NET, PARAMS, Xm, chunk=4, stream=Stream(prefetch=0))
        else:
            network.evaluate(NET, PARAMS, Xm, Y, ("accuracy",), chunk=4)


class _Rows:
    """An array-like read a slice of rows at a time (as an HDF5 or Zarr dataset is), which
    records whether Python's cyclic garbage collector was on at each read."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.collector_on = a, a.shape, a.dtype, []

        self.threads: list[str] = []

    def __getitem__(self, rows):
        self.collector_on.append(gc.isenabled())
        self.threads.append(threading.current_thread().name)
        return self.a[rows]


@pytest.mark.parametrize("call", ["predict", "evaluate"])
def test_a_stream_reads_the_callers_data_with_the_collector_on(call):
    # The collector is paused around a compiled call (its trace), never around the caller's
    # data, which is read for as long as the set takes: a streamed predict or evaluate
    # kept it off in the whole process for the whole stream.
    assert gc.isenabled()
    Xr = _Rows(X)
    Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, len(X))]
    if call == "predict":
        A = network.predict(NET, PARAMS, Xr, chunk=4, stream=Stream(prefetch=0))
        np.testing.assert_allclose(A, np.asarray(network.predict(NET, PARAMS, X)),
                                   rtol=1e-6, atol=1e-7)
    else:
        got = network.evaluate(NET, PARAMS, Xr, Y, ("accuracy", "CCE"), chunk=4,
                                stream=Stream(prefetch=0))
        want = network.evaluate(NET, PARAMS, X, Y, ("accuracy", "CCE"))
        for name in want:
            np.testing.assert_allclose(float(got[name]), float(want[name]), rtol=1e-6)
    assert Xr.collector_on == [True] * 3 and gc.isenabled()


def test_evaluate_reads_ahead_and_within_the_budget_its_stream_gives():
    # docs/streaming.md: a Stream gives evaluate its prefetch and memory_budget, as it
    # gives predict. evaluate read every chunk in the caller's thread, of eval_chunk rows
    # whatever the budget (here: one read of all 10 rows, not 4 of 3).
    Xr = _Rows(X)
    Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, len(X))]
    row = (6 + 3) * 4 * (2 + 2)  # X and Y bytes of a row, times the chunks in flight
    got = network.evaluate(NET, PARAMS, Xr, Y, ("accuracy", "CCE"),
                           stream=Stream(prefetch=2, memory_budget=3 * row))
    want = network.evaluate(NET, PARAMS, X, Y, ("accuracy", "CCE"))
    for name in want:
        np.testing.assert_allclose(float(got[name]), float(want[name]), rtol=1e-6)
    # (the first chunk is read in the caller's thread, which waits for it anyway)
    assert len(Xr.threads) == 4 and Xr.threads[0] == threading.current_thread().name
    assert set(Xr.threads[1:]) == {"epynn_jax-stream"}
    assert "epynn_jax-stream" not in {t.name for t in threading.enumerate()}  # stopped
