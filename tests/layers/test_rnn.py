"""RNN: hand-written BPTT vs jax.grad and finite differences, EpyNN 1.2.13 parity
(caches, gradients, clipping, SGD training), long sequences, and input errors."""

from __future__ import annotations

import dataclasses

import chex
import jax
import numpy as np
import pytest
import recurrent_oracle as oracle
from jit_variants import check_pass

from epynn_jax import testing
from epynn_jax.layers import RNN
from epynn_jax.maths import activations, initializers

SHAPE = (5, 2)  # (steps, features); batch 3, as check_layer uses, so compilations are shared
FIELDS = ("activate",)
DISTINCT = {"activate": "sigmoid"}
VARIANTS = {"last": (False, {}), "sequences": (True, DISTINCT)}


def make(variant: str, clip: bool = False) -> RNN:
    """RNN(3) for a variant; clipping off unless asked (EpyNN's default is on)."""
    sequences, acts = VARIANTS[variant]
    return RNN(3, **acts, clip_gradients=clip, sequences=sequences)


@pytest.fixture
def ERNN(epynn):
    """EpyNN's RNN class (the test is skipped without EpyNN)."""
    from epynn.rnn.models import RNN  # noqa: PLC0415

    return RNN


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_matches_autodiff_and_finite_differences(variant):
    report = testing.check_layer(make(variant), SHAPE, max_entries=8, directions=2)
    report.assert_ok()
    assert [c.key for c in report.checks] == ["dX", "dU", "dV", "db"]


class TestJitVariants(chex.TestCase):
    """The hand-written pass with and without jax.jit (see jit_variants.py)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_forward_backward(self):
        check_pass(self.variant, make("sequences"), SHAPE)  # every gate its own activation


def test_gradients_in_a_network_match_autodiff():
    oracle.check_network(make("sequences"), SHAPE)

@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_parity_with_epynn(x64, ERNN, variant, clip):
    layer, p, X, dA = oracle.setup(make(variant, clip), SHAPE)
    oracle.check_parity(layer, p, X, dA, oracle.epynn_twin(ERNN, layer, p))


@pytest.mark.parametrize("variant", VARIANTS)
def test_clipping_is_epynns_rule(x64, variant):
    layer, p, X, dA = oracle.setup(make(variant), SHAPE)
    oracle.check_clipping(layer, dataclasses.replace(layer, clip_gradients=True), p, X, dA)


@pytest.mark.parametrize("variant,clip", [("last", True), ("sequences", False)])
def test_sgd_training_parity_with_epynn(x64, ERNN, variant, clip):
    layer, p, X, _ = oracle.setup(make(variant, clip), SHAPE)
    oracle.sgd_parity(layer, p, X, oracle.epynn_twin(ERNN, layer, p))


def test_long_sequence_compiles_once_and_trains():
    oracle.check_long_sequence(RNN(4, clip_gradients=False))


def test_program_size_does_not_grow_with_steps():
    oracle.check_program_size(RNN(4))


def test_bad_input_raises_layer_error():
    oracle.check_bad_input(RNN, FIELDS)


def test_defaults_and_d_like_epynn(ERNN):
    from epynn.commons import maths  # noqa: PLC0415

    ours, theirs = RNN(), ERNN()
    assert ours.unit_cells == theirs.d["u"] == 1
    assert ours.activation == theirs.activation
    assert ours.initialization == theirs.initialization.__name__ == "xavier"
    assert ours.clip_gradients is theirs.clip_gradients is True
    assert ours.sequences is theirs.sequences is False
    theirs.compute_shapes(np.zeros((2, *SHAPE)))
    assert RNN().compute_shapes(SHAPE).d == {k: v for k, v in theirs.d.items() if k != "m"}
    assert RNN(activate=maths.relu).activate == "relu"
    assert RNN(activate=activations.identity).activate == "identity"


def test_initialization_draws_u_then_v_from_split_keys():
    layer = RNN(3).compute_shapes(SHAPE)
    key = jax.random.key(5)
    p = layer.initialize_parameters(key)
    kU, kV = jax.random.split(key, 2)
    np.testing.assert_array_equal(p["U"], initializers.xavier(kU, (2, 3)))
    np.testing.assert_array_equal(p["V"], initializers.xavier(kV, (3, 3)))
    np.testing.assert_array_equal(p["b"], np.zeros((1, 3)))
    assert list(p) == ["U", "V", "b"]


def test_layer_is_hashable_and_static():
    a, b = RNN(3).compute_shapes(SHAPE), RNN(3).compute_shapes(SHAPE)
    assert hash(a) == hash(b) and a == b
    assert RNN(3, sequences=True) != RNN(3)
    assert jax.tree_util.tree_leaves(a) == []
