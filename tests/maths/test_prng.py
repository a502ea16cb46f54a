"""maths.prng: every function bit for bit what jax.random returns, fused into few kernels.

The expected values come from ``jax.random`` itself (an independent implementation:
JAX's rolled-loop threefry lowering), never from ``prng``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax.maths import prng

SEEDS = (0, 1, 7, 2**31 - 1)


def _data(x):
    """Key data of typed keys, the array itself for raw keys and other arrays."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(_data(a), _data(b))


KEYS = {
    "typed": jax.random.key,
    "raw": jax.random.PRNGKey,
}


def test_threefry2x32_known_answer():
    """The Random123 known-answer vectors of Threefry-2x32-20 (key, counter -> output)."""
    def run(k, x):
        out = prng.threefry2x32(*(np.uint32(v) for v in k),
                                *(jnp.asarray([v], np.uint32) for v in x))
        return [int(np.asarray(o)[0]) for o in out]

    assert run((0, 0), (0, 0)) == [0x6B200159, 0x99BA4EFE]
    assert run((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF)) == [0x1CB996FC, 0xBB002BE7]
    assert run((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3)) == [0xC4923A9C, 0x483DF7A0]


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_small_splits_share_one_hash(kind):
    # an epoch splits its key three ways and its shuffle key two ways: one hash traced
    # (20 rounds, one left shift each, in the printed jaxpr), not one per split
    text = str(jax.make_jaxpr(lambda k: (prng.split(k, 2), prng.split(k, 3)))(KEYS[kind](0)))
    assert text.count("shift_left") == 20
    five = str(jax.make_jaxpr(lambda k: (prng.split(k, 2), prng.split(k, 5)))(KEYS[kind](0)))
    assert five.count("shift_left") == 40  # a larger split hashes its own counters


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("seed", SEEDS)
def test_split_and_fold_in_match_jax_random(kind, seed):
    key = KEYS[kind](seed)
    for num in (1, 2, 3, 4, 5):
        _same(prng.split(key, num), jax.random.split(key, num))
    _same(prng.split(key), jax.random.split(key))
    for data in (0, 1, 12345, 2**32 - 1):
        _same(prng.fold_in(key, data), jax.random.fold_in(key, data))
    want = jax.vmap(jax.random.fold_in, (None, 0))(key, 4 + jnp.arange(6))
    _same(prng.fold_in_range(key, 4, 6), want)


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_bits_and_uniform_match_jax_random(kind):
    key = KEYS[kind](3)
    for shape in ((1,), (7,), (4, 5), (2, 3, 4)):
        _same(prng.bits32(key, shape), jax.random.bits(key, shape, jnp.uint32))
        _same(prng.uniform(key, shape), jax.random.uniform(key, shape, jnp.float32))


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("shape", [(1,), (3, 5), (128, 64), (2, 3, 4, 5)])
def test_normal_matches_jax_random(kind, shape):
    key = KEYS[kind](21)
    _same(prng.normal(key, shape), jax.random.normal(key, shape, jnp.float32))
    _same(jax.jit(prng.normal, static_argnums=(1, 2))(key, shape, np.float32),
          jax.random.normal(key, shape, jnp.float32))


def test_normal_float64_under_x64_matches_jax_random(x64):
    key = jax.random.key(8)
    _same(prng.normal(key, (17, 9), np.float64), jax.random.normal(key, (17, 9), jnp.float64))


def test_normal_of_other_dtypes_goes_to_jax_random():
    key = jax.random.key(8)
    _same(prng.normal(key, (5,), jnp.bfloat16), jax.random.normal(key, (5,), jnp.bfloat16))


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("n", (1, 2, 31, 683, 1625, 1626, 5000))
def test_permutation_matches_jax_random(kind, n):
    """Including both sides of 1,625 samples, where JAX's shuffle takes a second round."""
    key = KEYS[kind](11)
    _same(prng.permutation(key, n), jax.random.permutation(key, n))


def test_inside_jit_and_vmap_match_jax_random():
    keys = jax.random.split(jax.random.key(4), 3)
    ours = jax.jit(jax.vmap(lambda k: prng.permutation(prng.split(k, 3)[1], 50)))(keys)
    theirs = jax.vmap(lambda k: jax.random.permutation(jax.random.split(k, 3)[1], 50))(keys)
    _same(ours, theirs)


def test_other_implementations_go_to_jax_random():
    """An rbg key, and threefry with the partitionable hashing switched off, take
    jax.random's own path (which prng must not imitate)."""
    key = jax.random.key(5, impl="rbg")
    assert not prng._is_default(key)
    _same(prng.split(key, 3), jax.random.split(key, 3))
    _same(prng.permutation(key, 40), jax.random.permutation(key, 40))
    _same(prng.uniform(key, (3, 4)), jax.random.uniform(key, (3, 4), jnp.float32))
    with jax.threefry_partitionable(False):
        key = jax.random.key(5)
        assert not prng._is_default(key)
        _same(prng.split(key, 3), jax.random.split(key, 3))
        _same(prng.bits32(key, (9,)), jax.random.bits(key, (9,), jnp.uint32))
        _same(prng.permutation(key, 40), jax.random.permutation(key, 40))


def test_draws_of_2_to_the_32_or_more_go_to_jax_random():
    """Counters past the low 32-bit word are jax.random's (only shapes are traced here:
    the parameter-memory check of a 6e9-parameter layer asks for them)."""
    key, shape = jax.random.key(0), (2**16, 2**16)
    assert not prng._fits(shape) and prng._fits((2**16, 2**16 - 1))
    for fn, dtype in ((prng.bits32, np.uint32), (prng.uniform, np.float32),
                      (prng.normal, np.float32)):
        out = jax.eval_shape(fn, key, shape)
        assert (out.shape, out.dtype) == (shape, dtype)


def _kernels(fn, *args) -> int:
    """Kernels (fusions, loops and sorts) of ``fn``'s compiled program."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    entry = text[text.index("ENTRY"):]
    return len(re.findall(r"= \S+ (?:fusion|while|sort|call)\(", entry))


def test_the_hash_is_one_kernel_not_a_loop():
    """What the module is for: JAX's CPU lowering of the same permutation is a
    loop per hash plus small kernels around each; prng's has a kernel per hash."""
    key = jax.random.key(0)
    ours = _kernels(lambda k: prng.permutation(k, 683), key)
    theirs = _kernels(lambda k: jax.random.permutation(k, 683), key)
    if jax.default_backend() == "cpu":
        assert ours <= 6 and ours < theirs, (ours, theirs)
    else:
        assert ours <= theirs + 2, (ours, theirs)
