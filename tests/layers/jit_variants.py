"""A layer's hand-written pass run with and without ``jax.jit``; not a test module.

Every layer test file has a ``chex.TestCase`` whose test is decorated with
``@chex.variants(with_jit=True, without_jit=True)``: chex generates one test per
variant, and ``self.variant`` is ``jax.jit`` in one and the identity in the other.
(``chex.variants`` unrolls its tests in absl's ``parameterized.TestCase``, which
pytest runs as a unittest class; the cases of a layer are absl parameters.)

:func:`check_pass` runs ``forward -> backward -> compute_gradients`` through the
variant and checks, in float64, that

- ``dX`` and every ``g`` entry equal the vector-Jacobian product of ``forward``
  computed by ``jax.vjp`` through the same variant;
- the output and every cache have the shapes the layer derives without running
  (``output_shape``, ``fs(m)``, ``bs(m)``) and are finite.

A layer that works eagerly but not when traced (Python control flow on values,
NumPy on a tracer) fails the ``with_jit`` case; one that only works traced fails
``without_jit``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.layers.base import Layer, gradients_to_params
from epynn_jax.testing import x64


def check_pass(variant, layer: Layer, X_shape: tuple[int, ...], *, batch: int = 3,
               training: bool = False, seed: int = 0, rtol: float = 1e-9,
               atol: float = 1e-12, zero: tuple[str, ...] = ()) -> dict:
    """Check ``layer``'s hand-written pass under ``variant`` (a test's ``self.variant``);
    return its arrays by name.

    ``zero`` names parameters whose hand-written gradient is 0 by design (a
    Convolution's ``b`` with ``use_bias=False``): checked to be 0, not against autodiff.
    """
    with x64(True):
        layer = layer.compute_shapes(tuple(X_shape))
        rng = np.random.default_rng(seed)
        key = jax.random.key(seed)
        p = layer.initialize_parameters(jax.random.fold_in(key, 1))
        # Non-zero biases, so that their gradients are exercised away from 0.
        p = {k: v + 0.1 * jnp.asarray(rng.standard_normal(v.shape)) for k, v in p.items()}
        X = jnp.asarray(rng.standard_normal((batch, *X_shape)))
        A_shape = (batch, *layer.output_shape)
        R = jnp.asarray(rng.standard_normal(A_shape))
        fkey = jax.random.fold_in(key, 2)

        @variant
        def hand(p, X, R, key):
            A, fc = layer.forward(p, X, key, training)
            dX, bc = layer.backward(p, fc, R)
            return A, fc, dX, bc, layer.compute_gradients(p, fc, bc)

        @variant
        def autodiff(p, X, R, key):
            A, vjp = jax.vjp(lambda p, X: layer.forward(p, X, key, training)[0], p, X)
            return A, vjp(R)

        A, fc, dX, bc, g = hand(p, X, R, fkey)
        A_auto, (gp, gX) = autodiff(p, X, R, fkey)
        fs, bs = layer.fs(batch), layer.bs(batch)
        # Compared inside the float64 scope: outside it JAX would cast them to float32.
        chex.assert_shape(A, A_shape)
        chex.assert_shape(dX, X.shape)
        chex.assert_tree_all_finite((A, fc, dX, bc, g))
        assert {k: v.shape for k, v in fc.items()} == {k: fs[k] for k in fc}, layer.name
        assert {k: v.shape for k, v in bc.items()} == bs, layer.name
        chex.assert_trees_all_close(A, A_auto, rtol=rtol, atol=atol)
        by_param = gradients_to_params(p, g)
        for k in zero:
            chex.assert_trees_all_equal(by_param.pop(k), jnp.zeros_like(gp.pop(k)))
        chex.assert_trees_all_close((dX, by_param), (gX, gp), rtol=rtol, atol=atol)
    return {"A": A, "fc": fc, "dX": dX, "bc": bc, "g": g}
