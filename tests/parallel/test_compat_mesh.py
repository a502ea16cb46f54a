"""The facade's ``train(..., mesh=...)``: the core's data parallelism reaches EpyNN's objects.

Runs in a subprocess with two host devices (the device count must be set before JAX
initializes); the same model trained on one device and on two gives the same weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, jax, numpy as np
from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.maths import relu, softmax
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.flatten.models import Flatten
from epynn_jax.compat.network.models import EpyNN
set_quiet(True)
assert len(jax.devices()) == 2
rng = np.random.default_rng(0)
X = rng.normal(size=(64, 3, 2)); Y = (X[:, 0, 0] > 0).astype(int)

def trained(mesh):
    emb = Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=8)
    m = EpyNN([emb, Flatten(), Dense(4, relu), Dense(2, softmax)], name="mesh")
    m.initialize(loss="MSE", seed=3, se_hPars={"learning_rate": 0.05, "schedule": "steady"})
    m.train(3, init_logs=False, mesh=mesh)
    return m

one, two = trained(None), trained(jax.devices())
diff = max(float(np.max(np.abs(a.p[k] - b.p[k]))) for a, b in zip(one.layers, two.layers)
           for k in a.p)
moved = max(float(np.max(np.abs(v))) for v in two.layers[2].p.values())
print(json.dumps({"diff": diff, "moved": moved, "acc": two.metrics["accuracy"][0]}))
"""


def test_facade_trains_data_parallel_with_a_mesh():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", EPYNN_JAX_NO_CACHE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["moved"] > 0 and len(res["acc"]) == 3
    assert res["diff"] < 1e-5, res
