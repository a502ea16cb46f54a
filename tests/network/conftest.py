"""Fixtures shared by the network tests: a small classifier (Flatten, Dense(3, relu),
Dense(2, softmax) on (4, 2) samples) and its parameters. A module that defines its own
``net`` or ``params`` uses those instead."""

from __future__ import annotations

import jax
import pytest

from epynn_jax import layers, network


@pytest.fixture(scope="module")
def net():
    return network.build([layers.Flatten(), layers.Dense(3, "relu"),
                          layers.Dense(2, "softmax")], (4, 2))


@pytest.fixture(scope="module")
def params(net):
    return network.init(net, jax.random.key(0))
