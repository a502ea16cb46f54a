"""A layer's functions called directly, outside a network, with an input that does not
fit: a LayerError naming the layer, not a JAX error from deep inside its math.

The recurrent layers have had these checks from the start (``check_bad_input`` in
``recurrent_oracle.py``); these tests hold the six other built-in layers to the same.
A hand-made :class:`~epynn_jax.network.model.Network` whose layers do not chain is
refused when made.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from epynn_jax import layers, network
from epynn_jax.layers.base import LayerError, apply

# (layer, sample shape it is built for, a sample shape that does not fit it)
CASES = {
    "Dense": (layers.Dense(3), (4,), (5,)),
    "Convolution": (layers.Convolution(2, 2), (5, 5, 1), (5, 5, 2)),
    "Pooling": (layers.Pooling(2), (4, 4, 1), (6, 4, 1)),
    "Flatten": (layers.Flatten(), (3, 2), (2, 3)),
    "Dropout": (layers.Dropout(0.5), (4,), (4, 1)),
    "Embedding": (layers.Embedding(), (4,), (3,)),
    "Template": (layers.Template(), (4,), (2, 2)),
}


def _built(name: str):
    layer, shape, wrong = CASES[name]
    layer = layer.compute_shapes(shape)
    return layer, layer.initialize_parameters(jax.random.key(0)), shape, wrong


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_names_the_layer_for_an_input_of_another_shape(name):
    layer, p, shape, wrong = _built(name)
    for X in (jnp.ones((2, *wrong)), jnp.ones(shape)):  # another shape; no batch axis
        with pytest.raises(LayerError, match=rf"{name}: forward's X must have shape \(m, "):
            layer.forward(p, X)
        with pytest.raises(LayerError, match=rf"{name}: forward's X must have shape"):
            apply(layer, p, X)
    with pytest.raises(LayerError, match=rf"{name}: forward's X must be an array"):
        layer.forward(p, [[1.0] * 4])
    A, _ = layer.forward(p, jnp.ones((2, *shape)))  # the shape it was built for runs
    assert A.shape[0] == 2


@pytest.mark.parametrize("name", sorted(CASES))
def test_backward_names_the_layer_for_a_dA_not_of_the_output_shape(name):
    layer, p, shape, _ = _built(name)
    A, fc = layer.forward(p, jnp.ones((2, *shape)))
    for dA in (jnp.ones((3, *A.shape[1:])), jnp.ones((2, A.shape[-1] + 1)), 1.0):
        with pytest.raises(LayerError, match=rf"{name}: backward's dA must have the shape "
                                             rf"of the output A, \({A.shape[0]}, "):
            layer.backward(p, fc, dA)
    dX, _ = layer.backward(p, fc, jnp.ones_like(A))
    assert dX.shape == (2, *shape)


def test_the_checks_hold_under_jit_before_any_compilation():
    layer, p, _, wrong = _built("Dense")
    with pytest.raises(LayerError, match=r"Dense: forward's X must have shape \(m, 4\)"):
        jax.jit(layer.forward)(p, jnp.ones((2, *wrong)))


def test_a_network_of_layers_built_apart_must_chain():
    first = layers.Dense(3).compute_shapes((4,))
    with pytest.raises(LayerError, match=r"Network: layer 1 \(Dense\) was built for samples "
                                         r"of shape \(5,\), but layer 0 \(Dense\) outputs "
                                         r"\(3,\)"):
        network.Network((first, layers.Dense(2).compute_shapes((5,))))
    net = network.Network((first, layers.Dense(2).compute_shapes((3,))))
    assert net.output_shape == (2,)
    assert network.build([layers.Dense(3), layers.Dense(2)], (4,)) == net
