"""Class paths in a model file: the whole path is resolved and checked before anything is built.

A path ``module:QualName`` names a class only when the class found is defined there
(its own ``__module__`` and ``__qualname__``), in an allowed module, and is a layer (or,
inside a layer's fields, a dataclass). The qualname is never followed through module
attributes, so an allowed module cannot be used as a door to the rest of the process.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile

import jax._src.api
import pytest

from epynn_jax import layers, network
from epynn_jax.errors import ModelFileError
from epynn_jax.io import load_model, save_model


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    net = network.build([layers.Dense(3, "elu"), layers.Dense(2)], (4,))
    path = tmp_path_factory.mktemp("paths") / "good.epynn"
    return save_model(path, net, network.init(net, jax.random.key(0)))


def _with(good, dst, edit):
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    doc = json.loads(members["model.json"])
    edit(doc)
    members["model.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return dst


@pytest.fixture
def spy(monkeypatch):
    """Replace jax._src.api.RSpec (a frozen dataclass) by one that records its construction."""
    made = []

    @dataclasses.dataclass(frozen=True)
    class RSpec:
        idx: int = 0
        primal: bool = False

        def __post_init__(self):
            made.append(self)

    RSpec.__module__, RSpec.__qualname__ = "jax._src.api", "RSpec"
    monkeypatch.setattr(jax._src.api, "RSpec", RSpec)
    return made


THROUGH = "epynn_jax.maths.activations:jax._src.api.RSpec"


def test_the_issue_path_in_a_field_is_refused_without_constructing(good, tmp_path, spy):
    def edit(doc):
        doc["layers"][0]["fields"]["hpars"] = {"__dataclass__": THROUGH,
                                               "fields": {"idx": 1, "primal": True}}
    with pytest.raises(ModelFileError, match="layer 0.*class path .*RSpec") as err:
        load_model(_with(good, tmp_path / "bad.epynn", edit))
    assert "jax._src.api" in str(err.value)
    assert spy == []  # never constructed


def test_the_issue_path_as_a_layer_class_is_refused(good, tmp_path, spy):
    def edit(doc):
        doc["layers"][1] = {"class": THROUGH, "fields": {"idx": 1}}
    with pytest.raises(ModelFileError, match="layer 1.*class path"):
        load_model(_with(good, tmp_path / "bad.epynn", edit))
    assert spy == []


def test_every_path_is_checked_before_any_layer_is_constructed(good, tmp_path, spy, monkeypatch):
    """A bad path in the last layer stops the load before the first layer is made."""
    made = []
    real = layers.Dense.__post_init__

    def counting(self):
        made.append(self)
        real(self)

    monkeypatch.setattr(layers.Dense, "__post_init__", counting)

    def edit(doc):
        doc["layers"][1]["fields"]["hpars"] = {"__dataclass__": THROUGH, "fields": {}}
    with pytest.raises(ModelFileError, match="layer 1"):
        load_model(_with(good, tmp_path / "bad.epynn", edit))
    assert made == [] and spy == []


@pytest.mark.parametrize("path, match", [
    # a module attribute that is a module
    ("epynn_jax.layers.dense:jnp.ndarray", "class path"),
    # a re-export: the class is defined elsewhere (its own path is epynn_jax.layers.dense:Dense)
    ("epynn_jax.layers:Dense", "defined as 'epynn_jax.layers.dense:Dense'"),
    # a function, not a class
    ("epynn_jax.layers.dense:forward", "no class"),
    # an attribute that does not exist
    ("epynn_jax.layers.dense:Nope", "no class"),
    # a class of an allowed module that is not a layer
    ("epynn_jax.maths.activations:ActivationHPars", "not a layer class"),
])
def test_layer_class_paths_that_are_not_a_layer_defined_there(good, tmp_path, path, match):
    with pytest.raises(ModelFileError, match=match):
        load_model(_with(good, tmp_path / "bad.epynn",
                         lambda doc: doc["layers"][0].update({"class": path})))


def test_a_field_dataclass_must_be_a_dataclass_defined_in_an_allowed_module(good, tmp_path):
    def edit(doc):
        doc["layers"][0]["fields"]["hpars"] = {
            "__dataclass__": "epynn_jax.layers.dense:Dense", "fields": {"units": 2}}
    # a layer where a field dataclass is expected is still a dataclass: it builds, then the
    # layer refuses it as hpars or the stored fields do not match
    with pytest.raises(ModelFileError):
        load_model(_with(good, tmp_path / "bad.epynn", edit))

    def edit2(doc):
        doc["layers"][0]["fields"]["hpars"] = {
            "__dataclass__": "epynn_jax.layers.dense:jax.random.PRNGKey", "fields": {}}
    with pytest.raises(ModelFileError, match="class path"):
        load_model(_with(good, tmp_path / "bad2.epynn", edit2))


def test_valid_paths_still_load(good):
    m = load_model(good)
    assert [type(layer).__name__ for layer in m.net.layers] == ["Dense", "Dense"]
