"""``network._gc.paused``: the cyclic collector is off while ``fit``'s checks and compiled
calls run (their tracing triggers full collections that free nothing) and always
back on afterwards, whatever happened inside; a user's callback runs with it on."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.network import _gc

NET = network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (3,))


def _data(n=16):
    rng = np.random.default_rng(0)
    return {"dtrain": (rng.standard_normal((n, 3)), np.eye(2)[rng.integers(0, 2, n)])}


def test_paused_restores_the_collector_as_it_was():
    assert gc.isenabled()
    with _gc.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), _gc.paused():
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the caller had it off: left off
    finally:
        gc.enable()


def test_fit_pauses_the_collector_but_not_for_callbacks():
    seen = []
    real = network.epoch.run_epochs

    def watched(*args, **kw):
        seen.append(("epochs", gc.isenabled()))
        return real(*args, **kw)

    params = network.init(NET, 0)
    assert gc.isenabled()
    network.epoch.run_epochs = watched
    try:
        network.fit(NET, params, _data(), epochs=2, batch_size=4,
                    callbacks=[lambda e, h: seen.append(("callback", gc.isenabled()))])
    finally:
        network.epoch.run_epochs = real
    assert seen == [("epochs", False), ("callback", True)] * 2
    assert gc.isenabled()


def test_a_refused_fit_leaves_the_collector_on():
    params = network.init(NET, 0)
    with pytest.raises(ValueError, match="batch_size"):
        network.fit(NET, params, _data(), epochs=1, batch_size=-1)
    assert gc.isenabled()
    with pytest.raises(ValueError):
        network.predict(NET, params, np.full((2, 3), np.nan))
    assert gc.isenabled()
