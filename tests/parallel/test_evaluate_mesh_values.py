"""``network.evaluate(..., mesh=)`` takes what ``fit`` takes (a Mesh, a list or an array of
devices) and refuses anything else by name, in memory and streamed, before tracing."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from tests.parallel.script import run_result


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    X, Y = rng.random((8, 3)), np.eye(2)[rng.integers(0, 2, 8)]
    net = network.build([layers.Dense(2, "softmax")], (3,))
    return net, network.init(net, jax.random.key(0)), X, Y


@pytest.mark.parametrize("stream", [None, True])
@pytest.mark.parametrize("devices", [list, tuple, np.array])
def test_a_list_of_devices_is_a_mesh(model, stream, devices):
    net, params, X, Y = model
    ref = network.evaluate(net, params, X, Y, ("accuracy", "MSE"), stream=stream)
    got = network.evaluate(net, params, X, Y, ("accuracy", "MSE"), stream=stream,
                           mesh=devices(jax.devices()))
    assert got.keys() == ref.keys()
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-6)


@pytest.mark.parametrize("stream", [None, True])
@pytest.mark.parametrize(("mesh", "error"), [
    ("nope", TypeError), (3, TypeError), ([], ValueError), (["cpu"], TypeError),
    (jax.sharding.Mesh(np.array(jax.devices()), ("batch",)), ValueError)])
def test_a_bad_mesh_is_refused_by_name(model, stream, mesh, error):
    net, params, X, Y = model
    with pytest.raises(error, match="mesh"):
        network.evaluate(net, params, X, Y, ("accuracy",), stream=stream, mesh=mesh)


SCRIPT = r"""
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, numpy as np
from epynn_jax import layers, network

rng = np.random.default_rng(0)
X, Y = rng.random((10, 3)), np.eye(2)[rng.integers(0, 2, 10)]
net = network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (3,))
params = network.init(net, jax.random.key(0))
names = ("accuracy", "fscore_macro", "MSE")
one = network.evaluate(net, params, X, Y, names)
out = {"devices": jax.device_count(), "one": {k: float(v) for k, v in one.items()}}
for how, stream in (("memory", None), ("stream", True)):
    got = network.evaluate(net, params, X, Y, names, chunk=4, mesh=jax.devices(),
                           stream=stream)
    out[how] = {k: float(v) for k, v in got.items()}
print("RESULT " + json.dumps(out))
"""


def test_a_list_of_two_devices_evaluates_as_one_device():
    out = run_result(SCRIPT)
    assert out["devices"] == 2
    for how in ("memory", "stream"):
        for name, value in out["one"].items():
            np.testing.assert_allclose(out[how][name], value, rtol=1e-5, err_msg=f"{how} {name}")
