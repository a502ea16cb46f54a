"""Data-parallel training over a :class:`jax.sharding.Mesh`.

``network.fit(..., mesh=mesh)`` trains on every device of the mesh axis
``'data'`` at once:

- each batch of ``batch_size`` samples is split along its first axis into
  equal parts, one per device (``NamedSharding(mesh, P('data'))``): the batch
  size must be divisible by the number of devices on that axis;
- parameters, optimizer state and the PRNG key are replicated on every device;
- the training set is replicated too, so that the per-epoch shuffle (one
  permutation of the whole set, exactly as on one device) needs no
  communication: each device gathers its own slice of each batch;
- the evaluated splits are sharded along the sample axis when their size is
  divisible by the device count (else replicated);
- the gradient of the summed loss is a sum over samples, so the per-device
  partial gradients are summed across devices; under ``jit`` XLA's SPMD
  partitioner inserts that all-reduce from the sharding annotations alone.

So N devices compute the same update as one device; only the order of the
floating-point additions changes (partial sums, then the all-reduce).

Multi-host: start every process with ``jax.distributed.initialize(...)``,
build the mesh from ``jax.devices()`` (all processes' devices) and call
``fit`` with the same data and arguments in every process (see
``docs/scaling.md``).

This module only places arrays and annotates shardings; it imports nothing
from ``epoch`` and ``fitting`` (which import it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "as_mesh",
    "data_size",
    "check_batch_size",
    "replicated",
    "batch_sharded",
    "to_global",
    "replicate",
    "shard_samples",
    "place",
    "constrain_samples",
    "constrain_batch",
    "constrain_indices",
]

DATA_AXIS = "data"


def as_mesh(mesh: Mesh | Sequence[Any]) -> Mesh:
    """A :class:`Mesh` with a ``'data'`` axis, from a Mesh or a sequence of devices.

    A sequence of ``n`` devices (a list, a tuple or a 1-D NumPy array of them) becomes a
    one-axis mesh of shape ``(n,)`` named ``'data'``.
    """
    if isinstance(mesh, Mesh):
        if DATA_AXIS not in mesh.axis_names:
            raise ValueError(f"mesh: needs an axis named {DATA_AXIS!r} to shard the batch over, "
                             f"got axes {mesh.axis_names}")
        return mesh
    if isinstance(mesh, np.ndarray) and mesh.ndim == 1 and mesh.dtype == object:
        mesh = list(mesh)  # np.array(jax.devices()), as a Mesh is made from
    if isinstance(mesh, (str, bytes)) or not isinstance(mesh, Sequence):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh or a list of devices, got {mesh!r}")
    devices = list(mesh)
    if not devices:
        raise ValueError("mesh: the list of devices is empty")
    for d in devices:
        if not isinstance(d, jax.Device):
            raise TypeError(f"mesh: expected a list of jax devices, got an item {d!r}")
    if len(set(devices)) != len(devices):
        raise ValueError("mesh: the list of devices has duplicates")
    return Mesh(np.array(devices), (DATA_AXIS,))


def data_size(mesh: Mesh) -> int:
    """Number of devices along the ``'data'`` axis."""
    return int(mesh.shape[DATA_AXIS])


def check_batch_size(mesh: Mesh, batch_size: int, samples: int | None = None,
                     where: str = "fit") -> None:
    """Raise ``ValueError`` unless ``batch_size`` splits evenly over the ``'data'`` axis;
    the sizes it suggests are at most ``samples`` (a larger batch is cut to the set)."""
    n = data_size(mesh)
    if batch_size % n:
        lower = batch_size // n * n
        sizes = [b for b in (lower, lower + n) if b and (samples is None or b <= samples)]
        hint = " or ".join(map(str, sizes)) if sizes else f"{n} with at least {n} samples"
        raise ValueError(
            f"{where}: batch_size {batch_size} is not divisible by the {n} devices of the mesh "
            f"axis {DATA_AXIS!r}; each device takes an equal part of every batch "
            f"(try batch_size={hint})"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full array on every device."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, ndim: int = 1, axis: int = 0) -> NamedSharding:
    """Axis ``axis`` of an ``ndim``-array split over ``'data'``; the others replicated."""
    spec = [None] * ndim
    spec[axis] = DATA_AXIS
    return NamedSharding(mesh, P(*spec))


def to_global(x: Any, sharding: NamedSharding) -> jax.Array:
    """Place one array (NumPy or JAX, or a PRNG key array) with ``sharding``.

    Works across processes: each process passes the same full value and
    keeps only the pieces its own devices hold.
    """
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = to_global(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    arr = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(arr.shape, sharding, lambda index: arr[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array leaf of ``tree`` replicated on the mesh."""
    sharding = replicated(mesh)
    return jax.tree_util.tree_map(lambda x: to_global(x, sharding), tree)


def shard_samples(x: Any, mesh: Mesh) -> jax.Array:
    """Split the first (sample) axis over ``'data'`` when it divides evenly, else replicate."""
    shape = np.shape(x)
    if shape and shape[0] % data_size(mesh) == 0:
        return to_global(x, batch_sharded(mesh, len(shape)))
    return to_global(x, replicated(mesh))


def place(mesh: Mesh, state: Any, splits: Mapping[str, tuple],
          train_split: str) -> tuple[Any, dict[str, tuple]]:
    """Put the training state and the data where data-parallel ``fit`` wants them.

    The state and the training split are replicated; every other split is
    sharded along its samples (see :func:`shard_samples`). A split that *is*
    the training split gets both roles: its replicated copy is gathered
    from for the batches and also evaluated.
    """
    state = replicate(state, mesh)
    placed = {}
    for name, (X, Y) in splits.items():
        if name == train_split:
            placed[name] = (replicate(X, mesh), replicate(Y, mesh))
        else:
            placed[name] = (shard_samples(X, mesh), shard_samples(Y, mesh))
    return state, placed


def constrain_indices(idx: jax.Array, mesh: Mesh) -> jax.Array:
    """Inside jit: batch indices ``(n_batches, batch_size)`` split over ``'data'`` on axis 1."""
    return jax.lax.with_sharding_constraint(idx, batch_sharded(mesh, idx.ndim, axis=1))


def constrain_samples(tree: Any, mesh: Mesh) -> Any:
    """Inside jit: split the first axis of every array over ``'data'`` where it divides evenly.

    Used on the evaluated splits, so that a replicated training set is also
    evaluated in parallel (slicing a replicated array needs no communication).
    """
    n = data_size(mesh)
    return jax.tree_util.tree_map(
        lambda x: (jax.lax.with_sharding_constraint(x, batch_sharded(mesh, x.ndim))
                   if x.ndim and x.shape[0] % n == 0 else x), tree)


def constrain_batch(tree: Any, mesh: Mesh) -> Any:
    """Inside jit: every array of one batch split over ``'data'`` along its first axis."""
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, batch_sharded(mesh, x.ndim)), tree)
