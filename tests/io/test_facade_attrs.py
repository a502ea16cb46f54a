"""The facade's model files restore a custom layer's data attributes, never an attribute
named like a method or property of its class (which would hide it, and break predict)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.library import read_model
from epynn_jax.compat.commons.maths import relu, softmax
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.errors import ModelFileError
from tests.compat.numpy_layers import Take


class Knob(Take):
    """Take with a class-level data default (an instance value overrides it) and a property."""

    scale = 2.0

    @property
    def width(self) -> int:
        return self.k


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A facade model with a custom layer (layer 2) written to a file, and its inputs."""
    set_quiet(True)
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(24, 4)), rng.integers(0, 2, size=24)
    knob = Knob(3)
    knob.scale = 4.0
    model = EpyNN([Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=8), Dense(5, relu),
                   knob, Dense(2, softmax)], name="c")
    model.initialize(loss="MSE", seed=3, metrics=["accuracy"])
    path = tmp_path_factory.mktemp("facade") / "m.epynn"
    model.write(str(path))
    return path, X


def _with_attr(src, dst, name, value):
    """A copy of ``src`` whose custom layer has ``attrs[name] = value`` (only model.json
    changes, so every array's checksum still holds)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "model.json":
                doc = json.loads(data)
                doc["extras"]["epynn_jax.compat"]["layers"][2]["attrs"][name] = value
                data = json.dumps(doc).encode()
            zout.writestr(info.filename, data)
    return dst


def test_data_attributes_are_restored_over_class_defaults(written):
    path, X = written
    model = read_model(str(path), custom_layers={"Knob": Knob})
    layer = model.layers[2]
    assert (layer.k, layer.scale, layer.width) == (3, 4.0, 3)
    assert np.shape(model.predict(X[:3]).A) == (3, 2)


@pytest.mark.parametrize("name", ["forward", "update_shapes", "width", "mro"],
                         ids=["method", "inherited-method", "property", "metaclass-method"])
def test_an_attribute_naming_behaviour_of_the_class_is_refused(written, tmp_path, name):
    path, _ = written
    bad = _with_attr(path, tmp_path / "bad.epynn", name, 1)
    with pytest.raises(ModelFileError, match=rf"bad\.epynn: layer 2: attribute '{name}' names "
                                             r"a method or property of Knob"):
        read_model(str(bad), custom_layers={"Knob": Knob})
