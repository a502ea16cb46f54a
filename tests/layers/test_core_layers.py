"""Template, Embedding, Flatten, Dropout: backward checks, shapes, training switch, errors."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jit_variants import check_pass

from epynn_jax import testing
from epynn_jax.layers import Dropout, Embedding, Flatten, LayerError, Template

CORE_CASES = [
    (Template(), (3, 2), False), (Embedding(vocabulary_size=4), (3, 4), True),
    (Flatten(), (2, 3, 2), True), (Flatten(), (6,), False),
    (Dropout(0.5), (6,), True), (Dropout(0.3, axis=(1,)), (4, 3), True),
]


@pytest.mark.parametrize("layer,shape,training", CORE_CASES)
def test_check_layer(layer, shape, training):
    report = testing.check_layer(layer, shape, training=training, batch=4)
    report.assert_ok()
    assert [c.key for c in report.checks] == ["dX"]


class TestJitVariants(chex.TestCase):
    """The hand-written pass with and without jax.jit (see jit_variants.py)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*(
        (f"{layer.name}_{'_'.join(map(str, shape))}", layer, shape, training)
        for layer, shape, training in CORE_CASES))
    def test_forward_backward(self, layer, shape, training):
        out = check_pass(self.variant, layer, shape, training=training, batch=4)
        assert out["g"] == {}


def test_identity_layers_pass_through(x64):
    X = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4, 2)))
    for layer in (Template(), Embedding()):
        built = layer.compute_shapes((4, 2))
        A, fc = built.forward({}, X)
        np.testing.assert_array_equal(A, X)
        dX, bc = built.backward({}, fc, 2 * X)
        np.testing.assert_array_equal(dX, 2 * X)
        assert set(fc) == {"X", "A"} and set(bc) == {"dA", "dX"}
        assert built.initialize_parameters(jax.random.key(0)) == {}
        assert built.compute_gradients({}, fc, bc) == {}
        assert built.output_shape == (4, 2)


def test_flatten_shapes(x64):
    layer = Flatten().compute_shapes((3, 4, 2))
    assert layer.output_shape == (24,)
    assert layer.d == {"n": 24}
    assert layer.fs(5) == {"X": (5, 3, 4, 2), "A": (5, 24)}
    assert layer.bs(5) == {"dA": (5, 24), "dX": (5, 3, 4, 2)}
    X = jnp.arange(2 * 3 * 4 * 2, dtype=jnp.float64).reshape(2, 3, 4, 2)
    A, fc = layer.forward({}, X)
    np.testing.assert_array_equal(A, X.reshape(2, 24))
    dX, _ = layer.backward({}, fc, A)
    np.testing.assert_array_equal(dX, X)


def test_embedding_dims():
    assert Embedding(vocabulary_size=4).compute_shapes((12, 4)).d == {"n": 48, "e": 4}
    assert Embedding().compute_shapes((12,)).d == {"n": 12}


@pytest.mark.parametrize("size", ["x", -1, 0, 2.0, True])
def test_embedding_vocabulary_size_is_a_positive_int(size):
    with pytest.raises(LayerError, match="Embedding: vocabulary_size must be a positive int"):
        Embedding(vocabulary_size=size)  # was kept, and written to d['e']
    assert Embedding(vocabulary_size=np.int64(3)).vocabulary_size == 3


# -- Dropout ----------------------------------------------------------------------------------


def _dropout(layer, shape, key, training=True, dtype=jnp.float64):
    built = layer.compute_shapes(shape[1:])
    X = jnp.asarray(np.random.default_rng(0).standard_normal(shape), dtype)
    return built, X, *built.forward({}, X, key, training)


def test_dropout_identity_when_not_training(x64):
    built, X, A, fc = _dropout(Dropout(0.4), (5, 6), jax.random.key(0), training=False)
    np.testing.assert_array_equal(A, X)
    dA = jnp.ones_like(X)
    dX, _ = built.backward({}, fc, dA)
    np.testing.assert_array_equal(dX, dA)
    # A key is not needed when not training.
    A2, _ = built.forward({}, X, None, False)
    np.testing.assert_array_equal(A2, X)


def test_dropout_training_inverted_scaling(x64):
    p = 0.25
    built, X, A, fc = _dropout(Dropout(p), (50, 40), jax.random.key(1))
    D = np.asarray(fc["D"])
    assert set(np.unique(D)) <= {0.0, 1.0}
    np.testing.assert_allclose(A, np.asarray(X) * D / (1 - p), rtol=1e-15)
    # About drop_prob of the units are dropped (2000 draws: sd ~ 0.01).
    assert abs((1 - D.mean()) - p) < 0.04
    dA = jnp.asarray(np.random.default_rng(2).standard_normal(X.shape))
    dX, bc = built.backward({}, fc, dA)
    np.testing.assert_allclose(dX, np.asarray(dA) * D / (1 - p), rtol=1e-15)
    assert set(bc) == {"dA", "dX"}


def test_dropout_fixed_key_is_deterministic(x64):
    _, _, A1, _ = _dropout(Dropout(0.5), (4, 8), jax.random.key(3))
    _, _, A2, _ = _dropout(Dropout(0.5), (4, 8), jax.random.key(3))
    _, _, A3, _ = _dropout(Dropout(0.5), (4, 8), jax.random.key(4))
    np.testing.assert_array_equal(A1, A2)
    assert not np.array_equal(A1, A3)


@pytest.mark.parametrize("axis,mask_shape", [((1,), (6, 1, 5)), ((2,), (6, 4, 1)),
                                             ((1, 2), (6, 1, 1)), ((-1,), (6, 4, 1)),
                                             ((0,), (1, 4, 5))])
def test_dropout_axis_shares_mask(x64, axis, mask_shape):
    built, X, A, fc = _dropout(Dropout(0.5, axis=axis), (6, 4, 5), jax.random.key(5))
    assert fc["D"].shape == mask_shape
    assert built.fs(6)["D"] == mask_shape
    ratio = np.asarray(A) / np.asarray(X)
    # Along the shared axes every sample has the same kept/dropped value.
    for ax in {a % 3 for a in axis}:
        assert np.all(ratio == np.take(ratio, [0], axis=ax))


def test_dropout_float32_mask(x64):
    with testing.x64(False):
        built, X, A, fc = _dropout(Dropout(0.5), (3, 4), jax.random.key(0), dtype=jnp.float32)
        assert A.dtype == jnp.float32 and fc["D"].dtype == jnp.float32


def test_dropout_dims():
    layer = Dropout(0.2, axis=1).compute_shapes((3, 4))
    assert layer.d == {"n": 12, "d": 0.2, "a": (1,)}
    assert layer.axis == (1,)


def test_dropout_zero_prob_training_is_identity(x64):
    _, X, A, _ = _dropout(Dropout(0.0), (3, 4), jax.random.key(0))
    np.testing.assert_array_equal(A, X)


def test_dropout_errors():
    with pytest.raises(LayerError, match=r"Dropout: drop_prob must be a number in \[0, 1\), got 1"):
        Dropout(1.0)
    with pytest.raises(LayerError, match="Dropout: drop_prob"):
        Dropout(-0.1)
    with pytest.raises(LayerError, match="Dropout: axis 3 out of range for input rank 3"):
        Dropout(0.5, axis=3).compute_shapes((4, 5))
    for bad in (None, 1.5, "1", (1, None), True):
        with pytest.raises(LayerError, match="Dropout: axis must be an int or a tuple of ints"):
            Dropout(0.5, axis=bad)
    assert Dropout(0.5, axis=[1, np.int64(2)]).axis == (1, 2)
    built = Dropout(0.5).compute_shapes((4,))
    with pytest.raises(LayerError, match="Dropout: training needs a PRNG key"):
        built.forward({}, jnp.ones((2, 4)), None, True)


@pytest.mark.parametrize("layer", [Template(), Embedding(), Flatten(), Dropout()])
@pytest.mark.parametrize("shape", [(0, 3), (3, -1)])
def test_invalid_input_shape(layer, shape):
    with pytest.raises(LayerError, match=f"{layer.name}: invalid input shape"):
        layer.compute_shapes(shape)


@pytest.mark.parametrize("p", ["0.5", None, True])
def test_dropout_prob_must_be_a_number(p):
    with pytest.raises(LayerError, match="Dropout: drop_prob must be a number in"):
        Dropout(p)
