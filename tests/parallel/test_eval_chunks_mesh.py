"""Chunked evaluation on a mesh of 4 host devices: the metrics of one device, and each
device evaluates its own rows (no all-gather, no permute of the evaluated sets).

Runs in a subprocess: the host-device count must be set before JAX initializes.
"""

from __future__ import annotations

import numpy as np

from tests.parallel.script import run_result

SCRIPT = r"""
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, numpy as np
from epynn_jax import Schedule, layers, network
from epynn_jax.network import parallel

rng = np.random.default_rng(0)
# 96 and 40 samples: sharded over the 4 devices; 42: replicated (not divisible)
data = {"dtrain": (rng.random((96, 12, 3)), np.eye(2)[rng.integers(0, 2, 96)]),
        "dval": (rng.random((40, 12, 3)), np.eye(2)[rng.integers(0, 2, 40)]),
        "dodd": (rng.random((42, 12, 3)), np.eye(2)[rng.integers(0, 2, 42)])}
net = network.build([layers.Flatten(), layers.Dense(16, "relu"), layers.Dense(2, "softmax")],
                    (12, 3))
params = network.init(net, jax.random.key(0))
kw = dict(epochs=2, batch_size=16, key=1, metrics=("accuracy", "fscore_macro", "MSE"))
chunked = network.fit(net, params, data, mesh=jax.devices(), eval_chunk=8, **kw)
one = network.fit(net, params, data, **kw)

mesh = parallel.as_mesh(jax.devices())
splits = network.checks.check_data(net, data, "MSE")
opt = network.epynn_sgd(Schedule(), 2, 6)
state, placed = parallel.place(mesh, network.TrainState(params, opt.init(params),
                                                        jax.random.key(1)), splits, "dtrain")
hlo = network.run_epoch.lower(net, opt.update, "MSE", ("accuracy",), 16, state,
                              placed["dtrain"], {"dval": placed["dval"]}, True, mesh=mesh,
                              eval_chunk=8).compile().as_text()
print("RESULT " + json.dumps({
    "devices": jax.device_count(), "chunked": chunked.history, "one": one.history,
    "all_gather": hlo.count("all-gather"), "permute": hlo.count("collective-permute")}))
"""


def test_chunked_evaluation_on_four_devices_matches_one_device():
    out = run_result(SCRIPT)
    assert out["devices"] == 4
    for metric, splits in out["one"].items():
        assert set(splits) == {"dtrain", "dval", "dodd"}
        for split, values in splits.items():
            np.testing.assert_allclose(out["chunked"][metric][split], values, rtol=1e-5,
                                       err_msg=f"{metric} on {split}")
    assert out["all_gather"] == 0 and out["permute"] == 0
