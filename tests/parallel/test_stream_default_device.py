"""A streamed ``fit``, ``predict`` and ``evaluate`` place their chunks on the caller's
default device, ``jax.default_device`` included: the reader thread does not see that
context (JAX's config contexts are per thread), so the device is read in the caller's
thread. Before, chunks read ahead went to device 0 whatever the context.

Runs in a subprocess: the host-device count must be set before JAX initializes.
"""

from __future__ import annotations

from tests.parallel.script import run_result

SCRIPT = r"""
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, numpy as np
from epynn_jax import layers, network
from epynn_jax.network import streaming

d1 = jax.devices()[1]
seen = []
put = streaming._put
def record(device, *arrays):
    seen.append(str(device))
    return put(device, *arrays)
streaming._put = record

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 5)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 64)]
net = network.build([layers.Dense(6, "relu"), layers.Dense(2, "softmax")], (5,))
params = network.init(net, 0)
kw = dict(epochs=3, batch_size=8, key=1, loss="CCE")
with jax.default_device(d1):
    got = network.fit(net, params, {"dtrain": (X, Y)}, stream=True, **kw)
    A = network.predict(net, got.params, X, chunk=16, stream=True)
    scores = network.evaluate(net, got.params, X, Y, ("accuracy",), chunk=16, stream=True)
want = network.fit(net, params, {"dtrain": (X, Y)}, **kw)
devices = {str(d) for leaf in jax.tree.leaves(got.params) for d in leaf.devices()}
same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got.params),
                                                 jax.tree.leaves(want.params)))
# an accelerator's branch (device_put by the reader): placed on d1, not committed there,
# so parameters committed to d0 while d1 is the default still train (a committed chunk
# made the compiled call refuse the mix of devices)
chunk = streaming._device_put(d1, X)[0]
streaming._put = lambda device, *arrays: (seen.append(str(device)),
                                          streaming._device_put(device, *arrays))[1]
on_d0 = jax.device_put(params, jax.devices()[0])
with jax.default_device(d1):
    mixed = network.fit(net, on_d0, {"dtrain": (X, Y)}, stream=True, **kw)
mixed_same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mixed.params),
                                                       jax.tree.leaves(want.params)))
print("RESULT " + json.dumps({"chunk_committed": bool(chunk.committed),
                              "chunk_on": [str(d) for d in chunk.devices()],
                              "mixed_same": bool(mixed_same),
                              "seen": sorted(set(seen)), "placed": len(seen),
                              "params_on": sorted(devices), "same": bool(same),
                              "predict": bool(np.allclose(A, network.predict(net, got.params, X))),
                              "accuracy": float(scores["accuracy"]), "d1": str(d1)}))
"""


def test_streamed_chunks_go_to_the_callers_default_device():
    r = run_result(SCRIPT)
    assert r["seen"] == [r["d1"]]
    # 3 epochs of 8 batches in chunks, evaluated once per epoch, predict and evaluate's
    # chunks: many placements, each on d1
    assert r["placed"] >= 3 + 4 + 4
    assert r["params_on"] == [r["d1"]] and r["same"] and r["predict"]
    assert 0.0 <= r["accuracy"] <= 1.0
    assert not r["chunk_committed"] and r["chunk_on"] == [r["d1"]] and r["mixed_same"]
