"""Per-step keys are drawn only for networks with a layer that reads them (``uses_key``).

A layer says whether its ``forward`` reads its key when training; the default is True so
that a custom layer gets one. With no such layer, training traces no per-step keys, and
that changes nothing of what it computes.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from customlayers.scale import Scale

from epynn_jax import layers, network
from epynn_jax.layers.base import Layer
from epynn_jax.layers.template import Template
from epynn_jax.maths import prng

SEEN: list[tuple[str, bool]] = []  # (layer, key is None), recorded when traced to train


@dataclasses.dataclass(frozen=True)
class Probe(Template):
    """The identity that records, when traced to train, whether it was given a key, and
    adds a zero drawn from it (so the key is used)."""

    uses_key = True

    def forward(self, p, X, key=None, training=False):
        if training:
            SEEN.append((type(self).__name__, key is None))
            if key is not None:
                X = X + 0 * prng.uniform(key, X.shape[1:]).astype(X.dtype)
        return X, {"X": X, "A": X}


@dataclasses.dataclass(frozen=True)
class KeylessProbe(Probe):
    uses_key = False


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    return {"dtrain": (X, np.eye(2, dtype=np.float32)[(X.sum(1) > 0).astype(int)])}


def _fit(extra):
    net = network.build([*extra, layers.Dense(4, "tanh"), layers.Dense(2, "softmax")], (3,))
    params = network.init(net, 0)
    return network.fit(net, params, _data(), epochs=3, batch_size=8, loss="MSE", key=5)


def test_uses_keys_is_true_when_any_layer_reads_its_key():
    dense = layers.Dense(2).compute_shapes((3,))
    assert not network.Network((dense,)).uses_keys
    assert network.Network((layers.Dropout(0.5).compute_shapes((3,)), dense)).uses_keys
    assert network.Network((Probe().compute_shapes((3,)), dense)).uses_keys
    assert not network.Network((KeylessProbe().compute_shapes((3,)), dense)).uses_keys
    # a custom layer that says nothing is given keys
    assert "uses_key" not in vars(Scale) and Layer.uses_key is True
    assert network.Network((Scale().compute_shapes((3,)), dense)).uses_keys


def test_a_layer_that_reads_keys_gets_one_and_a_keyless_network_gets_none():
    SEEN.clear()
    _fit([Probe()])
    assert SEEN and all(not none for _, none in SEEN), SEEN
    SEEN.clear()
    _fit([KeylessProbe()])
    assert SEEN and all(none for _, none in SEEN), SEEN


def test_drawing_no_keys_changes_nothing_of_the_training():
    """The same Dense layers, trained with per-step keys drawn (a probe that reads them
    and adds zero) and without (a probe that reads none): the same shuffles, the same
    updates, bit for bit."""
    with_keys, without = _fit([Probe()]), _fit([KeylessProbe()])
    for a, b in zip(with_keys.params[1:], without.params[1:]):
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    assert [float(v) for v in with_keys.history["MSE"]["dtrain"]] == [
        float(v) for v in without.history["MSE"]["dtrain"]]
    assert bool((jax.random.key_data(with_keys.key) == jax.random.key_data(without.key)).all())
