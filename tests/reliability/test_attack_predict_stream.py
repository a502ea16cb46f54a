"""Attacks on the streamed ``predict`` and ``evaluate`` (a memory-mapped X, ``stream=``):
transformations of the parameters, and files changed while they are read."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from epynn_jax import layers, network

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
