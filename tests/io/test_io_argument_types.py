"""The io functions take the argument types ``fit`` takes: NumPy ints for ints, NumPy
scalars in a history, bytes paths (as ``os.open`` and ``read_format`` do)."""

from __future__ import annotations

import math
import os

import jax
import numpy as np
import optax
import pytest

from epynn_jax import layers, network
from epynn_jax.io import Checkpoints, load_checkpoint, load_model, save_checkpoint, save_model


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


def test_history_and_metadata_take_numpy_scalars(tmp_path, model):
    net, params = model
    history = {"loss": {"dtrain": [np.float32(0.5), np.int64(2), np.array(0.25),
                                   np.float32("nan"), np.float64("inf")]}}
    m = load_model(save_model(tmp_path / "m.epynn", net, params, history=history,
                              metadata={"lr": np.float32(0.5)}))
    values = m.history["loss"]["dtrain"]
    assert values[:3] == [0.5, 2, 0.25] and math.isnan(values[3]) and values[4] == math.inf
    assert m.metadata == {"lr": 0.5}
    # NumPy NaN is written as a Python NaN is
    python = load_model(save_model(tmp_path / "p.epynn", net, params,
                                   history={"loss": {"dtrain": [float("nan")]}}))
    assert math.isnan(python.history["loss"]["dtrain"][0])
    for bad in (np.complex64(1j), np.array([1.0]), object()):
        with pytest.raises(TypeError, match="save_model: history must be JSON-serializable"):
            save_model(tmp_path / "x.epynn", net, params, history={"loss": {"dtrain": [bad]}})
    assert not (tmp_path / "x.epynn").exists()


def test_bytes_paths_are_taken_as_str_paths(tmp_path, model):
    net, params = model
    path = os.fsencode(tmp_path / "m.epynn")
    assert save_model(path, net, params) == tmp_path / "m.epynn"
    assert load_model(path).net == net
    opt = optax.sgd(0.1)
    save_checkpoint(tmp_path / "last.epynn", net, params, opt_state=opt.init(params),
                    key=jax.random.key(1), epoch=1)
    assert load_checkpoint(os.fsencode(tmp_path)).epoch == 1
    assert Checkpoints(os.fsencode(tmp_path)).directory == tmp_path
    for call in (lambda: save_model(3, net, params), lambda: load_model(3)):
        with pytest.raises(TypeError, match="_model: path must be a str, bytes or os.PathLike"):
            call()


def test_a_count_the_loader_would_refuse_is_refused_when_saving(tmp_path):
    import jax

    from epynn_jax import layers, network
    from epynn_jax.io import save_model

    net = network.build([layers.Dense(2)], (3,))
    params = network.init(net, jax.random.key(0))
    for kw in ({"epoch": 2**63}, {"epoch": 1, "batch": 2**63}):
        name = list(kw)[-1]
        with pytest.raises(ValueError, match=f"{name} must be below 2\\*\\*63"):
            save_model(tmp_path / "m.epynn", net, params, **kw)
    assert not list(tmp_path.iterdir())
