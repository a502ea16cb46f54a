"""JAX arrays given to ``fit`` on two host devices: those on the default device are used
where they are, the others go through the host (as NumPy data does), so splits that the
caller committed to different devices still train, with the parameters of NumPy data.

Runs in a subprocess: the host-device count must be set before JAX initializes.
"""

from __future__ import annotations

from tests.parallel.script import run_result

SCRIPT = r"""
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from epynn_jax import Schedule, layers, network
from epynn_jax.network import checks

rng = np.random.default_rng(0)
X, Y = rng.standard_normal((16, 4, 2)), np.eye(2)[rng.integers(0, 2, 16)]
V, W = rng.standard_normal((8, 4, 2)), np.eye(2)[rng.integers(0, 2, 8)]
net = network.build([layers.Flatten(), layers.Dense(3, "relu"), layers.Dense(2, "softmax")],
                    (4, 2))
params = network.init(net, jax.random.key(0))
kw = dict(epochs=2, batch_size=4, key=1, loss="CCE", schedule=Schedule(learning_rate=0.1))
ref = network.fit(net, params, {"dtrain": (X, Y), "dval": (V, W)}, **kw)
d0, d1 = jax.devices()
put = lambda a, where: jax.device_put(jnp.asarray(a, jnp.float32), where)
mesh = Mesh(np.array(jax.devices()), ("data",))
cases = {
    "default device": {"dtrain": (put(X, d0), put(Y, d0)), "dval": (V, W)},
    "train on 1, val on 0": {"dtrain": (put(X, d1), put(Y, d1)),
                             "dval": (put(V, d0), put(W, d0))},
    "sharded": {"dtrain": tuple(put(a, NamedSharding(mesh, P("data"))) for a in (X, Y)),
                "dval": (put(V, d1), W)},
}
out = {}
for name, data in cases.items():
    got = network.fit(net, params, data, **kw)
    placed = checks.check_data(net, data, "CCE")
    out[name] = {
        "same_params": all(np.array_equal(a, b) for a, b in
                           zip(jax.tree.leaves(ref.params), jax.tree.leaves(got.params))),
        "same_history": got.history == ref.history,
        "kept": [placed[s][i] is data[s][i] for s in data for i in (0, 1)],
        "devices": sorted({str(d) for s in placed for a in placed[s] for d in a.devices()}),
    }
print("RESULT " + json.dumps(out))
"""


def test_jax_arrays_on_other_devices_go_through_the_host():
    out = run_result(SCRIPT)
    for name, r in out.items():
        assert r["same_params"] and r["same_history"], name
        assert r["devices"] == ["cpu:0"], (name, r["devices"])  # every split on one device
    assert out["default device"]["kept"] == [True, True, False, False]
    assert out["train on 1, val on 0"]["kept"] == [False, False, True, True]
    assert out["sharded"]["kept"] == [False, False, False, False]
