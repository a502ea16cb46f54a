"""Accelerator readiness: a compiled epoch moves nothing between host and device.

``jax.transfer_guard('disallow')`` raises on any implicit host<->device
transfer (it works on the CPU backend too), so an epoch that passes here keeps
its data, parameters and metrics on the device until ``fit`` fetches the
metrics at the epoch boundary.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from epynn_jax import Schedule, layers, network


@pytest.fixture(scope="module")
def setup():
    net = network.build([layers.Flatten(), layers.Dense(4, "relu"), layers.Dropout(0.5),
                         layers.Dense(2, "softmax")], (5,))
    params = network.init(net, jax.random.key(0))
    rng = np.random.default_rng(0)
    data = {"dtrain": (rng.random((20, 5)), np.eye(2)[rng.integers(0, 2, 20)]),
            "dval": (rng.random((8, 5)), np.eye(2)[rng.integers(0, 2, 8)])}
    splits = network.checks.check_data(net, data, "MSE")
    opt = network.epynn_sgd(Schedule(), 2, 5)
    state = network.TrainState(params, opt.init(params), jax.random.key(1))
    return net, opt, state, splits


def test_epoch_has_no_host_transfer(setup):
    net, opt, state, splits = setup
    with jax.transfer_guard("disallow"):
        for _ in range(2):  # the compiling call and a cached one
            state, costs, scores = network.run_epoch(net, opt.update, "MSE", ("accuracy", "MSE"), 4,
                                                      state, splits["dtrain"], splits)
    assert costs.shape == (5,)
    fetched = jax.device_get(scores)  # the one explicit transfer, at the epoch boundary
    assert set(fetched) == {"dtrain", "dval"}


def test_guard_is_active_on_this_backend():
    """The test above can fail: an implicit transfer under the guard raises here."""
    with jax.transfer_guard("disallow"), pytest.raises(Exception, match="[Dd]isallowed"):
        jax.numpy.asarray(np.ones(3))


def test_data_stays_float32_on_device(setup):
    _, _, state, splits = setup
    for X, Y in splits.values():
        assert X.dtype == np.float32 and Y.dtype == np.float32
        assert isinstance(X, jax.Array)
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(state.params))
