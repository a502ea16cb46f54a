"""Training on data streamed from the host: several batches per compiled call.

In-memory ``fit`` puts every split on the device and runs an epoch as one
compiled call (:func:`~epynn_jax.network.epoch.run_epoch`). A set larger than
the device (or than the host) is streamed instead: ``fit`` dispatches here when
a split is an iterable of ``(X, Y)`` batches (a Grain ``DataLoader``, a PyTorch
``DataLoader`` yielding NumPy arrays, a generator, a list), a memory-mapped
``np.memmap``, larger than half the device's memory, or when ``fit(stream=...)``
asks for it.

An epoch then runs as chunks of ``k`` batches (:func:`train_chunk`: a
``lax.scan`` over ``(k, batch, ...)`` arrays, the same step as the in-memory
epoch, the step keys drawn by index with
:func:`~epynn_jax.network.epoch.step_keys`). ``k`` comes from the device memory
(:func:`chunk_batches`); at most two chunk sizes are compiled per epoch (``k``
and the remainder). A background thread reads, checks and places the next
chunks while the device trains on the current one (``Stream.prefetch`` chunks
ahead). For arrays the batches are those of the in-memory epoch: the same
permutation of the whole set, drawn from the same key, so a streamed ``fit``
gives bitwise the parameters of an in-memory one. An iterable's order is its
loader's (shuffle there, over the whole set).

The host checks each chunk's guard flags one chunk behind the device (the next
chunk is already queued), so ``fit`` knows the last good state after every
chunk: Ctrl-C and ``Checkpoints(every_batches=N)`` save mid-epoch, with the
number of batches done; ``resume`` continues at that batch. Across epochs too:
the next epoch's first chunk is queued before an epoch's last guard is read
(:func:`stream_epoch`'s ``ahead``), so the device does not wait while the host
ends the epoch; a stop, a failure or the end of ``fit`` drops that chunk's
outputs unread.

Under ``jax.distributed`` (several processes) each process reads only its
rows of every batch (:func:`process_rows`) and the global batch is assembled
with ``jax.make_array_from_process_local_data`` over the ``mesh``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.errors import add_note
from epynn_jax.layers.base import float_dtype, x64_mode
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.maths import prng
from epynn_jax.network import _gc, checks, parallel
from epynn_jax.network.epoch import (
    Guard,
    TrainState,
    _check_chunk,
    _forward_facts,
    epoch_batches,
    epoch_guard,
    epoch_ok,
    eval_chunk,
    evaluate_jit,
    fetch,
    predict_jit,
    step_keys,
    train_steps,
)
from epynn_jax.network.model import Network, Params, forward

__all__ = ["Stream", "DEFAULT_BUDGET", "as_stream", "is_array", "is_batch_iterable",
           "needs_stream", "streams_by_itself", "device_memory", "memory_budget",
           "chunk_batches", "process_rows", "train_chunk",
           "ArraySource", "BatchSource", "source", "Feeder", "Head", "stream_epoch",
           "evaluate_source", "evaluate_split", "predict_array"]

#: Device bytes for the chunks in flight (current, prefetched, being placed) where the
#: device does not report its memory (a CPU): chunks of about 6 MiB. On a 2-core CPU the
#: reader's copies share the cores with the compute: chunks of 8 batches of 28 x 28
#: images (6 MB) trained at 0.9x the in-memory epoch, chunks of 31 (25 MB) at 0.55x.
DEFAULT_BUDGET = 24 * 2**20


@dataclasses.dataclass(frozen=True)
class Stream:
    """How ``fit`` streams data (``fit(..., stream=Stream(...))``; ``stream=True``: defaults).

    - ``chunk_batches``: batches per compiled call (None: as many as
      ``memory_budget`` holds, :func:`chunk_batches`);
    - ``memory_budget``: device bytes for the chunks in flight (None: an eighth
      of the device's memory where it reports it, else :data:`DEFAULT_BUDGET`);
    - ``prefetch``: chunks read and placed ahead by a background thread (0: none,
      read in the training loop);
    - ``steps_per_epoch``: for a one-shot iterator (a generator), the batches
      that make one epoch, read from one long-lived iterator; an iterable that
      can be iterated again (a list, a ``DataLoader``) is read once per epoch.
    """

    chunk_batches: int | None = None
    memory_budget: int | None = None
    prefetch: int = 2
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        for name in ("chunk_batches", "memory_budget", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None:
                checks.positive_int(value, name, "Stream")
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) \
                or self.prefetch < 0:
            raise ValueError(f"Stream: prefetch must be an int >= 0, got {self.prefetch!r}")


def as_stream(stream: Any, where: str = "fit") -> Stream | None:
    """The ``stream`` argument of ``fit`` (or of ``where``) as a :class:`Stream` (``True``:
    defaults) or None."""
    if stream is None or stream is False:
        return None
    if stream is True:
        return Stream()
    if isinstance(stream, Stream):
        return stream
    raise TypeError(f"{where}: stream must be a Stream, True or None, got {stream!r}")


def is_array(a: Any) -> bool:
    """Whether ``a`` is an array (NumPy, JAX, an array-like with ``shape`` and ``dtype``),
    not nested lists."""
    return hasattr(a, "shape") and hasattr(a, "dtype")


def is_batch_iterable(xy: Any) -> bool:
    """Whether a split is an iterable of batches rather than one ``(X, Y)`` pair of arrays."""
    if is_array(xy) or _is_pair(xy):
        return False
    return isinstance(xy, Iterable) and not isinstance(xy, (str, bytes, Mapping))


def _is_pair(xy: Any) -> bool:
    """An ``(X, Y)`` pair of arrays (or nested lists), not a list of two ``(X, Y)`` batches."""
    def is_batch(a: Any) -> bool:
        return isinstance(a, (tuple, list)) and len(a) == 2 and all(is_array(b) for b in a)

    return isinstance(xy, (tuple, list)) and len(xy) == 2 and not any(is_batch(a) for a in xy)


def device_memory(device: Any = None) -> int | None:
    """Bytes of memory ``device`` (default: JAX's first) reports, or None (a CPU)."""
    device = jax.devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        return None
    limit = (stats or {}).get("bytes_limit")
    return int(limit) if limit else None


def needs_stream(xy: Any, device: Any = None) -> bool:
    """Whether ``fit`` streams the split ``xy`` without being asked: an iterable of batches,
    a memory-mapped array, or arrays larger than half the device's reported memory."""
    if is_batch_iterable(xy):
        return True
    if not _is_pair(xy):
        return False  # fit's checks say what is wrong with it
    return streams_by_itself(*xy, device=device)


def streams_by_itself(*arrays: Any, device: Any = None) -> bool:
    """Whether arrays given to ``fit``, ``evaluate`` or ``predict`` are streamed without being
    asked: one is memory-mapped, or together they take more than half the device's
    reported memory."""
    if any(isinstance(a, np.memmap) for a in arrays):
        return True
    limit = device_memory(device)
    nbytes = sum(int(getattr(a, "nbytes", 0)) for a in arrays)
    return limit is not None and nbytes > limit // 2


def memory_budget(stream: Stream, device: Any = None) -> int:
    """The device bytes the chunks in flight may take (see :class:`Stream`)."""
    if stream.memory_budget is not None:
        return stream.memory_budget
    limit = device_memory(device)
    return DEFAULT_BUDGET if limit is None else limit // 8


def chunk_batches(stream: Stream, batch_bytes: int, n_batches: int | None,
                  device: Any = None) -> int:
    """Batches per compiled call: ``stream.chunk_batches``, else as many as fit the budget
    with ``prefetch + 2`` chunks in flight (training, prefetched, being placed); at least 1,
    at most the epoch's batches."""
    if stream.chunk_batches is not None:
        k = stream.chunk_batches
    else:
        k = memory_budget(stream, device) // max(batch_bytes * (stream.prefetch + 2), 1)
    return max(1, min(k, n_batches or k or 1))


def process_rows(batch_size: int, process_index: int, process_count: int) -> slice:
    """The rows of every global batch that process ``process_index`` of ``process_count``
    reads: a contiguous ``batch_size // process_count``, in process order."""
    if batch_size % process_count:
        raise ValueError(f"fit: batch_size {batch_size} does not split evenly over "
                         f"{process_count} processes")
    per = batch_size // process_count
    return slice(process_index * per, (process_index + 1) * per)


# -- the compiled pieces -----------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("net", "update", "loss", "guard", "mesh",
                                              "locate"))
def train_chunk(net: Network, update, loss: str, params: Params, opt_state, step_key: jax.Array,
                start: jax.Array, X: jax.Array, Y: jax.Array, guard: bool = False, *,
                mesh=None, locate: bool = False):
    """Steps ``start, ..., start + k - 1`` of an epoch on the batches ``X`` (k, batch, ...)
    and ``Y`` (k, batch, ...): the in-memory epoch's scan, keys drawn by step index.

    Returns ``(params, opt_state, costs (k,), watch)``: with ``guard``, ``watch`` is
    the chunk's ``ok`` flag (:func:`~epynn_jax.network.epoch.epoch_ok`: its costs and
    end parameters, as the in-memory epoch is watched); with ``locate=True`` too (a
    replay of a failed chunk) it is the :class:`Guard` of every step and layer, its
    ``bad_step`` counted from the chunk's first step; else None.
    """
    keys = step_keys(step_key, start, X.shape[0]) if net.uses_keys else None
    batch = (lambda xy: xy) if mesh is None else (lambda xy: parallel.constrain_batch(xy, mesh))
    params, opt_state, costs, watch = train_steps(net, update, loss, guard and locate, params,
                                                  opt_state, ((X, Y), keys), batch)
    if guard and not locate:
        watch = epoch_ok(params, costs)
    return params, opt_state, costs, watch


@functools.partial(jax.jit, static_argnames=("net", "metric_names"))
def _chunk_statistics(net: Network, metric_names: tuple[str, ...], params: Params, X, Y, mask):
    """The metrics' sums (:func:`~epynn_jax.maths.metrics.statistics`) on one chunk."""
    A, _ = forward(net, params, X, None, False)
    return metrics_lib.statistics(metric_names, Y, A, mask)


@functools.partial(jax.jit, static_argnames=("metric_names", "dtype"))
def _from_statistics(metric_names: tuple[str, ...], stats: dict, dtype) -> dict:
    return {name: metrics_lib.from_statistics(name, stats, dtype) for name in metric_names}


# -- sources -----------------------------------------------------------------------------


class Chunk(NamedTuple):
    """``k`` batches read on the host: ``X`` (k, batch, ...), ``Y`` (k, batch, ...), and the
    epoch index of the first."""

    start: int
    X: np.ndarray
    Y: np.ndarray


def _read(a, rows, where: str) -> np.ndarray:
    """``a[rows]`` (an index array or a slice) in an aligned buffer of the working dtype:
    one copy, the gather itself (``np.take`` into the buffer) when the dtypes agree."""
    dtype = np.dtype(float_dtype())
    if isinstance(rows, slice):
        n = len(range(*rows.indices(int(np.shape(a)[0]))))
    else:
        n = len(rows)
    out = checks.aligned((n, *np.shape(a)[1:]), dtype)
    if isinstance(a, np.ndarray) and a.dtype == dtype and not isinstance(rows, slice):
        np.take(a, rows, axis=0, out=out, mode="clip")  # "raise" buffers; rows are valid
    else:  # an array-like is read through its own indexing (a memmap reads only the rows)
        got = np.asarray(a[rows])
        if not checks.is_real(got.dtype):
            raise TypeError(f"{where}: expected numeric data, got dtype {got.dtype}")
        with np.errstate(over="ignore"):
            out[...] = got
    return out


def _mapped_files(*arrays) -> tuple[tuple[str, Any, int], ...]:
    """``(path, mapping, size)`` of the file behind each memory-mapped array (``np.load(...,
    mmap_mode='r')``, ``np.memmap``), as it is now (:func:`_mapped_size`)."""
    out = []
    for a in arrays:
        path = getattr(a, "filename", None) if isinstance(a, np.memmap) else None
        if path:
            mapping = getattr(a, "_mmap", None)
            try:
                out.append((str(path), mapping, _mapped_size(path, mapping)))
            except OSError:
                continue
    return tuple(out)


def _mapped_size(path: str, mapping: Any) -> int:
    """The size of the file ``mapping`` holds open (``mmap.size()``: the file it maps,
    even once another file was put at ``path`` or ``path`` was deleted, which leaves the
    mapped one whole and readable); that of the file at ``path`` when the mapping cannot
    say. ``OSError`` when neither can be read."""
    if mapping is not None:
        try:
            return int(mapping.size())
        except (OSError, ValueError):  # (a closed mapping)
            pass
    return os.path.getsize(path)


def _check_mapped(files: tuple[tuple[str, Any, int], ...], where: str,
                  caller: str = "fit") -> None:
    """Raise ``ValueError`` when a file behind a memory-mapped split has shrunk since
    ``caller`` began streaming it (cut short, or written again in place smaller): reading
    past its end would kill the process (SIGBUS), not raise. (A file cut between this
    check and the read still does: the check catches a file changed between chunks.) A
    file replaced at its path (``os.replace``) or deleted is still mapped whole: read on."""
    for path, mapping, size in files:
        try:
            now = _mapped_size(path, mapping)
        except OSError as err:
            now, why = 0, f"cannot be read any more ({err.strerror or err})"
        else:
            why = f"shrank from {size} to {now} bytes"
        if now < size:
            during = "training" if caller == "fit" else f"{caller} read it"
            raise ValueError(f"{where}: the file {path} behind the memory-mapped data {why} "
                             f"while {during}; its rows cannot be read. Keep a file unchanged "
                             f"while {caller} streams it (write the new data to a new file and "
                             "os.replace it onto the path: the mapped file is read on whole)")


def _check_values(net: Network, where: str, X, Y, loss: str, own: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's values (finite, labels in range), as host arrays of the working dtype
    (aligned host buffers from :func:`_read` pass through without a copy; ``own=True``:
    always buffers of their own, for a loader's arrays, which it may refill while the
    compiled call that took them runs)."""
    X = checks.host_float(X, f"{where} X", own=own)
    Y = checks.host_float(Y, f"{where} Y", own=own)
    checks.check_label_range(Y, loss, f"{where} Y")
    checks.check_compute_range(net, X, f"{where} X")  # (under a float16 policy)
    return X, Y


class ArraySource:
    """A split held as host arrays (NumPy, ``np.memmap``): read one chunk of rows at a time.

    The batches are those of the in-memory epoch: ``epoch_batches`` of the
    epoch's shuffle key over the WHOLE set (the remainder dropped), gathered
    chunk by chunk, so only a chunk is ever read.
    """

    def __init__(self, net: Network, name: str, X, Y, loss: str, batch_size: int,
                 rows: slice = slice(None), caller: str = "fit") -> None:
        checks.check_split(net, name, X, Y)
        for a, v in ((X, "X"), (Y, "Y")):  # (its rows are read through np.asarray)
            checks.check_unmasked(a, f"{name} {v}")
        self.net, self.name, self.X, self.Y, self.loss = net, name, X, Y, loss
        self.n = int(np.shape(X)[0])
        self.batch_size = min(batch_size, self.n)
        self.n_batches = max(self.n // self.batch_size, 1)
        self.rows = rows  # this process's rows of every batch
        self.files, self.caller = _mapped_files(X, Y), caller  # (caller: named by errors)

    def batch_bytes(self) -> int:
        per = math.prod(np.shape(self.X)[1:]) + math.prod(np.shape(self.Y)[1:])
        return self.batch_size * per * np.dtype(float_dtype()).itemsize

    def orders(self, key: jax.Array) -> Iterator[np.ndarray]:
        """The batch order of each epoch from the one whose state key is ``key`` on: the
        in-memory epoch's row indices (n_batches, batch_size), this process's columns,
        and the next epoch's key, from one compiled call (:func:`_epoch_order`)."""
        while True:
            key, order = _epoch_order(key, self.n, self.batch_size)
            yield np.asarray(order)[:, self.rows]

    def chunks(self, order: np.ndarray, start: int, k: int) -> Iterator[Chunk]:
        """Chunks of ``k`` batches of the epoch ``order`` (:meth:`orders`), from batch
        ``start`` to the end of the epoch."""
        for i in range(start, self.n_batches, k):
            idx = order[i:i + k]
            where = f"{self.name} batches {i}-{i + len(idx) - 1}"
            _check_mapped(self.files, where, self.caller)
            rows = idx.ravel()
            X, Y = _check_values(self.net, where, _read(self.X, rows, f"{where} X"),
                                 _read(self.Y, rows, f"{where} Y"),
                                 self.loss)
            yield Chunk(i, X.reshape(*idx.shape, *X.shape[1:]), Y.reshape(*idx.shape,
                                                                           *Y.shape[1:]))

    def eval_chunks(self, c: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(X, Y, mask)`` of contiguous chunks of ``c`` rows, the last overlapping the one
        before (one compiled size; ``mask``: the rows not counted yet)."""
        c = min(c, self.n)
        for i in range(0, self.n, c):
            s = min(i, self.n - c)
            _check_mapped(self.files, f"{self.name} samples {s}-{s + c - 1}", self.caller)
            X, Y = _check_values(self.net, f"{self.name} samples {s}-{s + c - 1}",
                                 _read(self.X, slice(s, s + c), f"{self.name} X"),
                                 _read(self.Y, slice(s, s + c), f"{self.name} Y"), self.loss)
            yield X, Y, np.arange(s, s + c) >= i


class BatchSource:
    """A split given as an iterable of ``(X, Y)`` batches (a loader's order).

    An iterable that can be iterated again is read once per epoch; a one-shot
    iterator needs ``steps_per_epoch`` and is read on, epoch after epoch. The
    first batch is read when the source is made (its shapes are checked
    before anything is traced) and kept for the first epoch. Every batch must
    have the first one's size; a smaller LAST batch of a pass is dropped with a
    warning (as the in-memory epoch drops the remainder).
    """

    def __init__(self, net: Network, name: str, iterable: Iterable, loss: str,
                 steps_per_epoch: int | None, epochs: int, batch_size: int | None = None
                 ) -> None:
        self.net, self.name, self.loss = net, name, loss
        self.one_shot = isinstance(iterable, Iterator)
        if self.one_shot and steps_per_epoch is None and epochs > 1:
            raise ValueError(f"fit: data[{name!r}] is a one-shot iterator (a generator?) and "
                             f"epochs={epochs}: pass an iterable that can be read once per "
                             "epoch (a list, a DataLoader), or Stream(steps_per_epoch=N) to "
                             "read N batches per epoch from this one")
        self.iterable, self.steps = iterable, steps_per_epoch
        self._it: Iterator | None = iter(iterable)
        try:
            first = next(self._it)
        except StopIteration:
            raise ValueError(f"fit: data[{name!r}] yields no batch") from None
        X, Y = self._pair(first, 0)
        checks.check_split(net, f"{name} batch 0", X, Y)
        self.batch_size = int(np.shape(X)[0])
        if batch_size is not None and batch_size != self.batch_size:
            raise ValueError(f"fit: batch_size={batch_size} but data[{name!r}] yields "
                             f"batches of {self.batch_size}")
        self._first: Any = first
        self.sample_shapes = (tuple(np.shape(X)[1:]), tuple(np.shape(Y)[1:]))
        self.n_batches = steps_per_epoch
        if self.n_batches is None and not self.one_shot:
            try:
                self.n_batches = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                self.n_batches = None

    def _pair(self, item: Any, i: int) -> tuple[Any, Any]:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"fit: data[{self.name!r}] batch {i} is not an (X, Y) pair, got "
                            f"{type(item).__name__} (map the loader's records to (X, Y))")
        return item[0], item[1]

    def batch_bytes(self) -> int:
        per = sum(math.prod(s) for s in self.sample_shapes)
        return self.batch_size * per * np.dtype(float_dtype()).itemsize

    def _items(self) -> Iterator[Any]:
        """This epoch's raw items: the first epoch begins with the batch read when checking,
        on the same iterator; a one-shot iterator is read on; else a new pass."""
        if self._first is not None:
            first, self._first = self._first, None
            return itertools.chain((first,), self._it)  # never closes self._it
        return self._it if self.one_shot else iter(self.iterable)

    def _next(self, items: Iterator, i: int) -> Any:
        """``next(items)`` (:data:`_END` at the end); an error the loader raises is raised as
        it is, with a note naming the split and the batch it was reading."""
        try:
            return next(items, _END)
        except Exception as err:
            add_note(err, f"(raised by data[{self.name!r}] while fit read its batch {i})")
            raise

    def _batches(self, start: int) -> Iterator[Any]:
        """The raw items of this epoch from batch ``start`` on: a new pass skips the first
        ``start``; a one-shot iterator is taken as positioned. A pass of a loader with a
        ``len()`` must yield that many items (the schedule's steps per epoch, a resumed
        batch and the chunks are counted from it)."""
        items = self._items()
        if not self.one_shot:
            for i in range(start):
                if self._next(items, i) is _END:
                    return
        counted = self.steps is None and self.n_batches is not None
        for j in itertools.count(start):
            if self.steps is not None and j == self.steps:
                return
            item = self._next(items, j)
            if item is _END:
                if self.steps is not None:
                    raise ValueError(f"fit: data[{self.name!r}] ran out after {j} batches "
                                     f"of an epoch of steps_per_epoch={self.steps}")
                if counted and j != self.n_batches:
                    raise self._miscounted(f"ended after {j}")
                return
            if counted and j == self.n_batches:
                raise self._miscounted(f"yields more than {j}")
            yield item

    def _miscounted(self, what: str) -> ValueError:
        return ValueError(f"fit: data[{self.name!r}] {what} batches on a pass, but its len() "
                          f"was {self.n_batches} when fit began; the epoch's steps (EpyNN's "
                          "learning-rate schedule, a resumed batch) are counted from it. Keep "
                          "len() equal to the batches of every pass, or pass "
                          "Stream(steps_per_epoch=N)")

    def orders(self, key: jax.Array) -> Iterator[None]:
        """No order of its own: the loader's (:meth:`ArraySource.orders`)."""
        del key
        return itertools.repeat(None)

    def chunks(self, order: None, start: int, k: int) -> Iterator[Chunk]:
        """Chunks of ``k`` checked batches (fewer at the end of the pass)."""
        del order  # the loader's order
        pending = _Stack(k)  # (each batch copied in when read: a loader may reuse its buffers)
        i = start
        first_of_chunk = start
        short: tuple[int, int] | None = None
        for item in self._batches(start):
            X, Y = self._pair(item, i)
            where = f"{self.name} batch {i}"
            checks.check_split(self.net, where, X, Y)  # (ranks first: a 0-d X has no size)
            if short is not None:
                raise ValueError(f"fit: data[{self.name!r}] batch {short[0]} has "
                                 f"{short[1]} samples, not {self.batch_size}; only the last "
                                 "batch of a pass may be smaller (it is dropped)")
            if np.shape(X)[0] > self.batch_size:
                raise ValueError(f"fit: data[{self.name!r}] batch {i} has {np.shape(X)[0]} "
                                 f"samples, more than the first batch's {self.batch_size}; "
                                 "every batch must have the first one's size")
            if np.shape(X)[0] != self.batch_size:
                short = (i, int(np.shape(X)[0]))
                continue
            pending.add(*_check_values(self.net, where, X, Y, self.loss))
            i += 1
            if pending.n == k:
                yield pending.take(first_of_chunk)
                first_of_chunk = i
        if i == start == 0 and short is None:
            raise self._empty_pass()
        if short is not None:
            warnings.warn(f"fit: data[{self.name!r}]'s last batch ({short[1]} samples, not "
                          f"{self.batch_size}) was dropped, as the in-memory epoch drops the "
                          "remainder" + (f"; its len() counts it, so a learning-rate schedule "
                                         f"takes {self.n_batches} steps per epoch, not "
                                         f"{self.n_batches - 1}: drop it in the loader or pass "
                                         f"Stream(steps_per_epoch={self.n_batches - 1})"
                                         if self.steps is None and self.n_batches else ""),
                          stacklevel=2)
        if pending.n:
            yield pending.take(first_of_chunk)

    def eval_chunks(self, c: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every batch of one pass (the last one too, whatever its size), all rows counted."""
        del c
        items, i = self._items(), -1
        while (item := self._next(items, i + 1)) is not _END:
            i += 1
            X, Y = self._pair(item, i)
            checks.check_split(self.net, f"{self.name} batch {i}", X, Y)
            X, Y = _check_values(self.net, f"{self.name} batch {i}", X, Y, self.loss, own=True)
            yield X, Y, np.ones(X.shape[0], bool)
        if i < 0:
            raise self._empty_pass()

    def _empty_pass(self) -> ValueError:
        """The error of a pass that yields no batch (the first pass was checked to have one:
        an iterable whose ``__iter__`` returns the same, exhausted, iterator each time)."""
        return ValueError(f"fit: data[{self.name!r}] yields no batch on a new pass: an "
                          "iterable is read once per epoch and evaluation, and its __iter__ "
                          "must start a new pass each time (a list, a DataLoader); give a "
                          "one-shot iterator with Stream(steps_per_epoch=N) instead")


_END = object()


class _Stack:
    """Up to ``k`` batches copied, as they are read, into aligned ``(k, batch, ...)``
    buffers: a loader that refills one buffer for each batch cannot change a batch read
    before (holding its arrays until the chunk was full trained the last batch ``k``
    times)."""

    def __init__(self, k: int) -> None:
        self.k, self.n, self.out = k, 0, None

    def add(self, X: np.ndarray, Y: np.ndarray) -> None:
        if self.out is None:
            self.out = tuple(checks.aligned((self.k, *a.shape), a.dtype) for a in (X, Y))
        self.out[0][self.n], self.out[1][self.n] = X, Y
        self.n += 1

    def take(self, start: int) -> Chunk:
        """The chunk of the batches added (its first: epoch batch ``start``); empties."""
        X, Y = (a[:self.n] for a in self.out)  # (a first rows' view: contiguous, aligned)
        self.n, self.out = 0, None
        return Chunk(start, X, Y)


def source(net: Network, name: str, xy: Any, loss: str, batch_size: int | None, epochs: int,
           stream: Stream, mesh=None) -> ArraySource | BatchSource:
    """The host-side source of one streamed split (arrays, or an iterable of batches)."""
    if isinstance(xy, tuple) and len(xy) != 2 and xy and all(is_array(a) for a in xy):
        raise TypeError(f"fit: data[{name!r}] is a tuple of {len(xy)} arrays; a split is a "
                        "pair (X, Y) of arrays, or an iterable of (X, Y) batches")
    if is_batch_iterable(xy):
        if jax.process_count() > 1:
            raise ValueError(f"fit: data[{name!r}] is an iterable of batches; under "
                             "jax.distributed give each process its own loader's shard as "
                             "arrays, or one iterable per process of its rows")
        return BatchSource(net, name, xy, loss, stream.steps_per_epoch, epochs, batch_size)
    if not (isinstance(xy, (tuple, list)) and len(xy) == 2):
        raise TypeError(f"data[{name!r}]: expected a pair (X, Y) or an iterable of batches")
    X, Y = (a if is_array(a) else np.asarray(a) for a in xy)  # nested lists: arrays
    n = int(np.shape(X)[0]) if len(np.shape(X)) else 0
    bs = n if batch_size is None else batch_size
    rows = slice(None)
    if jax.process_count() > 1:
        if mesh is None:
            raise ValueError("fit: streaming under jax.distributed needs mesh= (a mesh over "
                             "every process's devices)")
        rows = process_rows(min(bs, n), jax.process_index(), jax.process_count())
    return ArraySource(net, name, X, Y, loss, max(bs, 1), rows)


# -- the host loop -----------------------------------------------------------------------


def _put(device: Any, *arrays: np.ndarray) -> tuple:
    """Host ``arrays`` for a compiled call on the one ``device`` (the caller's default
    device, read in its thread: a reader thread does not see a ``jax.default_device``
    context). On a CPU the aligned host buffers themselves: the call takes them in its
    dispatch without a copy (8 us for 100 MB), where a ``jax.device_put`` cost the reader
    20-50 us per array. Elsewhere :func:`_device_put`, so the transfer overlaps the
    device's compute."""
    if device.platform != "cpu":
        return _device_put(device, *arrays)
    return tuple(a if a.flags.c_contiguous and not a.ctypes.data % checks.ALIGN
                 else _aligned_copy(a) for a in arrays)


def _device_put(device: Any, *arrays: np.ndarray) -> tuple:
    """``arrays`` placed on ``device`` but not committed to it, as a ``jax.device_put`` in
    the caller's thread places them: a compiled call follows parameters committed to
    another device instead of refusing the mix."""
    with jax.default_device(device):
        return tuple(jax.device_put(a) for a in arrays)


def _aligned_copy(a: np.ndarray) -> np.ndarray:
    out = checks.aligned(a.shape, a.dtype)
    out[...] = a
    return out


def _place(mesh, device, X: np.ndarray, Y: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """A chunk for the compiled step: :func:`_put` on ``device``, or with a ``mesh`` split
    over its ``'data'`` axis along the batch axis.

    Under ``jax.distributed`` each process holds only its rows of every batch
    (:func:`process_rows`) and the global chunk is assembled from them.
    """
    if mesh is None:
        return _put(device, X, Y)
    out = []
    for a in (X, Y):
        sharding = parallel.batch_sharded(mesh, a.ndim, axis=1)
        if jax.process_count() > 1:
            shape = (a.shape[0], a.shape[1] * jax.process_count(), *a.shape[2:])
            out.append(jax.make_array_from_process_local_data(sharding, a, shape))
        else:
            out.append(parallel.to_global(a, sharding))
    return out[0], out[1]


def _callers_settings() -> Callable[[], contextlib.ExitStack]:
    """The caller's JAX settings that reading a chunk depends on, to enter in a reader
    thread: JAX's setting contexts (``jax.enable_x64(True)``, ``jax.default_device``) hold
    in the thread that entered them, and a new thread starts from the process-wide ones.
    Under ``with jax.enable_x64(True)`` the reader read float32 chunks for a float64
    ``fit``."""
    x64, device = jax.config.jax_enable_x64, jax.config.jax_default_device

    def enter() -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(x64_mode(x64))
        stack.enter_context(jax.default_device(device))
        return stack

    return enter


class _Prefetch:
    """Iterate ``place(item)`` for the items of ``items``, ``depth`` read and placed ahead
    by a daemon thread (``depth=0``: in the caller's thread), which :meth:`start` starts.
    An exception in the reader is raised in the caller with its traceback; :meth:`close`
    stops the reader. Start it where a ``finally`` closes it: a Ctrl-C between a thread's
    start and the assignment of its owner left the thread running.

    With a thread, the first item is read in the caller's thread, when this is made
    (its errors raise here): the caller waits for it either way, and starting a thread
    and handing an item over cost more than a small chunk's read (a one-epoch streamed
    ``fit`` of a small Dense set took 1.5 ms, 0.3 ms of it waiting for the first chunk).
    """

    def __init__(self, items: Iterator, place: Callable, depth: int) -> None:
        self.items, self.place, self.depth = items, place, depth
        self.stop = threading.Event()
        self.first = [place(item) for item in itertools.islice(items, 1 if depth else 0)]
        self.settings = _callers_settings()
        if depth:
            self.q: queue.Queue = queue.Queue(maxsize=depth)
            self.thread = threading.Thread(target=self._read, daemon=True,
                                           name="epynn_jax-stream")

    def start(self) -> _Prefetch:
        if self.depth:
            self.thread.start()
        return self

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            with self.settings():
                while not self.stop.is_set():  # (before each read: closed while starting)
                    item = next(self.items, _END)
                    if item is _END:
                        break
                    if not self._put(self.place(item)):
                        return
                else:
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            self._put(err)
            return
        self._put(_END)

    def __iter__(self) -> Iterator[Any]:
        while self.first:
            yield self.first.pop()
        if not self.depth:
            for item in self.items:
                yield self.place(item)
            return
        while True:
            try:
                item = self.q.get(timeout=0.05)
            except queue.Empty:
                if not self.thread.is_alive() and self.q.empty():
                    return
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        if self.depth:
            while not self.q.empty():
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    break
            try:
                self.thread.join(timeout=5)
            except RuntimeError:  # never started, or interrupted as it started: it stops
                pass  # at its first look at self.stop


class Feeder:
    """The chunks of every epoch of one ``fit`` call, read ahead of the device.

    One reader (a thread, unless ``stream.prefetch == 0``; the first chunk is read
    when the feeder is made, in the caller's thread: see :class:`_Prefetch`) walks
    the epochs ``epoch, ..., epochs - 1`` (the first from batch ``start``): it takes
    each epoch's batch order from the source (arrays: the in-memory epoch's, drawn
    from the state key as the epoch draws it, :meth:`ArraySource.orders`), reads and
    checks ``k`` batches at a time (:func:`chunk_batches`) and places them for the
    caller's device (:func:`_put`), so the next epoch's first chunk is ready when
    this epoch ends (:meth:`first_of` hands it over before). A loader is read ahead
    the same way (its next pass starts while this one trains), unless a loader is
    also evaluated (``evaluated``: the sources ``fit`` evaluates after each epoch):
    then the reader waits for :meth:`evaluated` before it starts the next pass (see
    :class:`_Gate`). :meth:`close` stops the reader (``fit`` calls it when it ends,
    whatever the reason).
    """

    def __init__(self, src, stream: Stream, key: jax.Array, epoch: int, start: int,
                 epochs: int, mesh=None, evaluated: Iterable = (),
                 opened: list | None = None) -> None:
        self._gate = self._reader = None
        if opened is not None:  # (first: a Ctrl-C from here on finds it there, to close)
            opened.append(self)
        self.k = chunk_batches(stream, src.batch_bytes(), src.n_batches)
        self.src, self.first = src, epoch
        loaders = isinstance(src, BatchSource) and any(isinstance(s, BatchSource)
                                                      for s in evaluated)
        self._gate = _Gate(epoch) if loaders and stream.prefetch else None

        device = checks.default_device()  # (here: the caller's thread; see _put)

        def place(item):
            e, chunk = item
            return e, None if chunk is None else (chunk.start,
                                                  *_place(mesh, device, chunk.X, chunk.Y))

        self._reader = _Prefetch(self._read(key, epoch, start, epochs), place, stream.prefetch)
        self._items = iter(self._reader)
        self._back: list = []  # what :meth:`first_of` took and gives back: an item, an error
        self.last, self.reads_ahead = epochs, bool(stream.prefetch)
        self._reader.start()

    def _read(self, key: jax.Array, epoch: int, start: int, epochs: int) -> Iterator:
        orders = self.src.orders(key)
        for e in range(epoch, epochs):
            if self._gate is not None and not self._gate.wait(e):
                return  # closed while waiting
            for chunk in self.src.chunks(next(orders), start if e == epoch else 0, self.k):
                yield e, chunk
            yield e, None  # the end of epoch e

    def _next(self) -> tuple[int, Any]:
        """The reader's next ``(epoch, chunk or None)``, or what :meth:`first_of` gave back."""
        if self._back:
            item = self._back.pop()
            if isinstance(item, BaseException):
                raise item
            return item
        return next(self._items)  # (StopIteration: the reader has read every epoch)

    def epoch(self, e: int) -> Iterator[tuple[int, jax.Array, jax.Array]]:
        """``(first batch, X, Y)`` of each chunk of epoch ``e`` (the epochs in order; after
        :meth:`first_of` took its first chunk, the others)."""
        while True:  # (leaving early keeps the reader open)
            try:
                got, item = self._next()
            except StopIteration:
                return
            if got != e:
                raise RuntimeError(f"streaming: the reader is at epoch {got}, not {e}")
            if item is None:
                return
            yield item

    def first_of(self, e: int) -> tuple[int, jax.Array, jax.Array] | None:
        """Epoch ``e``'s first chunk, taken while epoch ``e - 1``'s last one trains (then
        :meth:`epoch` yields the others), or None: ``e`` is past this feeder's epochs, the
        stream reads in the training loop (``prefetch=0``: a callback's change to the
        arrays is then read by the next epoch), or a loader's next pass waits for the
        evaluation (:class:`_Gate`). An error reading it is given back, raised where
        epoch ``e`` reads its chunks: epoch ``e - 1`` ends, is recorded and saved first."""
        if e >= self.last or not self.reads_ahead or self._gate is not None:
            return None
        try:
            got, item = self._next()
        except StopIteration:
            return None
        except Exception as err:  # noqa: BLE001 - given back, raised by epoch(e)
            self._back.append(err)
            return None
        if got != e or item is None:
            self._back.append((got, item))
            return None
        return item

    def evaluated(self, e: int) -> None:
        """Epoch ``e`` is trained and evaluated: the reader may start epoch ``e + 1``'s pass."""
        if self._gate is not None:
            self._gate.open(e + 1)

    def close(self) -> None:
        if self._gate is not None:
            self._gate.close()  # (first: a reader waiting at the gate must see the stop)
        if self._reader is not None:
            self._reader.close()


class _Gate:
    """Holds the reader thread before an epoch's pass until ``fit`` has evaluated the
    epoch before it.

    A loader's batches can depend on the order of its passes (a shuffle drawn in
    ``__iter__`` from a random state, perhaps shared with another loader). With
    a loader evaluated after each epoch, a reader free to start the next training
    pass would draw from that state while the evaluation does, in an order set by
    thread timing: batches, and parameters, would differ from run to run and from
    ``prefetch=0``. Waiting here keeps the passes in the order of ``prefetch=0``
    (train e, evaluate e, train e + 1); the reader still reads ahead within a pass.
    Arrays need no gate: their batches are keyed by epoch, whatever the timing.
    """

    def __init__(self, epoch: int) -> None:
        self._cond = threading.Condition()
        self._open = epoch  # the last epoch whose pass may start
        self._closed = False

    def open(self, epoch: int) -> None:
        with self._cond:
            self._open = max(self._open, epoch)
            self._cond.notify_all()

    def wait(self, epoch: int) -> bool:
        """Wait until epoch ``epoch`` may start: True, or False when the gate was closed
        (``fit`` ended: stopped early, interrupted, failed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._open >= epoch)
            return not self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class ChunkDone(NamedTuple):
    """What the host knows after a chunk's guard was read: the state after ``batches`` steps
    of the epoch (its key still the epoch's first)."""

    batches: int
    state: TrainState


class Head(NamedTuple):
    """An epoch's first chunk, dispatched by :func:`stream_epoch` before the epoch before
    it was settled: ``start`` (the state it trained from: that epoch's end state), the
    chunk ``(first batch, X, Y)`` and its pending outputs (None: its dispatch failed, and
    is made again, where its error belongs, by the epoch it is the first chunk of)."""

    start: TrainState
    keys: tuple   # ``_split3(start.key)``: the epoch's next, shuffle and step keys
    chunk: tuple
    pending: tuple | None


def stream_epoch(net: Network, update, loss: str, state: TrainState,
                 chunks: Iterable[tuple[int, jax.Array, jax.Array]], *, guard: bool = True,
                 mesh=None, on_chunk: Callable[[ChunkDone], None] | None = None,
                 head: Head | None = None,
                 ahead: Callable[[], tuple[int, jax.Array, jax.Array] | None] | None = None
                 ) -> tuple[TrainState, Guard | None, Head | None]:
    """One epoch over the placed ``chunks`` of a :class:`Feeder`; returns ``(state after
    it, None, head)``, or ``(last good state, the failed Guard, None)`` when a chunk's guard
    fails.

    ``state`` is the state at the START of the epoch, except its parameters and
    optimizer state, which are those after the batches before the first chunk
    (a resumed epoch). The epoch's keys are those of the in-memory epoch. The
    guard of each chunk is read while the next one is queued on the device;
    then ``on_chunk(ChunkDone(batches done, state))`` is called (the state's
    key is still the epoch's first: a checkpoint of it resumes this epoch). The
    failed Guard's ``bad_step`` is the epoch's batch index, and the epoch stops
    there (the caller raises).

    Across epochs: ``ahead()`` gives the next epoch's first chunk (or None), which
    is dispatched from this epoch's end state before this epoch's last guard is
    read, so the device does not wait while the host ends the epoch (reads its
    guard, records, evaluates, calls back). It is returned as a :class:`Head`,
    which the next epoch's call takes as ``head`` (its first chunk, not read
    again from ``chunks``); a caller that stops drops it (its outputs are never
    read: the state stays this epoch's). A ``head`` that did not start from
    ``state``, or whose dispatch failed (out of device memory, say: the error is then
    raised by the next epoch, once this one is recorded), is dispatched again from it.
    """
    fresh = head is not None and all(a is b for a, b in zip(head.start, state))
    key, _, step_key = head.keys if fresh else _split3(state.key)
    good = state
    pending: tuple | None = None
    failed: Guard | None = None

    def dispatch(first, X, Y, params, opt_state, step_key=step_key) -> tuple:
        return (first, X, Y, *train_chunk(net, update, loss, params, opt_state, step_key,
                                          np.int32(first), X, Y, guard, mesh=mesh))

    def settle(item) -> bool:
        nonlocal good, failed
        first, X, Y, params, opt_state, costs, ok = item
        if ok is not None and not fetch(ok):  # replay the chunk, a flag per step: where it failed
            located = fetch(train_chunk(net, update, loss, good.params, good.opt_state,
                                        step_key, np.int32(first), X, Y, True, mesh=mesh,
                                        locate=True)[3])
            watch = fetch(epoch_guard(params, costs)) if located.ok else located
            failed = watch._replace(bad_step=np.asarray(first + int(watch.bad_step)))
            return False
        n = X.shape[0]
        good = TrainState(params, opt_state, state.key)
        if on_chunk is not None:
            on_chunk(ChunkDone(first + n, good))
        return True

    settling = False  # a settle of `pending` began: an error from it is not the next read's

    def settle_pending() -> bool:  # (one cut short by Ctrl-C is done again by its handler)
        nonlocal pending, settling
        settling = True
        ok = settle(pending)
        pending, settling = None, False
        return ok

    nxt: Head | None = None
    try:
        params, opt_state = state.params, state.opt_state
        if head is not None:
            pending = (head.pending if fresh and head.pending is not None else
                       dispatch(*head.chunk, params, opt_state))
            params, opt_state = pending[3], pending[4]
        for first, X, Y in chunks:
            item = dispatch(first, X, Y, params, opt_state)
            params, opt_state = item[3], item[4]
            if pending is not None and not settle_pending():  # one chunk behind the device
                return good, failed, None
            pending = item
        if ahead is not None and (chunk := ahead()) is not None:  # the next epoch's first
            keys = _split3(key)
            try:
                dispatched = dispatch(*chunk, params, opt_state, keys[2])
            except Exception:  # noqa: BLE001 - e.g. out of device memory: dispatched again,
                dispatched = None  # and raised, by the next epoch, once this one is done
            nxt = Head(TrainState(params, opt_state, key), keys, chunk, dispatched)
        if pending is not None and not settle_pending():
            return good, failed, None
    except KeyboardInterrupt:  # the chunk already dispatched counts, if it is good
        if pending is not None:
            settle(pending)
        raise
    except Exception:  # reading or placing the next chunk failed: the one in flight counts
        if pending is not None and not settling:  # (on_chunk's own error: told once)
            with contextlib.suppress(Exception):  # (the error to raise is the first one)
                settle(pending)
        raise
    return TrainState(good.params, good.opt_state, key), None, nxt  # (nxt.start's arrays)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _epoch_order(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """``(next epoch's key, batch order (n_batches, batch_size))`` of the epoch whose state
    key is ``key``: the in-memory epoch's (the first and, through
    :func:`~epynn_jax.network.epoch.epoch_batches`, the second of ``split(key, 3)``), in
    one compiled call. (Drawing several epochs' orders per call saved nothing: on a CPU
    the permutation's compute, about 80 us for 683 samples, is most of the call.)"""
    next_key, shuffle_key, _ = prng.split(key, 3)
    return next_key, epoch_batches(shuffle_key, n, batch_size)


@jax.jit
def _split3(key: jax.Array):
    """``jax.random.split(key, 3)`` as one compiled call (eagerly it is several)."""
    return tuple(prng.split(key, 3))


def _rows_in_budget(net: Network, stream: Stream, *arrays) -> int:
    """Rows per chunk of ``arrays`` read from the host: :func:`eval_chunk`'s, fewer when the
    chunks in flight (``prefetch + 2``: read ahead, being placed, computed) would pass the
    stream's memory budget; at least one."""
    row = sum(math.prod(np.shape(a)[1:]) for a in arrays) * np.dtype(float_dtype()).itemsize
    per_chunk = max(row, 1) * (stream.prefetch + 2)
    return max(1, min(eval_chunk(net), memory_budget(stream) // per_chunk))


def evaluate_source(net: Network, params: Params, src, metric_names: tuple[str, ...],
                    chunk: int | None = None, mesh=None, stream: Stream | None = None
                    ) -> dict:
    """Every metric on a streamed split, one chunk at a time: the summed statistics of the
    chunks (:func:`~epynn_jax.maths.metrics.statistics`), equal to one forward's metrics.

    With a ``stream`` (``network.evaluate``'s), ``stream.prefetch`` chunks are read and
    placed ahead by a reader thread, and the default chunk is smaller when the chunks
    in flight would pass its memory budget, as :func:`predict_array` reads; without
    one (``fit``'s evaluation) they are read in the caller's thread."""
    c = eval_chunk(net) if chunk is None else chunk
    depth = 0
    if stream is not None:
        depth = stream.prefetch
        if chunk is None and isinstance(src, ArraySource):
            c = _rows_in_budget(net, stream, src.X, src.Y)
    device = checks.default_device()  # (the caller's: see _put)
    reader = _Prefetch(src.eval_chunks(c),
                       lambda xym: (*_place_flat(mesh, device, *xym[:2]), xym[2]), depth)
    total = None
    try:
        for X, Y, mask in reader.start():  # (read with the collector on: see network._gc)
            with _gc.paused():  # its first call traces
                stats = _chunk_statistics(net, metric_names, params, X, Y, mask)
            total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    finally:
        reader.close()
    dtype = _forward_facts(net, np.dtype(float_dtype()))[2]
    with _gc.paused():
        return _from_statistics(metric_names, total, np.dtype(dtype))


def _place_flat(mesh, device, X, Y):
    if mesh is None:
        return _put(device, X, Y)
    return parallel.shard_samples(X, mesh), parallel.shard_samples(Y, mesh)


def evaluate_split(net: Network, params: Params, split, metric_names: tuple[str, ...],
                   chunk: int | None = None, mesh=None) -> dict:
    """:func:`evaluate_source` of a source, the compiled in-memory evaluation of device
    arrays."""
    if isinstance(split, (ArraySource, BatchSource)):
        return evaluate_source(net, params, split, metric_names, chunk, mesh)
    return evaluate_jit(net, params, *split, metric_names, _check_chunk(net, chunk, mesh), mesh)


def predict_array(net: Network, params: Params, X, stream: Stream,
                  chunk: int | None = None) -> np.ndarray:
    """The network's output on the host array ``X`` (an ``np.memmap``, or an array too
    large for the device) as a NumPy array (n, *output_shape), ``c`` rows at a time: only
    a chunk of ``X`` is ever read, checked (finite; within float16 under a float16
    policy) and placed, ``stream.prefetch`` chunks ahead by a reader thread.

    ``c`` is ``chunk``, else :func:`eval_chunk` rows, fewer if the chunks in flight
    (``prefetch + 2``) would exceed ``stream``'s memory budget. The chunks are
    contiguous, the last one overlapping the one before, so one compiled size serves
    them all."""
    n = int(np.shape(X)[0])
    dtype = np.dtype(float_dtype())
    if chunk is None:
        chunk = _rows_in_budget(net, stream, X)
    c = max(1, min(chunk, n))
    files = _mapped_files(X)
    out = np.empty((n, *net.output_shape), _forward_facts(net, dtype)[2])

    def read(start: int) -> tuple[int, jax.Array]:
        s = min(start, n - c)
        where = f"predict X samples {s}-{s + c - 1}"
        _check_mapped(files, where, "predict")
        Xc = checks.host_float(_read(X, slice(s, s + c), "predict X"), where)
        checks.check_compute_range(net, Xc, where)
        return s, _put(device, Xc)[0]

    device = checks.default_device()  # (the caller's: see _put)
    reader = _Prefetch(iter(range(0, n, c)), read, stream.prefetch)
    try:
        for s, Xc in reader.start():  # (read with the collector on: see network._gc)
            with _gc.paused():  # its first call traces
                A = predict_jit(net, params, Xc, c)
            out[s:s + c] = np.asarray(A)
    finally:
        reader.close()
    return out
