"""Splits, fold-ins and shuffles of JAX keys, each hash one fused kernel.

These functions return, bit for bit, what ``jax.random.split``,
``jax.random.fold_in``, ``jax.random.bits`` (32-bit), ``jax.random.uniform``
(float32), ``jax.random.normal`` (float32, and float64 under x64) and
``jax.random.permutation`` return. They differ in how the threefry hash is
compiled, not in what it computes.

Why: on a CPU, JAX lowers every threefry hash to a rolled loop (a
``while`` over five blocks of four rounds) plus a handful of small kernels to
build its counters. Each call site compiles its own. In a small Dense epoch
the key split and the shuffle were 30 of the program's 53 kernels, and half
of its XLA compile time (0.16 s of 0.32 s on the 2-core benchmark machine).
Written out as its 20 rounds of ``uint32`` adds, rotations and xors
(:func:`threefry2x32`), the hash is one elementwise loop fusion that compiles
in a few milliseconds and runs at least as fast. Each function is jitted, as
``jax.random``'s are: called eagerly it is one compiled call, and inside a
trace it is traced once per shape.

The hash is Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3", SC 2011), which is what JAX's default key
implementation runs. Keys are hashed the way JAX does when
``jax_threefry_partitionable`` is on (its default): the counters of ``n``
outputs are the 64-bit integers ``0 .. n-1``, as (high, low) ``uint32`` words.

Any other key goes to ``jax.random`` itself: keys of another implementation
(``rbg``, ``unsafe_rbg``, a custom one), a batch of keys,
``jax_threefry_partitionable`` switched off, or a draw of 2**32 values or more
(the counters here use the low 32-bit word only). ``tests/maths/test_prng.py``
compares every function with ``jax.random`` for both kinds of key (typed, and
legacy raw ``uint32[2]``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["threefry2x32", "split", "fold_in", "fold_in_range", "bits32", "uniform",
           "normal", "permutation"]

#: the rotation distances of the even and odd blocks of four rounds
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
#: the key-schedule parity constant of Threefry
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, d: int) -> jax.Array:
    return lax.bitwise_or(lax.shift_left(x, np.uint32(d)),
                          lax.shift_right_logical(x, np.uint32(32 - d)))


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32, 20 rounds, of the counter words ``(x1, x2)`` under the key ``(k1, k2)``.

    All ``uint32``; ``k1``, ``k2`` scalars, ``x1``, ``x2`` one shape, which the
    two output words have. Five blocks of four rounds (``x1 += x2; x2 =
    rotl(x2, r) ^ x1``), each followed by the injection of a key word of the
    schedule ``(k1, k2, k1 ^ k2 ^ 0x1BD11BDA)`` and the block's number. Written
    with ``lax`` (about 120 operations; ``jnp``'s checks doubled their tracing time).
    """
    ks = (k1, k2, lax.bitwise_xor(lax.bitwise_xor(k1, k2), _PARITY))

    def plus(x, k):  # x + the scalar k
        return lax.add(x, lax.broadcast(k, x.shape))

    x1, x2 = plus(x1, ks[0]), plus(x2, ks[1])
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x1 = lax.add(x1, x2)
            x2 = lax.bitwise_xor(_rotate_left(x2, r), x1)
        x1 = plus(x1, ks[(block + 1) % 3])
        x2 = plus(plus(x2, ks[(block + 2) % 3]), np.uint32(block + 1))
    return x1, x2


def _is_default(key: jax.Array) -> bool:
    """``key`` is one key of JAX's default threefry, hashed the partitionable way."""
    if not jax.config.jax_threefry_partitionable:
        return False
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.shape == () and str(jax.random.key_impl(key)) == "threefry2x32"
    # a legacy raw key takes the default implementation
    return (key.shape == (2,) and key.dtype == np.uint32
            and str(jax.config.jax_default_prng_impl) == "threefry2x32")


def _words(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) \
        else key
    return data[0], data[1]


def _keys(key: jax.Array, x1: jax.Array, x2: jax.Array) -> jax.Array:
    """The keys hashed from the counter words ``x1``, ``x2`` (shape s) under ``key``, of
    the same kind as ``key``: shape s (typed keys) or s + (2,) (raw keys).

    Word ``j`` of key ``i`` is word ``j`` of the hash of counter ``i``, selected from a
    hash computed for each of the two (the hash is cheap, keys are few): stacking the
    two words instead made XLA emit the 20 rounds once per word, twice the code to
    compile.
    """
    x1, x2 = (jnp.broadcast_to(x[..., None], (*x.shape, 2)) for x in (x1, x2))
    b1, b2 = threefry2x32(*_words(key), x1, x2)
    data = jnp.where(lax.broadcasted_iota(np.int32, b1.shape, b1.ndim - 1) == 0, b1, b2)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
    return data


def _fits(shape: tuple[int, ...]) -> bool:
    """Every row-major index of ``shape`` fits the low counter word (below 2**32); larger
    draws go to ``jax.random``."""
    return math.prod(shape) < 2**32


def _counters(shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """The (high, low) words of the 64-bit row-major indices of ``shape`` (:func:`_fits`)."""
    low = lax.iota(np.uint32, math.prod(shape)).reshape(shape)
    return jnp.zeros(shape, np.uint32), low


#: a split into at most this many keys hashes this many counters and keeps the first
#: ``num`` keys (key ``i`` is the hash of counter ``i`` alone), so an epoch's two- and
#: three-way splits trace and lower one hash, not two
_SMALL_SPLIT = 4


@functools.partial(jax.jit, static_argnums=(1,))
def split(key: jax.Array, num: int = 2) -> jax.Array:
    """``jax.random.split(key, num)``: ``num`` new keys, shape (num,) (raw keys: (num, 2))."""
    if not (_is_default(key) and _fits((num,))):
        return jax.random.split(key, num)
    if num <= _SMALL_SPLIT:
        return _small_split(key)[:num]
    return _keys(key, *_counters((num,)))


@jax.jit
def _small_split(key: jax.Array) -> jax.Array:
    """The first :data:`_SMALL_SPLIT` keys of a split of ``key`` (one trace per kind of key)."""
    return _keys(key, *_counters((_SMALL_SPLIT,)))


def fold_in(key: jax.Array, data) -> jax.Array:
    """``jax.random.fold_in(key, data)``: the key ``data`` (an integer, as ``jnp.uint32``
    takes it) folds into; :func:`fold_in_range` for many."""
    return _fold_in(key, jnp.uint32(data))


@jax.jit
def _fold_in(key: jax.Array, data: jax.Array) -> jax.Array:
    if not _is_default(key):
        return jax.random.fold_in(key, data)
    return _keys(key, jnp.zeros_like(data), data)


@functools.partial(jax.jit, static_argnums=(2,))
def fold_in_range(key: jax.Array, start, n: int) -> jax.Array:
    """``jax.vmap(jax.random.fold_in, (None, 0))(key, start + jnp.arange(n))``: the keys
    ``fold_in(key, start + i)`` for ``i < n``, shape (n,) (raw keys: (n, 2)); ``start``
    may be traced."""
    if not (_is_default(key) and _fits((n,))):
        return jax.vmap(jax.random.fold_in, (None, 0))(key, start + jnp.arange(n))
    low = (start + jnp.arange(n)).astype(np.uint32)
    return _keys(key, jnp.zeros_like(low), low)


@functools.partial(jax.jit, static_argnums=(1,))
def bits32(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.bits(key, shape, jnp.uint32)``: uniform ``uint32`` words of ``shape``."""
    if not (_is_default(key) and _fits(shape)):
        return jax.random.bits(key, shape, jnp.uint32)
    return _bits(key, shape, 32)


def _bits(key: jax.Array, shape: tuple[int, ...], width: int) -> jax.Array:
    """``jax.random.bits`` of ``width`` 32 (the two words xor-ed) or 64 (the first word
    high, the second low; needs ``jax_enable_x64``)."""
    b1, b2 = threefry2x32(*_words(key), *_counters(tuple(shape)))
    if width == 32:
        return lax.bitwise_xor(b1, b2)
    b1, b2 = (lax.convert_element_type(b, np.uint64) for b in (b1, b2))
    return lax.bitwise_or(lax.shift_left(b1, np.uint64(32)), b2)


def _unit(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Uniform floats in [0, 1) of ``dtype`` (float32 or float64), as
    ``jax.random.uniform`` draws them: random mantissa bits (the high bits of each word)
    under the exponent of 1.0 make a float in [1, 2), from which 1 is subtracted."""
    info = np.finfo(dtype)
    width = info.bits
    uint = np.dtype(f"uint{width}")
    mantissa = lax.shift_right_logical(_bits(key, shape, width), uint.type(width - info.nmant))
    one = np.array(1.0, dtype).view(uint)
    return lax.sub(lax.bitcast_convert_type(lax.bitwise_or(mantissa, one), dtype),
                   np.dtype(dtype).type(1.0))


def _supported(key: jax.Array, shape: tuple[int, ...], dtype) -> bool:
    """:func:`_is_default` and :func:`_fits`, and a float dtype :func:`_unit` draws."""
    dtype = np.dtype(dtype)
    return _is_default(key) and _fits(shape) and (dtype == np.float32 or (
        dtype == np.float64 and jax.config.jax_enable_x64))


@functools.partial(jax.jit, static_argnums=(1,))
def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.uniform(key, shape, jnp.float32)``: floats in [0, 1) (:func:`_unit`)."""
    if not _supported(key, shape, np.float32):
        return jax.random.uniform(key, shape, jnp.float32)
    return _unit(key, shape, np.float32)


@functools.partial(jax.jit, static_argnums=(1, 2))
def normal(key: jax.Array, shape: tuple[int, ...], dtype=np.float32) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``: standard normal draws.

    As JAX draws them: ``u`` uniform in ``(-1, 1)`` (floats in [0, 1) scaled by ``1 -
    lo`` and shifted by ``lo``, the float after -1), then ``sqrt(2) * erfinv(u)``.
    float32, and float64 under x64; other dtypes go to ``jax.random.normal``.
    """
    dtype = np.dtype(dtype)
    if not _supported(key, shape, dtype):
        return jax.random.normal(key, shape, dtype)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    hi = np.array(1.0, dtype)
    u = lax.max(lo, lax.add(lax.mul(_unit(key, shape, dtype), hi - lo), lo))
    return lax.mul(np.array(np.sqrt(2), dtype), lax.erf_inv(u))


@functools.partial(jax.jit, static_argnums=(1,))
def permutation(key: jax.Array, n: int) -> jax.Array:
    """``jax.random.permutation(key, n)``: a uniform shuffle of ``jnp.arange(n)``.

    As JAX does it: sort ``arange(n)`` by random 32-bit words, in ``ceil(3 ln n /
    ln(2**32 - 1))`` rounds (one up to 1,625 samples, two up to 2.6 million), so
    that ties, which would bias the order, are unlikely to survive every round.
    Each round splits the key in two, keeps the first and hashes with the second.
    """
    if not _is_default(key):
        return jax.random.permutation(key, n)
    x = jnp.arange(n)
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))
    for _ in range(rounds):
        key, sub = split(key)
        _, x = lax.sort_key_val(bits32(sub, (n,)), x)
    return x
