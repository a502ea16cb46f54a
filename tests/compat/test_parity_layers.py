"""Facade vs EpyNN 1.2.13 for RNN, LSTM, GRU, Convolution and Pooling (float64, 1e-6).

Same seed, same data: initial weights, batch order, per-epoch metrics,
trained weights and predictions must agree. Each test skips until its
functional layer is part of this build.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.compat import helpers

RNG = np.random.default_rng(4)
SEQ = RNG.normal(size=(36, 5, 3))
SEQ_Y = (SEQ[:, -1, 0] + SEQ[:, 0, 1] > 0).astype(int)
IMG = RNG.uniform(size=(30, 6, 6, 2))
IMG_Y = (IMG[:, :3, :3, 0].mean(axis=(1, 2)) > 0.5).astype(int)


def needs(*modules):
    missing = [m for m in modules if importlib.util.find_spec(f"epynn_jax.layers.{m}") is None]
    return pytest.mark.skipif(bool(missing), reason=f"functional layers not built: {missing}")


def _run_both(make, X, Y, **kw):
    kw = {"epochs": 3, "loss": "MSE", "seed": 5, "hpars": {"learning_rate": 0.05},
          "embedding_kw": {"relative_size": (2, 1, 0), "batch_size": 8, "Y_encode": True},
          "predict_X": X[:4], **kw}
    theirs = helpers.run(helpers.lib("epynn"), make, X, Y, **kw)
    ours = helpers.run(helpers.lib("epynn_jax.compat"), make, X, Y, **kw)
    helpers.assert_same(ours, theirs)


RECURRENT = [
    ("RNN", {}),                                     # clipping on by default
    ("RNN", {"sequences": True, "clip_gradients": False}),
    ("LSTM", {}),
    ("LSTM", {"sequences": True}),
    ("GRU", {}),
    ("GRU", {"sequences": True, "clip_gradients": True}),
]


@pytest.mark.parametrize("cls,kw", RECURRENT, ids=[f"{c}-{sorted(k)}" for c, k in RECURRENT])
def test_recurrent_parity(cls, kw, epynn, x64):
    pytest.importorskip(f"epynn_jax.layers.{cls.lower()}")

    def make(ns):
        layers = [getattr(ns, cls)(3, **kw)]
        if kw.get("sequences"):
            layers.append(ns.Flatten())
        return layers + [ns.Dense(2, ns.maths.softmax)]

    _run_both(make, SEQ, SEQ_Y, hpars={"learning_rate": 0.1, "softmax_temperature": 2})


@needs("convolution", "pooling")
@pytest.mark.parametrize("pool", ["max", "min"])
def test_convolution_pooling_parity(pool, epynn, x64):
    def make(ns):
        return [ns.Convolution(3, (2, 2), strides=(1, 1)),
                ns.Pooling((2, 2), pool=getattr(np, pool)),
                ns.Flatten(), ns.Dense(2, ns.maths.softmax)]

    _run_both(make, IMG, IMG_Y)


@needs("convolution")
def test_convolution_default_stride_is_the_filter(epynn, x64):
    def make(ns):
        return [ns.Convolution(2, 3, activate=ns.maths.tanh), ns.Flatten(), ns.Dense(1)]

    _run_both(make, IMG, IMG_Y, embedding_kw={"batch_size": 10})
