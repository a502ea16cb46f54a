"""RNN: hand-written BPTT vs jax.grad and finite differences, EpyNN 1.2.13 parity
(caches, gradients, clipping, SGD training), long sequences, and input errors."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import recurrent_oracle as oracle

from epynn_jax import testing
from epynn_jax.layers import RNN
from epynn_jax.maths import activations, initializers

SHAPE = (5, 2)  # (steps, features); batch 3, as check_layer uses, so compilations are shared


@pytest.fixture(scope="module")
def E():
    """EpyNN's RNN class and maths module."""
    from conftest import load_epynn  # noqa: PLC0415

    load_epynn()
    from epynn.commons import maths  # noqa: PLC0415
    from epynn.rnn.models import RNN as ERNN  # noqa: PLC0415

    return ERNN, maths


@pytest.mark.parametrize("sequences", [False, True])
def test_backward_matches_autodiff_and_finite_differences(sequences):
    report = testing.check_layer(RNN(3, clip_gradients=False, sequences=sequences), SHAPE)
    report.assert_ok()
    assert {c.key for c in report.checks} == {"dX", "dU", "dV", "db"}


@pytest.mark.parametrize("activate", ["relu", "sigmoid"])
def test_other_activations_backward(activate):
    testing.check_layer(RNN(2, activate, clip_gradients=False), (3, 2)).assert_ok()


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("sequences", [False, True])
def test_parity_with_epynn(x64, E, sequences, clip):
    ERNN, _ = E
    layer, p, X, dA = oracle.setup(RNN(3, clip_gradients=clip, sequences=sequences), SHAPE)
    their = oracle.epynn_layer(ERNN, p, unit_cells=3, clip_gradients=clip, sequences=sequences)
    oracle.check_parity(layer, p, X, dA, their)


@pytest.mark.parametrize("sequences", [False, True])
def test_clipping_is_epynns_rule(x64, sequences):
    layer, p, X, dA = oracle.setup(RNN(3, clip_gradients=False, sequences=sequences), SHAPE)
    clipped = dataclasses.replace(layer, clip_gradients=True)
    g = oracle.run_ours(layer, p, X, dA)[-1]
    gc = oracle.run_ours(clipped, p, X, dA)[-1]
    expected = oracle.clip_formula(g)
    norm = np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in g.values()))
    assert norm > 0.25  # the rule fires on this draw
    for k in g:
        oracle.close(gc[k], expected[k], f"clipped {k}", rtol=1e-12)
    # Small gradients (norm < 0.25) are left alone.
    g_small = oracle.run_ours(clipped, p, X, dA * 1e-6)[-1]
    g_ref = oracle.run_ours(layer, p, X, dA * 1e-6)[-1]
    for k in g:
        np.testing.assert_array_equal(np.asarray(g_small[k]), np.asarray(g_ref[k]))


@pytest.mark.parametrize("sequences,clip", [(False, True), (True, False)])
def test_sgd_training_parity_with_epynn(x64, E, epynn, sequences, clip):
    ERNN, _ = E
    layer, p, X, _ = oracle.setup(RNN(3, clip_gradients=clip, sequences=sequences), SHAPE)
    their = oracle.epynn_layer(ERNN, p, unit_cells=3, clip_gradients=clip, sequences=sequences)
    oracle.sgd_parity(epynn, layer, p, X, their)


def test_long_sequence_compiles_once_and_trains():
    oracle.check_long_sequence(RNN(4, clip_gradients=False))


def test_program_size_does_not_grow_with_steps():
    oracle.check_program_size(RNN(4))


def test_bad_input_raises_layer_error():
    oracle.check_bad_input(RNN, ("activate",))


def test_defaults_and_d_like_epynn(E):
    ERNN, maths = E
    ours, theirs = RNN(), ERNN()
    assert ours.unit_cells == theirs.d["u"] == 1
    assert ours.activation == theirs.activation == {"activate": "tanh"}
    assert ours.initialization == theirs.initialization.__name__ == "xavier"
    assert ours.clip_gradients is theirs.clip_gradients is True
    assert ours.sequences is theirs.sequences is False
    theirs.compute_shapes(np.zeros((2, *SHAPE)))
    built = RNN().compute_shapes(SHAPE)
    assert built.d == {k: v for k, v in theirs.d.items() if k != "m"}
    # EpyNN's activation functions are accepted too, and ours.
    assert RNN(activate=maths.relu).activate == "relu"
    assert RNN(activate=activations.elu).activate == "elu"


def test_initialization_draws_u_then_v_from_split_keys():
    layer = RNN(3, initialization="xavier").compute_shapes(SHAPE)
    key = jax.random.key(11)
    p = layer.initialize_parameters(key)
    kU, kV = jax.random.split(key, 2)
    np.testing.assert_array_equal(p["U"], initializers.xavier(kU, (2, 3)))
    np.testing.assert_array_equal(p["V"], initializers.xavier(kV, (3, 3)))
    np.testing.assert_array_equal(p["b"], jnp.zeros((1, 3)))
    assert list(p) == ["U", "V", "b"]


def test_layer_is_hashable_and_static():
    a, b = RNN(3).compute_shapes(SHAPE), RNN(3).compute_shapes(SHAPE)
    assert hash(a) == hash(b) and a == b
    assert RNN(3, sequences=True) != RNN(3)
    assert jax.tree_util.tree_leaves(a) == []
