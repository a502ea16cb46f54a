"""The order in which a streamed ``fit`` reads a loader: the same with the prefetch thread
as without it.

A loader that draws its shuffle from a random state (its own, or one shared with
another loader) gives batches that depend on the order of its passes. The reader
thread reads the next epoch's training pass ahead; with a loader evaluated after
each epoch it must not start that pass before the evaluation's, else the two draw
from the shared state in an order set by thread timing. Checked: the parameters of
``prefetch=2`` equal those of ``prefetch=0`` bitwise, run after run, with a loader
slow enough that the reader, left free, is surely ahead.
"""

from __future__ import annotations

import threading
import time

import chex
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.errors import TrainingInterrupted
from epynn_jax.network.streaming import Stream

NET = network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (3,))
PARAMS = network.init(NET, 0)


class Shuffled:
    """The docs' loader: a permutation of the whole set from ``rng`` on every pass, each
    batch read slowly (a few ms, as a loader reading files is)."""

    def __init__(self, X, Y, batch_size, rng):
        self.X, self.Y, self.batch_size, self.rng = X, Y, batch_size, rng

    def __len__(self):
        return len(self.X) // self.batch_size

    def __iter__(self):
        order = self.rng.permutation(len(self.X))
        for i in range(len(self)):
            time.sleep(0.002)
            rows = np.sort(order[i * self.batch_size:(i + 1) * self.batch_size])
            yield self.X[rows], self.Y[rows]


def _data(n=40):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[(X[:, 0] > 0).astype(int)]
    return X, Y


def _fit(prefetch, shared_dval, **kw):
    """A fit on a :class:`Shuffled` loader (seed 0), evaluated after each epoch; with
    ``shared_dval`` a second loader, drawing from the same ``rng``, is evaluated too."""
    X, Y = _data()
    rng = np.random.default_rng(0)
    data = {"dtrain": Shuffled(X[:32], Y[:32], 4, rng)}
    if shared_dval:
        data["dval"] = Shuffled(X[32:], Y[32:], 4, rng)
    return network.fit(NET, PARAMS, data, epochs=4, loss="CCE", key=0,
                       stream=Stream(prefetch=prefetch, chunk_batches=2), **kw)


@pytest.mark.parametrize("shared_dval", [False, True], ids=["dtrain", "dtrain+dval"])
def test_prefetch_reads_a_loader_in_the_order_of_no_prefetch(shared_dval):
    expected = _fit(0, shared_dval)
    for _ in range(3):
        got = _fit(2, shared_dval)
        chex.assert_trees_all_equal(got.params, expected.params)
        assert got.history == expected.history


def _readers():
    return [t for t in threading.enumerate() if t.name == "epynn_jax-stream" and t.is_alive()]


def test_a_fit_that_evaluates_no_loader_or_stops_early_ends():
    """Without a loader evaluated nothing waits; a fit stopped by a callback while the
    reader waits for the evaluation leaves no reader behind."""
    assert _fit(2, False, eval_splits=()).epochs == 4
    assert _fit(2, True, callbacks=[lambda epoch, history: epoch < 1]).epochs == 2
    assert not _readers()


class Failing(Shuffled):
    """A :class:`Shuffled` whose pass ``fail`` (0: the first) raises ``error``."""

    def __init__(self, *args, fail, error):
        super().__init__(*args)
        self.fail, self.error, self.passes = fail, error, 0

    def __iter__(self):
        self.passes += 1
        if self.passes - 1 == self.fail:
            raise self.error
        return super().__iter__()


@pytest.mark.parametrize("error, caught", [(OSError("disk gone"), OSError),
                                           (KeyboardInterrupt(), TrainingInterrupted)])
def test_an_evaluation_that_raises_releases_the_waiting_reader(error, caught):
    """Pass 0 trains epoch 0, pass 1 evaluates it and raises (Ctrl-C, or the loader's
    own error): the reader, waiting to start pass 2, is stopped, not left hanging."""
    X, Y = _data()
    loader = Failing(X[:32], Y[:32], 4, np.random.default_rng(0), fail=1, error=error)
    with pytest.raises(caught):
        network.fit(NET, PARAMS, {"dtrain": loader}, epochs=3, loss="CCE",
                    stream=Stream(prefetch=2, chunk_batches=1))
    assert loader.passes == 2  # the next training pass never started
    assert not _readers()
