"""``predict`` and ``evaluate`` of data ``fit`` streams (a memory-mapped set, arrays too
large for the device, ``stream=True``): read, checked and placed a chunk at a time, with
the outputs and metrics of the in-memory calls; and the float16 range checked in every
streamed chunk (``fit`` too)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.network import streaming
from epynn_jax.network.streaming import Stream

N, WIDTH = 4096, 32
NET = network.build([layers.Dense(5, "relu"), layers.Dense(3, "softmax")], (WIDTH,))
PARAMS = network.init(NET, 4)
METRICS = ("accuracy", "CCE", "fscore_macro")


def _mapped(tmp_path, name, a):
    out = np.lib.format.open_memmap(tmp_path / f"{name}.npy", "w+", a.dtype, a.shape)
    out[:] = a
    out.flush()
    del out
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(N, WIDTH)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, N)]
    return X, Y


@pytest.fixture()
def mapped(arrays, tmp_path):
    return _mapped(tmp_path, "X", arrays[0]), _mapped(tmp_path, "Y", arrays[1])


def _numpy_forward(X):
    h = np.maximum(X.astype(np.float64) @ np.asarray(PARAMS[0]["W"], np.float64)
                   + PARAMS[0]["b"], 0)
    z = h @ np.asarray(PARAMS[1]["W"], np.float64) + PARAMS[1]["b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predict_of_a_memmap_streams_it_a_chunk_at_a_time(arrays, mapped, monkeypatch):
    X, _ = arrays
    Xm, _ = mapped
    budget = 64 * 2**10  # chunks in flight: (2 prefetched + 2) x rows x 128 B <= 64 KiB
    placed = []
    run = streaming.predict_jit
    monkeypatch.setattr(streaming, "predict_jit", lambda net, p, Xc, c: (
        placed.append(Xc.nbytes), run(net, p, Xc, c))[1])
    network.predict(NET, PARAMS, Xm, stream=Stream(memory_budget=budget))  # compiles
    placed.clear()
    tracemalloc.start()  # NumPy reports its buffers to tracemalloc
    try:
        A = network.predict(NET, PARAMS, Xm, stream=Stream(memory_budget=budget))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(A, np.ndarray) and A.shape == (N, 3)
    rows = budget // (WIDTH * 4 * 4)
    assert len(placed) == -(-N // rows) and max(placed) <= rows * WIDTH * 4
    # the output (48 KiB) and a few chunks, never the 512 KiB set
    assert peak < X.nbytes / 2, f"the host held {peak} bytes of a {X.nbytes}-byte set"
    np.testing.assert_allclose(A, _numpy_forward(X), rtol=1e-5, atol=1e-6)


def test_a_memmap_streams_by_itself_with_the_in_memory_output(arrays, mapped):
    A = network.predict(NET, PARAMS, mapped[0])  # no stream=: a memmap streams
    assert isinstance(A, np.ndarray)
    np.testing.assert_allclose(A, np.asarray(network.predict(NET, PARAMS, arrays[0])),
                               rtol=1e-6, atol=1e-7)
    forced = network.predict(NET, PARAMS, arrays[0][:50].tolist(), stream=True, chunk=7)
    np.testing.assert_allclose(forced, _numpy_forward(arrays[0][:50]), rtol=1e-5, atol=1e-6)


def test_evaluate_of_a_memmap_equals_the_in_memory_metrics(arrays, mapped, monkeypatch):
    chunks = []
    stats = streaming._chunk_statistics
    monkeypatch.setattr(streaming, "_chunk_statistics", lambda net, names, p, X, Y, mask: (
        chunks.append(X.shape[0]), stats(net, names, p, X, Y, mask))[1])
    streamed = network.evaluate(NET, PARAMS, *mapped, METRICS, chunk=1000)
    assert chunks == [1000] * 5  # 4,096 rows: 5 chunks, the last overlapping the one before
    in_memory = network.evaluate(NET, PARAMS, *arrays, METRICS)
    assert list(streamed) == list(METRICS)
    for name in METRICS:
        np.testing.assert_allclose(float(streamed[name]), float(in_memory[name]), rtol=1e-5)
    A = _numpy_forward(arrays[0])
    np.testing.assert_allclose(float(streamed["accuracy"]),
                               np.mean(A.argmax(1) == arrays[1].argmax(1)), rtol=1e-6)


def test_bad_streamed_data_is_named(arrays, tmp_path):
    X, Y = arrays
    bad = X.copy()
    bad[3000, 4] = np.nan
    with pytest.raises(ValueError, match=r"predict X samples .*contains NaN"):
        network.predict(NET, PARAMS, _mapped(tmp_path, "bad", bad), chunk=512)
    with pytest.raises(ValueError, match=r"X"):  # the shapes, before any row is read
        network.predict(NET, PARAMS, _mapped(tmp_path, "narrow", X[:, :7]))
    with pytest.raises(TypeError, match="predict: stream must be a Stream"):
        network.predict(NET, PARAMS, X, stream="yes")
    with pytest.raises(TypeError, match="evaluate: stream must be a Stream"):
        network.evaluate(NET, PARAMS, X, Y, METRICS, stream=1)
    labels = Y * 2  # out of CCE's [0, 1]
    with pytest.raises(ValueError, match="evaluate .*Y"):
        network.evaluate(NET, PARAMS, X, _mapped(tmp_path, "Y2", labels), METRICS)


def test_float16_range_is_checked_in_every_streamed_chunk(arrays, tmp_path):
    net = network.build([layers.Dense(3, "softmax")], (WIDTH,), "float16")
    params = network.init(net, 0)
    X, Y = arrays
    big = X.copy()
    big[4000, 0] = 1e5  # beyond float16's 65504, in the last chunk only
    Xm = _mapped(tmp_path, "big", big)
    with pytest.raises(ValueError, match="do not fit float16"):
        network.predict(net, params, Xm, chunk=1024)
    with pytest.raises(ValueError, match="do not fit float16"):
        network.evaluate(net, params, Xm, Y, ("accuracy",), chunk=1024)
    with pytest.raises(ValueError, match="do not fit float16"):
        network.fit(net, params, {"dtrain": (Xm, Y)}, epochs=1, batch_size=256, loss="CCE",
                    eval_splits=())


def test_a_split_of_three_arrays_is_named_as_not_a_pair(arrays):
    X, Y = arrays
    # was: "batch 0 is not an (X, Y) pair, got ndarray (map the loader's records ...)"
    with pytest.raises(TypeError, match=r"data\['dtrain'\] is a tuple of 3 arrays; a split is "
                                        r"a pair \(X, Y\)"):
        network.fit(NET, PARAMS, {"dtrain": (X[:40], Y[:40], Y[:40])}, epochs=1)


def test_arrays_larger_than_half_the_device_stream_unless_already_on_it(arrays, monkeypatch):
    import jax

    X, Y = arrays
    streamed = []
    source = streaming.evaluate_source
    monkeypatch.setattr(streaming, "evaluate_source", lambda *a, **k: (
        streamed.append(True), source(*a, **k))[1])
    monkeypatch.setattr(streaming, "device_memory", lambda device=None: 2**10)  # 1 KiB
    host = network.evaluate(NET, PARAMS, X, Y, METRICS)
    assert streamed == [True]
    A = network.predict(NET, PARAMS, X)
    assert isinstance(A, np.ndarray)  # streamed: on the host
    on_device = network.evaluate(NET, PARAMS, jax.device_put(X), jax.device_put(Y), METRICS)
    assert streamed == [True]  # a set already on the device is chunked there
    assert not isinstance(network.predict(NET, PARAMS, jax.device_put(X)), np.ndarray)
    for name in METRICS:
        np.testing.assert_allclose(float(host[name]), float(on_device[name]), rtol=1e-5)
