"""Every layer class is hashable, equal layers hash equal, and layers pass through jit as static."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

import epynn_jax.compat._modelfile  # noqa: F401  (the facade's model-file slot layer)
import epynn_jax.compat._traced  # noqa: F401  (the facade's traced custom-layer adapter)
import epynn_jax.layers  # noqa: F401  (registers the built-in layers)
from epynn_jax.layers.base import Layer, LayerError


def _all_layer_classes():
    """The library's layer classes (not those other tests define in this process, some
    broken on purpose)."""
    seen, todo = [], list(Layer.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return sorted((c for c in seen if c.__module__.startswith("epynn_jax.")),
                  key=lambda c: c.__name__)


# Sample shapes tried in turn until the layer accepts one (dense, sequence, image inputs).
SHAPES = [(6,), (5, 3), (8, 8, 2)]


# Layers whose fields have no valid defaults: the arguments to make one.
ARGS = {"CustomLayerSlot": {"layer_class": "pkg.mod:MyLayer"}}


def _make(cls):
    return cls(**ARGS.get(cls.__name__, {}))


def _built(cls):
    layer = _make(cls)
    for shape in SHAPES:
        try:
            return layer.compute_shapes(shape)
        except (LayerError, ValueError):
            continue
    pytest.fail(f"{cls.__name__} accepts none of the sample shapes {SHAPES}")


CLASSES = _all_layer_classes()


def test_the_core_layers_are_found():
    names = {c.__name__ for c in CLASSES}
    assert {"Dense", "Dropout", "Embedding", "Flatten", "Template"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_hashable_and_equal(cls):
    a, b = _make(cls), _make(cls)
    assert a == b and hash(a) == hash(b)
    built_a, built_b = _built(cls), _built(cls)
    assert built_a == built_b and hash(built_a) == hash(built_b)
    assert built_a != a  # the input shape is part of the identity
    assert {built_a: 1}[built_b] == 1
    # Frozen: no field can be reassigned.
    field = dataclasses.fields(a)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(a, field, getattr(a, field))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_static_through_jit(cls):
    """A layer is a static pytree node: jit caches on its value, no leaves are traced."""
    traces = []

    @jax.jit
    def f(layer, x):
        traces.append(layer)
        return x * 2

    layer = _built(cls)
    assert jax.tree_util.tree_leaves(layer) == []
    x = jnp.ones(3)
    f(layer, x)
    f(_built(cls), x)          # equal, distinct object: no retrace
    assert len(traces) == 1
    assert traces[0] == layer  # the layer itself, not a tracer
    f(_make(cls), x)           # a different (unbuilt) layer: one more trace
    assert len(traces) == 2


def test_different_hyperparameters_hash_differently():
    from epynn_jax.layers import Dense, Dropout

    assert Dense(3, "relu") != Dense(3, "tanh")
    assert hash(Dense(3, "relu")) != hash(Dense(4, "relu"))
    assert Dropout(0.5, axis=1) == Dropout(0.5, axis=(1,))


def test_network_is_static_and_hashable():
    from epynn_jax import network
    from epynn_jax.layers import Dense, Flatten

    n1 = network.build([Flatten(), Dense(2, "softmax")], (3, 2))
    n2 = network.build([Flatten(), Dense(2, "softmax")], (3, 2))
    assert n1 == n2 and hash(n1) == hash(n2)
    assert jax.tree_util.tree_leaves(n1) == []
