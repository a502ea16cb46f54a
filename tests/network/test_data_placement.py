"""How fit and predict take their data: one conversion into buffers of their own, JAX
arrays used where they are, values checked before anything is traced."""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import network
from epynn_jax.maths.schedules import Schedule
from epynn_jax.network import checks


def _XY(m=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 4, 2)), np.eye(2)[rng.integers(0, 2, m)]


def _fit(net, params, data, **kw):
    kw = {"epochs": 3, "batch_size": 4, "loss": "CCE", "key": 1,
          "schedule": Schedule(learning_rate=0.1), **kw}
    return network.fit(net, params, data, **kw)


def test_aligned_buffers():
    for shape, dtype in (((3, 5), np.float32), ((7,), np.float64), ((0, 4), np.float32)):
        a = checks.aligned(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.size == 0 or a.ctypes.data % checks.ALIGN == 0


@pytest.mark.parametrize("values, finite", [
    ([1.0, 2.0, -3.0], True),
    ([3e38] * 8, True),  # the float32 sum overflows: the exact test decides
    ([1.0, np.nan, 2.0], False),
    ([1.0, np.inf, -np.inf], False),
    ([-np.inf, 1.0], False),
])
def test_all_finite(values, finite):
    assert checks.all_finite(np.asarray(values, np.float32)) is finite


def test_fit_keeps_its_own_copy_of_numpy_data(net, params):
    """fit trains on what it was given when called: a callback that overwrites the
    caller's arrays in place (float32, aligned, so a CPU device could share them)
    changes nothing."""
    X, Y = _XY()
    X32 = checks.aligned(X.shape, np.float32)
    X32[...] = X
    expected = _fit(net, params, {"dtrain": (X32.copy(), Y)})

    def scribble(epoch, history):
        X32[...] = 0.0

    got = _fit(net, params, {"dtrain": (X32, Y)}, callbacks=[scribble])
    assert (X32 == 0).all()  # the callback did run
    for a, b in zip(jax.tree.leaves(expected.params), jax.tree.leaves(got.params)):
        np.testing.assert_array_equal(a, b)


def test_jax_arrays_are_used_where_they_are(net, params):
    X, Y = _XY()
    Xj, Yj = jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32)
    placed = checks.check_data(net, {"dtrain": (Xj, Yj)}, "CCE")["dtrain"]
    assert placed[0] is Xj and placed[1] is Yj
    from_numpy = _fit(net, params, {"dtrain": (X, Y), "dval": _XY(5, seed=1)})
    from_jax = _fit(net, params, {"dtrain": (Xj, Yj), "dval": _XY(5, seed=1)})
    for a, b in zip(jax.tree.leaves(from_numpy.params), jax.tree.leaves(from_jax.params)):
        np.testing.assert_array_equal(a, b)
    assert from_numpy.history == from_jax.history


def test_a_jax_array_is_checked_once(net, params, monkeypatch):
    """JAX arrays are immutable: fit sums one for finiteness the first time it sees it,
    not at every call; the record dies with the array (a weak reference)."""
    import gc
    import weakref

    X, Y = (jnp.asarray(a, jnp.float32) for a in _XY())
    sums = []
    real = checks.all_finite
    monkeypatch.setattr(checks, "all_finite", lambda a: sums.append(a.shape) or real(a))
    for _ in range(3):
        _fit(net, params, {"dtrain": (X, Y)}, epochs=1)
    # (the guard also reads the parameters after each call of epochs: other shapes)
    assert [s for s in sums if s in (X.shape, Y.shape)] == [X.shape, Y.shape]
    dead = jnp.asarray(_XY(12, seed=3)[0], jnp.float32)
    checks.as_floats([dead], ["X"])
    ref, address = weakref.ref(dead), id(dead)
    assert checks._known(dead)
    del dead
    gc.collect()
    assert ref() is None and checks._FINITE[address]() is None  # holds nothing alive
    # a NaN array made later is checked, whatever address it takes
    bad = jnp.full(X.shape, jnp.nan, jnp.float32)
    with pytest.raises(ValueError, match="dtrain X: contains NaN or inf"):
        _fit(net, params, {"dtrain": (bad, Y)})
    # only the last _FINITE_MAX arrays are remembered: the oldest go first
    many = [jnp.full((2,), float(i), jnp.float32) for i in range(checks._FINITE_MAX + 5)]
    checks.as_floats(many, ["m"] * len(many))
    assert len(checks._FINITE) == checks._FINITE_MAX
    assert checks._known(many[-1]) and not checks._known(many[0])


def test_memo_keeps_the_newest_at_a_reused_address():
    """An array remembered at the address of a dead one's entry is the newest entry, not
    the dead one's old place: it outlives the next evictions (in place, it went first; the
    placement test above then failed now and then, as addresses of earlier tests' dead
    arrays came back)."""
    memo = {}
    arrays = [jnp.full((1,), float(i), jnp.float32) for i in range(checks._FINITE_MAX + 2)]
    reused, others, later = arrays[0], arrays[1:-2], arrays[-2:]

    class Dead:
        pass

    dead = Dead()
    checks._remember(others[0], memo)
    memo[id(reused)] = weakref.ref(dead)  # the next oldest: a dead array at this address
    del dead
    for a in others[1:]:
        checks._remember(a, memo)
    checks._remember(reused, memo)
    for a in later:  # full: each evicts the oldest
        checks._remember(a, memo)
    assert len(memo) == checks._FINITE_MAX
    assert checks._known(reused, memo) and all(checks._known(a, memo) for a in later)
    assert not checks._known(others[0], memo) and not checks._known(others[1], memo)


def test_memo_filled_from_threads_at_once(monkeypatch):
    """Fits in threads remember arrays at once: two threads evicting the same oldest entry
    raised a KeyError (in 8 threads, switching every microsecond, it did within a few
    rounds)."""
    import sys
    import threading

    monkeypatch.setattr(checks, "_FINITE", {})
    arrays = [jnp.full((1,), float(i), jnp.float32) for i in range(4 * checks._FINITE_MAX)]
    errors = []

    def remember(k):
        try:
            for a in arrays[k::8]:
                checks._remember(a, checks._FINITE)
        except Exception as e:  # noqa: BLE001 (collected for the assert)
            errors.append(repr(e))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(10):
            checks._FINITE.clear()
            threads = [threading.Thread(target=remember, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(checks._FINITE) == checks._FINITE_MAX
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


@pytest.mark.parametrize("where", ["X", "Y"])
def test_non_finite_jax_array_is_named(net, params, where):
    X, Y = (jnp.asarray(a, jnp.float32) for a in _XY())
    bad = {"X": (X.at[3, 1, 0].set(jnp.nan), Y), "Y": (X, Y.at[2, 0].set(jnp.inf))}[where]
    with pytest.raises(ValueError, match=f"dval {where}: contains NaN or inf"):
        _fit(net, params, {"dtrain": (X, Y), "dval": bad})


def test_jax_array_of_another_dtype_is_converted(net, params):
    X, Y = _XY()
    Xi = jnp.asarray(np.round(X * 3), jnp.int32)
    out = checks.as_floats([Xi, Y], ["X", "Y"])
    assert all(a.dtype == jnp.float32 for a in out)
    np.testing.assert_array_equal(out[0], np.round(X * 3).astype(np.float32))


def test_the_failing_array_is_named_among_several():
    good = np.ones((3, 2))
    with pytest.raises(ValueError, match="third: contains NaN"):
        checks.as_floats([good, good, np.array([[1.0, np.nan]]), good],
                         ["first", "second", "third", "fourth"])
    with pytest.raises(TypeError, match="second: expected numeric data"):
        checks.as_floats([good, good.astype(str)], ["first", "second"])


def test_float64_beyond_float32_range_is_an_error():
    with pytest.raises(ValueError, match="big: contains NaN or inf values \\(after conversion "
                                         "to float32\\)"):
        checks.as_floats([np.array([1e39, 1.0])], ["big"])


def test_predict_takes_jax_and_numpy_alike(net, params):
    X, _ = _XY()
    a = network.predict(net, params, X)
    b = network.predict(net, params, jnp.asarray(X, jnp.float32))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="X: contains NaN"):
        network.predict(net, params, jnp.asarray(X, jnp.float32).at[0, 0, 0].set(jnp.nan))


def test_optimizer_initial_state_is_placed_once_and_never_a_tracer(params):
    opt = network.epynn_sgd(Schedule(learning_rate=0.1), 5, 3)
    traced = jax.jit(opt.init)(params)  # under a trace: not kept
    first = opt.init(params)
    assert not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(first))
    again = network.epynn_sgd(Schedule(learning_rate=0.1), 5, 3).init(params)
    for a, b, c in zip(jax.tree.leaves(first), jax.tree.leaves(again),
                       jax.tree.leaves(traced)):
        assert a is b  # the same immutable arrays, not placed again
        np.testing.assert_array_equal(a, c)
    other = network.epynn_sgd(Schedule(learning_rate=0.2), 5, 3).init(params)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first),
                                                        jax.tree.leaves(other)))


def test_the_same_optimizer_is_built_once_and_bad_epochs_are_refused():
    """fit builds its optimizer at every call: equal arguments give the same object."""
    a = network.epynn_sgd(Schedule(learning_rate=0.1), 5, 3)
    assert network.epynn_sgd(Schedule(learning_rate=0.1), 5, 3) is a
    assert network.epynn_sgd(Schedule(learning_rate=0.1), 6, 3) is not a
    assert network.epynn_sgd(Schedule(learning_rate=0.1, schedule="exp_decay"), 5, 3) is not a
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="epochs must be >= 1"):
            network.epynn_sgd(Schedule(), bad, 3)
