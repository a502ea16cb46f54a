"""One small classification problem shared by the reliability tests (and their subprocess).

Every test that uses the same network, optimizer, batch size and data shapes
reuses one compiled epoch, which keeps the suite fast.
"""

from __future__ import annotations

import functools
import hashlib

import chex
import jax
import numpy as np

from epynn_jax import layers, network
from epynn_jax.maths.schedules import Schedule


def data() -> dict:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(44, 5)).astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[(X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)]
    return {"dtrain": (X[:30], Y[:30]), "dval": (X[30:], Y[30:])}


NET = network.build([layers.Dense(6, "relu"), layers.Dropout(0.2), layers.Dense(2, "softmax")],
                    (5,))
# exp_decay depends on the total epoch count: resuming must be told the same total.
KW = dict(epochs=6, batch_size=8, schedule=Schedule(0.05, "exp_decay"), loss="CCE",
          metrics=("accuracy",))


def params0():
    return network.init(NET, jax.random.key(1))


def train_key():
    return jax.random.key(2)


def digest(params) -> str:
    """sha256 over every parameter's bytes, in order."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        arr = np.asarray(leaf)
        h.update(str((arr.shape, arr.dtype)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def reference_run():
    """The uninterrupted run, computed once per process (test modules wrap it in a fixture;
    no conftest.py here, which would shadow tests/conftest.py for ``from conftest import``)."""
    return network.fit(NET, params0(), data(), key=train_key(), **KW)


def same_tree(a, b) -> bool:
    """Whether two pytrees are bitwise equal, dtypes included (PRNG keys by their key data);
    where they must be, tests call ``chex.assert_trees_all_equal(a, b, strict=True)``, whose
    error shows the difference."""
    try:
        chex.assert_trees_all_equal(a, b, strict=True)
    except AssertionError:
        return False
    return True


if __name__ == "__main__":  # used by test_determinism: train once, print the digest
    print(digest(reference_run().params))
