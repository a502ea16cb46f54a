"""GRU: hand-written BPTT vs jax.grad and finite differences, EpyNN 1.2.13 parity
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
from epynn_jax.layers import GRU
from epynn_jax.maths import activations, initializers

SHAPE = (5, 2)  # (steps, features); batch 3, as check_layer uses, so compilations are shared
FIELDS = ("activate", "activate_update", "activate_reset")
# Defaults, and one activation per gate all different (so that swapping two gates shows).
DISTINCT = dict(zip(FIELDS, ("lrelu", "tanh", "identity"), strict=True))
VARIANTS = {"last": (False, {}), "sequences": (True, DISTINCT)}


def make(variant: str, clip: bool = False) -> GRU:
    sequences, acts = VARIANTS[variant]
    return GRU(3, **acts, clip_gradients=clip, sequences=sequences)


@pytest.fixture
def EGRU(epynn):
    """EpyNN's GRU class (the test is skipped without EpyNN)."""
    from epynn.gru.models import GRU  # noqa: PLC0415

    return GRU


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_matches_autodiff_and_finite_differences(variant):
    report = testing.check_layer(make(variant), SHAPE, max_entries=8, directions=2)
    report.assert_ok()
    assert len(report.checks) == 10  # dX and 9 parameter gradients


class TestJitVariants(chex.TestCase):
    """The hand-written pass with and without jax.jit (see jit_variants.py)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_forward_backward(self):
        check_pass(self.variant, make("sequences"), SHAPE)  # every gate its own activation


def test_gradients_in_a_network_match_autodiff():
    oracle.check_network(make("sequences"), SHAPE)

@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_parity_with_epynn(x64, EGRU, variant, clip):
    layer, p, X, dA = oracle.setup(make(variant, clip), SHAPE)
    oracle.check_parity(layer, p, X, dA, oracle.epynn_twin(EGRU, layer, p))


@pytest.mark.parametrize("variant", VARIANTS)
def test_clipping_is_epynns_rule(x64, variant):
    layer, p, X, dA = oracle.setup(make(variant), SHAPE)
    oracle.check_clipping(layer, dataclasses.replace(layer, clip_gradients=True), p, X, dA)


@pytest.mark.parametrize("variant,clip", [("last", False), ("sequences", True)])
def test_sgd_training_parity_with_epynn(x64, EGRU, variant, clip):
    layer, p, X, _ = oracle.setup(make(variant, clip), SHAPE)
    oracle.sgd_parity(layer, p, X, oracle.epynn_twin(EGRU, layer, p))


def test_long_sequence_compiles_once_and_trains():
    oracle.check_long_sequence(GRU(4))


def test_program_size_does_not_grow_with_steps():
    oracle.check_program_size(GRU(4))


def test_bad_input_raises_layer_error():
    oracle.check_bad_input(GRU, FIELDS)


def test_defaults_and_d_like_epynn(EGRU):
    from epynn.commons import maths  # noqa: PLC0415

    ours, theirs = GRU(), EGRU()
    assert ours.unit_cells == theirs.d["u"] == 1
    assert ours.activation == theirs.activation
    assert ours.initialization == theirs.initialization.__name__ == "orthogonal"
    assert ours.clip_gradients is theirs.clip_gradients is False
    assert ours.sequences is theirs.sequences is False
    theirs.compute_shapes(np.zeros((2, *SHAPE)))
    assert GRU().compute_shapes(SHAPE).d == {k: v for k, v in theirs.d.items() if k != "m"}
    assert GRU(activate_update=maths.tanh).activate_update == "tanh"
    assert GRU(activate_reset=activations.identity).activate_reset == "identity"


def test_initialization_draws_in_epynn_order_from_split_keys():
    layer = GRU(3).compute_shapes(SHAPE)
    key = jax.random.key(5)
    p = layer.initialize_parameters(key)
    order = ("Uz", "Vz", "Ur", "Vr", "Uhh", "Vhh")
    for k, sub in zip(order, jax.random.split(key, 6), strict=True):
        shape = (2, 3) if k[0] == "U" else (3, 3)
        np.testing.assert_array_equal(p[k], initializers.orthogonal(sub, shape), err_msg=k)
    for gate in ("z", "r", "hh"):
        np.testing.assert_array_equal(p["b" + gate], np.zeros((1, 3)))
    assert list(p) == [f"{w}{gate}" for gate in ("z", "r", "hh") for w in "UVb"]


def test_layer_is_hashable_and_static():
    a, b = GRU(3).compute_shapes(SHAPE), GRU(3).compute_shapes(SHAPE)
    assert hash(a) == hash(b) and a == b
    assert GRU(3, activate_reset="tanh") != GRU(3)
    assert jax.tree_util.tree_leaves(a) == []
