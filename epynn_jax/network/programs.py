"""Compiled programs stored beside JAX's persistent compilation cache, found without
tracing or lowering them again.

JAX's persistent cache (``epynn_jax.config.setup``) is keyed on a program's lowered
text: a fresh process still traces and lowers ``fit``'s epoch before it looks there
(0.09-0.1 s on a 2-core CPU for a small Dense network, then 0.03 s to read it). This
store keys the executable on what determines the program instead, so a fresh
process reads it in one step (0.03 s):

- the program's name and static arguments: the network (every layer one of
  :mod:`epynn_jax.layers`, described by its ``repr``), the optimizer's ``update``
  (one built by :func:`~epynn_jax.network.optim.epynn_sgd`, see
  :func:`~epynn_jax.network.optim.describe`), the loss, metrics, batch size, guard,
  evaluation chunk;
- the shapes, dtypes and weak types of the array arguments, and their tree;
- the environment: the versions of Python, NumPy, JAX, jaxlib, optax and epynn_jax, the
  size and time of every source file of epynn_jax, the functions behind the activation,
  loss, metric and initializer names, every JAX setting (``jax.config.values``, context
  managers included), ``XLA_FLAGS``, the devices and the host CPU's model and
  instruction sets.

Anything else is not stored, and is compiled as before: a layer, loss or optimizer
defined outside epynn_jax (its code is not in the key), a mesh, several processes or
devices, ``jax.disable_jit`` or ``jax.debug_nans``. What the key cannot see is a change
made at run time to epynn_jax's own modules (a patched function or constant): set
``EPYNN_JAX_NO_PROGRAM_STORE=1`` when doing that.

The store is on exactly when JAX's persistent cache is (a local directory): it lives
in its ``epynn_jax-programs`` subdirectory, at most :data:`MAX_PROGRAMS` files (the
least recently used go first). A file is written whole or not at all (a temporary
file, then a rename); one that cannot be read (truncated, corrupt, from another
version) is deleted and the program compiled again. The executable inside is JAX's
own serialization (``jax.experimental.serialize_executable``, a pickle): like JAX's
cache, the directory is trusted code; do not point it at one others can write.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

try:  # what jax.jit's own cache keys on besides the arguments (JAX's, not public)
    from jax._src.config import trace_context as _trace_context
except ImportError:  # pragma: no cover - another JAX: the full settings, slower
    _trace_context = None

from epynn_jax.network.model import Network
from epynn_jax.network.optim import describe as describe_update

__all__ = ["MAX_PROGRAMS", "store_dir", "call", "describe_net", "clear_memory", "stats"]

#: the first line of a stored program (its format's version)
MAGIC = b"epynn_jax compiled program 1\n"
#: the most programs the store keeps (the least recently used are deleted first)
MAX_PROGRAMS = 256
#: the subdirectory of JAX's persistent cache that holds the store
SUBDIR = "epynn_jax-programs"
#: a stored program larger than this is not read (it is not one: they are ~0.1 MB)
MAX_BYTES = 256 * 2**20
#: a temporary file older than this is what a killed process left: it is deleted
STALE_TMP_SECONDS = 3600.0

#: programs loaded or compiled in this process, by their in-process key (the most recently
#: used :data:`MAX_PROGRAMS`)
_MEMORY: collections.OrderedDict[tuple, Callable] = collections.OrderedDict()
#: this process's count of programs read from the store and compiled for it, and the
#: seconds spent finding and reading the ones read
_STATS = {"loaded": 0, "compiled": 0, "load_seconds": 0.0}


def clear_memory() -> None:
    """Forget the programs loaded in this process (the files stay)."""
    _MEMORY.clear()


def stats() -> dict:
    """``{'loaded': n, 'compiled': n, 'load_seconds': s}`` of this process: the programs
    read from the store, those compiled for it (not found), and the seconds spent finding
    and reading the ones read (their keys included: a fresh process's compile-related
    time, beside JAX's own compile events)."""
    return dict(_STATS)


def _opted_out() -> bool:
    return os.environ.get("EPYNN_JAX_NO_PROGRAM_STORE", "").strip().lower() not in (
        "", "0", "false", "no")


def store_dir() -> Path | None:
    """The store's directory: :data:`SUBDIR` in JAX's persistent cache when that cache is
    on in a local directory, and ``EPYNN_JAX_NO_PROGRAM_STORE`` is not set; else None."""
    if _opted_out() or not jax.config.jax_enable_compilation_cache:
        return None
    base = jax.config.jax_compilation_cache_dir
    if not base or "://" in str(base) or not os.path.isdir(base):
        return None
    return Path(base) / SUBDIR


# -- the key --------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


@functools.lru_cache(maxsize=1)
def _sources() -> str:
    """The size and modification time of every ``.py`` file of epynn_jax (a digest)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        st = path.stat()
        h.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _registries() -> str | None:
    """The functions behind the activation, loss, metric and initializer names; None when
    one is not epynn_jax's own (replaced at run time: its code is not in the key)."""
    from epynn_jax.maths import activations, initializers, losses, metrics

    out = []
    for table in (activations.ACTIVATIONS, losses.LOSSES, metrics.METRICS,
                  initializers.INITIALIZERS):
        for name, fns in sorted(table.items()):
            for fn in fns if isinstance(fns, tuple) else (fns,):
                module = getattr(fn, "__module__", "") or ""
                if not module.startswith("epynn_jax."):
                    return None
                out.append(f"{name}={module}.{getattr(fn, '__qualname__', '?')}")
    return ";".join(out)


def _host_cpu() -> str:
    """The host CPU's model and instruction sets (an executable compiled for a CPU is
    not run on another one sharing the directory, as on a network home)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [x for x in f.read().splitlines()
                     if x.startswith(("model name", "flags", "Features", "CPU part"))]
        return hashlib.sha256("\n".join(sorted(set(lines))).encode()).hexdigest()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


@functools.lru_cache(maxsize=1)
def _process() -> str:
    """What does not change in a process: versions, sources, devices, the host CPU."""
    devices = jax.devices()
    return json.dumps({
        "python": platform.python_version(), "numpy": np.__version__,
        "jax": jax.__version__, "jaxlib": _version("jaxlib"), "optax": _version("optax"),
        "epynn_jax": [_version("epynn-jax"), _sources()], "cpu": _host_cpu(),
        "platform": devices[0].platform,
        "platform_version": devices[0].client.platform_version,
        "devices": [d.device_kind for d in devices], "processes": jax.process_count()})


def _context() -> Any:
    """What ``jax.jit`` keys its own cache on besides the arguments: the JAX settings that
    change a trace (context managers included), hashable and cheap (the in-process key);
    every setting (:func:`_settings`) where JAX does not have it."""
    return _settings() if _trace_context is None else _trace_context()


def _settings() -> str:
    """Every JAX setting as it is now (context managers included) and the XLA flags."""
    values = jax.config.values
    return repr(sorted((k, repr(values[k])) for k in values)) + "|" + repr(
        [os.environ.get(k) for k in ("XLA_FLAGS", "LIBTPU_INIT_ARGS")])


@functools.lru_cache(maxsize=64)
def describe_net(net: Network) -> str | None:
    """``repr(net)`` when it says everything its program depends on: every layer one of
    :mod:`epynn_jax.layers` and no object printed by its address; else None."""
    if not all(type(layer).__module__.startswith("epynn_jax.layers.") for layer in net.layers):
        return None
    text = repr(net)
    return None if " at 0x" in text else text


def _describe(value: Any) -> str | None:
    """A static argument as text (None: not describable)."""
    if isinstance(value, Network):
        return describe_net(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, tuple) and all(isinstance(v, (str, int)) for v in value):
        return repr(value)
    if callable(value):
        return describe_update(value)
    return None


def _leaf(x: Any) -> tuple | None:
    """A dynamic argument's shape, dtype and weak type; None unless it is a JAX array or a
    NumPy one (which the program places, as ``predict`` gives its checked input: see
    :func:`~epynn_jax.network.checks.as_float_arg`). Its device is not read (a key array's
    sharding costs 5 µs): :func:`_storable` holds only with one device, and JAX's default
    device is in the trace context."""
    if isinstance(x, np.ndarray):
        canonical = x.dtype.isnative and jax.dtypes.canonicalize_dtype(x.dtype) == x.dtype
        return (x.shape, x.dtype, False) if canonical else None
    if not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
        return None
    return (x.shape, x.dtype, bool(getattr(x, "weak_type", False)))


def _storable() -> bool:
    """JAX's persistent cache on (a directory set: JAX's switch alone is on by default),
    the store not opted out, and nothing in force that changes how a program runs without
    being in its text. Cheap: checked at every call, before anything else."""
    return (jax.config.jax_enable_compilation_cache
            and bool(jax.config.jax_compilation_cache_dir) and not _opted_out()
            and not (jax.config.jax_disable_jit or jax.config.jax_debug_nans
                     or jax.config.jax_debug_infs or jax.process_count() > 1
                     or jax.device_count() > 1))


# -- loading, saving ------------------------------------------------------------------


def _path(directory: Path, key: str) -> Path:
    return directory / f"{hashlib.sha256(key.encode()).hexdigest()}.program"


def _discard(path: Path) -> None:
    """Delete the file at ``path`` if it can be (a directory or an unwritable place
    stays: the program is then compiled and not stored, as with the store off)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _load(path: Path, key: str, in_tree, out_tree) -> Callable | None:
    """The program stored at ``path`` for ``key``; None when there is none or it cannot be
    read (then the file is deleted)."""
    from jax.experimental import serialize_executable

    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError("too large")
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # unreadable, too large, not a file, not in a directory
        _discard(path)
        return None
    try:
        head, stored_key, blob = data.split(b"\n", 2)
        if head + b"\n" != MAGIC or stored_key.decode() != key:
            raise ValueError("another program or format")
        program = serialize_executable.deserialize_and_load(zlib.decompress(blob), in_tree,
                                                            out_tree)
    except Exception:  # noqa: BLE001 - any damage: compile it again
        _discard(path)
        return None
    try:
        os.utime(path)  # recently used
    except OSError:
        pass
    return program


def _save(directory: Path, path: Path, key: str, program) -> None:
    """Write ``program`` whole (a temporary file renamed over ``path``), then keep the
    :data:`MAX_PROGRAMS` most recently used; silently nothing when it cannot."""
    from jax.experimental import serialize_executable

    try:
        blob, _, _ = serialize_executable.serialize(program)
    except Exception:  # noqa: BLE001 - not serializable on this backend: not stored
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + key.encode() + b"\n" + zlib.compress(blob, 1))
            os.replace(tmp, path)
        except BaseException:
            _discard(Path(tmp))
            raise
        _evict(directory)
    except OSError:
        return


def _evict(directory: Path) -> None:
    """Keep the :data:`MAX_PROGRAMS` most recently used programs; delete the temporary
    files of writes that never finished (a process killed while saving)."""
    now = time.time()
    for tmp in directory.glob(".tmp-*"):
        try:
            stale = now - tmp.stat().st_mtime > STALE_TMP_SECONDS
        except OSError:
            continue
        if stale:
            _discard(tmp)
    stamped = []
    for path in directory.glob("*.program"):
        if path.name.startswith("."):
            continue
        try:
            stamped.append((path.stat().st_mtime_ns, path))
        except OSError:  # deleted meanwhile by another process
            continue
    for _, old in sorted(stamped)[:max(len(stamped) - MAX_PROGRAMS, 0)]:
        _discard(old)


# -- the entry point ---------------------------------------------------------------------


def call(fn, name: str, static: tuple, args: tuple, kwargs: dict, dynamic: tuple,
         out_tree: Callable[[], Any], dynamic_kw: dict | None = None) -> Any:
    """``fn(*args, **kwargs)`` (a ``jax.jit`` function), run by the stored program when
    there is one: read from the store, or compiled and stored, then called with
    ``dynamic`` and ``dynamic_kw`` (``fn``'s non-static arguments, positional ones in
    order and keyword ones by name).

    ``static`` lists the static arguments' values and ``out_tree()`` gives the tree of
    the outputs (checked against the compiled program's before it is stored). When the
    store is off or the program cannot be keyed, ``fn`` itself runs.
    """
    dynamic_kw = dynamic_kw or {}
    program = _program(fn, name, static, args, kwargs, dynamic, dynamic_kw, out_tree)
    if program is None:
        return fn(*args, **kwargs)
    return program(*dynamic, **dynamic_kw)


def _program(fn, name, static, args, kwargs, dynamic, dynamic_kw, out_tree):
    """The compiled program :func:`call` runs; None when the store is off or the program
    cannot be keyed."""
    if not _storable():
        return None
    leaves, tree = jax.tree.flatten((dynamic, dynamic_kw))
    avals = tuple(_leaf(x) for x in leaves)
    if any(a is None for a in avals):
        return None
    try:
        memo = (name, static, tree, avals, _context())
        if memo in _MEMORY:
            _MEMORY.move_to_end(memo)
            return _MEMORY[memo]
    except TypeError:  # an unhashable static argument
        return None
    start = time.perf_counter()  # finding a stored program: the key, then the file
    directory = store_dir()
    described = [_describe(v) for v in static]
    registries = _registries()
    if directory is None or any(d is None for d in described) or registries is None:
        return None
    key = json.dumps([name, described, str(tree), [list(map(str, a)) for a in avals],
                      _process(), _settings(), registries])
    path = _path(directory, key)
    expected_out = out_tree()
    program = _load(path, key, tree, expected_out)  # called as (positional, keyword)
    if program is None:
        program = fn.lower(*args, **kwargs).compile()
        _STATS["compiled"] += 1
        if program.out_tree == expected_out:
            # before its first run: XLA:CPU refused to serialize an epoch executable
            # that had run ("`LessThan` is not serializable")
            _save(directory, path, key, program)
    else:
        _STATS["loaded"] += 1
        _STATS["load_seconds"] += time.perf_counter() - start
    _MEMORY[memo] = program
    if len(_MEMORY) > MAX_PROGRAMS:
        _MEMORY.popitem(last=False)
    return program
