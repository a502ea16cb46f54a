"""network.init: what it accepts as a key, and refusing parameters that cannot fit in memory."""

from __future__ import annotations

import math
import time

import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.layers import LayerError
from epynn_jax.network import model as model_mod


@pytest.fixture(scope="module")
def net():
    return network.build([layers.Dense(3, "relu"), layers.Dense(2, "softmax")], (4,))


def _equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 7, np.int64(7), np.uint32(3), -1])
def test_int_seed_is_the_key_of_that_seed(net, seed):
    got = network.init(net, seed)
    assert _equal(got, network.init(net, jax.random.key(int(seed))))
    assert got[0]["W"].shape == (4, 3)


def test_legacy_raw_key_is_accepted(net):
    assert _equal(network.init(net, jax.random.PRNGKey(5)),
                  network.init(net, jax.random.wrap_key_data(jax.random.PRNGKey(5))))


def test_init_under_jit_with_a_traced_key(net):
    got = jax.jit(lambda k: network.init(net, k))(jax.random.key(2))
    want = network.init(net, jax.random.key(2))  # compiled: equal up to float rounding
    assert all(np.allclose(x, y, rtol=1e-6) for x, y in zip(jax.tree.leaves(got),
                                                           jax.tree.leaves(want)))


@pytest.mark.parametrize("bad, match", [
    (0.5, "got float"),
    ("0", "got str"),
    (None, "got None"),
    (True, "got bool"),
    ([0, 1], "got list"),
    (np.zeros(2, np.float32), "float32"),
    (np.zeros(3, np.uint32), r"shape \(3,\)"),
    (jax.random.split(jax.random.key(0), 3), r"got a batch of keys of shape \(3,\)"),
])
def test_anything_else_is_refused_in_one_line(net, bad, match):
    with pytest.raises(TypeError, match=match) as err:
        network.init(net, bad)
    msg = str(err.value)
    assert msg.startswith("init: key must be") and "\n" not in msg
    assert "jax.random.key(seed)" in msg


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 2**70])
def test_seed_out_of_range_is_one_clear_line(net, seed):
    with pytest.raises(ValueError, match=rf"^init: seed {seed} is out of range .*2\*\*63 - 1\)$"):
        network.init(net, seed)
    assert network.init(net, 2**63 - 1)[0]["W"].shape == (4, 3)


# -- parameters that cannot fit --------------------------------------------------------------


def test_the_issue_layer_is_refused_before_allocating_naming_layer_and_size():
    """Dense(200000) on 30000 inputs: 24 GB of W (float32), refused against a 16 GB limit."""
    huge = network.build([layers.Dense(200_000)], (30_000,))
    start = time.perf_counter()
    with pytest.raises(LayerError) as err:
        network.init(huge, jax.random.key(0), max_bytes=16 * 10**9)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert "layer 0 (Dense)" in msg and "W (30000, 200000) float32" in msg
    assert "24.0 GB" in msg and "16.0 GB" in msg and "max_bytes" in msg
    assert "EPYNN_JAX_MAX_PARAM_BYTES" in msg and "\n" not in msg


def test_a_layer_beyond_any_memory_is_refused_by_default():
    """4 TB of weights: beyond the default device and the host (the automatic limit)."""
    huge = network.build([layers.Dense(1_000_000)], (1_000_000,))
    with pytest.raises(LayerError, match=r"layer 0 \(Dense\).*4\.0 TB.*available"):
        network.init(huge, 0)


def test_automatic_limit_comes_from_the_device_or_the_host(monkeypatch):
    limit, where = model_mod.memory_limit()
    assert limit is not None and limit > 0 and where
    monkeypatch.setattr(model_mod, "memory_limit", lambda: (1000, "the test's device"))
    small = network.build([layers.Dense(300)], (4,))  # W 4800 + b 1200 bytes
    with pytest.raises(LayerError, match=r"6\.0 kB.*1\.0 kB available on the test's device"):
        network.init(small, 0)


class _FakeGPU:
    platform, id, device_kind = "gpu", 0, "NVIDIA H200"

    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        if isinstance(self.stats, Exception):
            raise self.stats
        return self.stats


def test_a_device_that_reports_its_memory_gives_the_limit(monkeypatch):
    gpu = _FakeGPU({"bytes_limit": 140 * 10**9, "bytes_in_use": 10**9})
    monkeypatch.setattr(jax, "devices", lambda *a: [gpu])
    assert model_mod.memory_limit() == (139 * 10**9, "gpu:0 (NVIDIA H200)")
    for silent in ({}, None, RuntimeError("no stats here")):  # then the host's memory
        gpu.stats = silent
        limit, where = model_mod.memory_limit()
        assert where == "the host" and limit > 0


def test_total_over_the_limit_names_the_largest_layer():
    net = network.build([layers.Dense(100), layers.Dense(100), layers.Dense(2)], (100,))
    # each big layer: W 40000 + b 400 bytes; the last 808; all three: 81,608 bytes
    with pytest.raises(LayerError, match=r"all layers.*81\.6 kB.*largest: layer 0 \(Dense\)"):
        network.init(net, 0, max_bytes=50_000)
    assert len(network.init(net, 0, max_bytes=81_608)) == 3


def test_override_by_argument_and_environment(net, monkeypatch):
    with pytest.raises(LayerError, match="layer 0 \\(Dense\\)"):
        network.init(net, 0, max_bytes=10)
    monkeypatch.setenv("EPYNN_JAX_MAX_PARAM_BYTES", "10")
    with pytest.raises(LayerError, match="layer 0 \\(Dense\\)"):
        network.init(net, 0)
    assert len(network.init(net, 0, max_bytes=math.inf)) == 2  # the argument wins
    monkeypatch.setenv("EPYNN_JAX_MAX_PARAM_BYTES", "inf")
    huge = network.build([layers.Dense(200_000)], (30_000,))
    # check turned off: the estimate comes back instead of an error
    assert model_mod.check_param_memory(huge, jax.random.key(0)) == 30_000 * 200_000 * 4 + 800_000
    monkeypatch.setenv("EPYNN_JAX_MAX_PARAM_BYTES", "lots")
    with pytest.raises(ValueError, match="EPYNN_JAX_MAX_PARAM_BYTES"):
        network.init(net, 0)


@pytest.mark.parametrize("bad", [0, -5, "1e9", True, float("nan")])
def test_bad_max_bytes_is_refused(net, bad):
    with pytest.raises((TypeError, ValueError), match="max_bytes"):
        network.init(net, 0, max_bytes=bad)
