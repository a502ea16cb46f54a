"""Model files record the network's precision policy; files without one are full precision."""

from __future__ import annotations

import archive
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.errors import ModelFileError
from epynn_jax.io import Checkpoints, load_checkpoint, load_model, save_model
from epynn_jax.network.precision import Policy


def _net(policy):
    return network.build([layers.LSTM(3), layers.Dense(2, "softmax")], (4, 2), policy=policy)




@pytest.mark.parametrize("policy", [None, "bfloat16", "float16", "float32",
                                    Policy("bfloat16", "float32", None)])
def test_the_policy_round_trips(tmp_path, policy):
    net = _net(policy)
    params = network.init(net, 0)
    path = save_model(tmp_path / "m.epynn", net, params)
    doc, _ = archive.members(path)
    assert doc["policy"] == {"compute_dtype": net.policy.compute_dtype,
                             "param_dtype": net.policy.param_dtype,
                             "output_dtype": net.policy.output_dtype}
    m = load_model(path)
    assert m.net == net and m.net.policy == net.policy
    for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(m.params)):
        assert q.dtype == jnp.float32  # arrays are the full-precision parameters
        np.testing.assert_array_equal(p, q)


def test_the_default_policy_is_written_as_nulls(tmp_path):
    net = _net(None)
    doc, _ = archive.members(save_model(tmp_path / "m.epynn", net, network.init(net, 0)))
    assert doc["policy"] == {"compute_dtype": None, "param_dtype": None, "output_dtype": None}


def test_a_file_without_a_policy_is_full_precision(tmp_path):
    net = _net("bfloat16")
    doc, members = archive.members(save_model(tmp_path / "m.epynn", net, network.init(net, 0)))
    del doc["policy"]  # as written before policies existed
    m = load_model(archive.write(tmp_path / "old.epynn", doc, members))
    assert m.net.policy == Policy() and m.net.layers == net.layers
    doc["policy"] = None
    assert load_model(archive.write(tmp_path / "null.epynn", doc, members)).net.policy == Policy()


@pytest.mark.parametrize("policy,match", [
    ("bfloat16", "policy must be an object"),
    ({"compute_dtype": "bfloat16"}, "policy must be an object with the keys"),
    ({"compute_dtype": "int8", "param_dtype": None, "output_dtype": None},
     "compute_dtype must be null or one of"),
    ({"compute_dtype": None, "param_dtype": "bfloat16", "output_dtype": None},
     "param_dtype must be None .* full precision"),
    ({"compute_dtype": [1], "param_dtype": None, "output_dtype": None}, "compute_dtype must be"),
    ({"compute_dtype": None, "param_dtype": None, "output_dtype": None, "x": 1},
     "policy must be an object with the keys"),
])
def test_a_bad_policy_is_refused(tmp_path, policy, match):
    net = _net(None)
    doc, members = archive.members(save_model(tmp_path / "m.epynn", net, network.init(net, 0)))
    doc["policy"] = policy
    with pytest.raises(ModelFileError, match=match):
        load_model(archive.write(tmp_path / "bad.epynn", doc, members))


def test_fit_s_checkpoints_record_the_policy_it_trained_under(tmp_path):
    net = _net(None)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 4, 2)).astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)]
    data = {"dtrain": (X, Y)}
    result = network.fit(net, network.init(net, 0), data, epochs=2, loss="CCE",
                         checkpoints=Checkpoints(tmp_path, every=1), policy="bfloat16")
    ck = load_checkpoint(tmp_path)
    assert ck.net.policy == Policy("bfloat16") and ck.epoch == 2
    for p, q in zip(jax.tree.leaves(result.params), jax.tree.leaves(ck.params)):
        np.testing.assert_array_equal(p, q)
    # resuming continues under the checkpoint's network, or under another policy if asked
    more = network.fit(ck.net, None, data, epochs=3, loss="CCE", resume=ck)
    assert more.epochs == 3
    full = network.fit(net, None, data, epochs=3, loss="CCE", resume=ck, policy="float32")
    assert full.epochs == 3
