"""The io functions take the argument types ``fit`` takes: NumPy ints for ints."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from epynn_jax import layers, network
from epynn_jax.io import Checkpoints, load_model, save_checkpoint, save_model


@pytest.fixture(scope="module")
def model():
    net = network.build([layers.Dense(2)], (3,))
    return net, network.init(net, jax.random.key(0))


@pytest.mark.parametrize("name", ["every", "every_batches"])
def test_checkpoints_take_numpy_ints_as_python_ints(tmp_path, name):
    got = getattr(Checkpoints(tmp_path, **{name: np.int64(5)}), name)
    assert got == 5 and type(got) is int
    for bad in (True, 2.0, "2", 0, np.int64(0)):
        with pytest.raises(ValueError, match=f"Checkpoints: {name} must be a positive int"):
            Checkpoints(tmp_path, **{name: bad})


def test_checkpoint_epoch_and_batch_take_numpy_ints(tmp_path, model):
    net, params = model
    opt = optax.sgd(0.1)
    path = save_checkpoint(tmp_path / "c.epynn", net, params, opt_state=opt.init(params),
                           key=jax.random.key(1), epoch=np.int64(2), batch=np.uint8(3))
    m = load_model(path)
    assert (m.epoch, m.batch) == (2, 3) and type(m.epoch) is int
    for bad in (True, 2.0, "2", -1, np.int64(-1)):
        with pytest.raises(ValueError, match="save_model: epoch must be an int >= 0"):
            save_model(tmp_path / "x.epynn", net, params, epoch=bad)
        with pytest.raises(ValueError, match="save_model: batch must be an int >= 0"):
            save_model(tmp_path / "x.epynn", net, params, epoch=1, batch=bad)
