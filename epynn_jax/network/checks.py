"""Validation of everything ``fit`` and ``predict`` are given, before any tracing.

Each check raises a clear ``ValueError``/``TypeError`` naming the argument (and
the layer, where one is concerned) and returns the value in the form the
compiled code takes (device arrays in the working float dtype, a PRNG key).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.layers.base import float_dtype
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.maths.schedules import Schedule
from epynn_jax.network.model import Network, Params, check_input_shape, check_net

__all__ = ["ALIGN", "aligned", "all_finite", "is_real", "host_float", "as_floats", "as_float_arg",
           "positive_int", "PARAM_DTYPES", "check_bool", "check_net",
           "check_static", "check_params", "check_params_finite", "remember_finite",
           "check_compute_range", "check_key", "exact_cast", "check_options", "check_opt_state",
           "restore_opt_state", "check_fit_metadata", "check_split", "check_pair",
           "check_label_range", "check_data", "check_eval_splits"]


#: Host buffers fit makes are aligned to this many bytes: a CPU device then takes them
#: without a copy (``jax.device_put`` of a 16 MB chunk: 0.07 ms aligned, 50 ms not, on a
#: 2-core VM); the device array then shares the buffer, so it must be one nobody else holds.
ALIGN = 64


def aligned(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An empty C-contiguous array whose data starts on an :data:`ALIGN`-byte boundary."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    if not size:  # no data to align
        return np.empty(shape, dtype)
    buf = np.empty(size + ALIGN, np.uint8)
    start = -buf.ctypes.data % ALIGN
    return buf[start:start + size].view(dtype).reshape(shape)


def all_finite(a: np.ndarray) -> bool:
    """Every element of the float array ``a`` finite: one sum (finite sums are the rule),
    the exact test only when the sum is not (it may overflow on finite values)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return True
    return bool(np.isfinite(a).all())


def is_real(dtype: Any) -> bool:
    """Whether ``dtype`` holds real numbers: bool, int, float, and the 16- and 8-bit floats
    of ``ml_dtypes`` (bfloat16, float8_*), whose NumPy kind is ``'V'``."""
    dtype = np.dtype(dtype)
    return dtype.kind in "biuf" or (dtype.kind == "V" and jnp.issubdtype(dtype, jnp.floating))


def check_unmasked(a, where: str) -> None:
    """Raise unless ``a`` is no masked array with masked values: ``np.asarray`` drops the
    mask, so the values under it would be used as data."""
    if isinstance(a, np.ma.MaskedArray) and np.ma.is_masked(a):
        raise ValueError(f"{where}: a masked array with {int(np.ma.count_masked(a))} masked "
                         "values; the values under the mask would be used as data: fill them "
                         "(.filled(value)) or leave those samples out")


def _numeric(a, where: str) -> np.ndarray:
    check_unmasked(a, where)
    try:
        arr = np.asarray(a)
    except ValueError as err:  # a ragged nested list
        raise ValueError(f"{where}: not an array of one shape ({err})") from None
    if not is_real(arr.dtype):
        raise TypeError(f"{where}: expected numeric data, got dtype {arr.dtype}")
    return arr


def host_float(a, where: str, *, own: bool = False) -> np.ndarray:
    """``a`` as a NumPy array of the working float dtype; numeric and finite, else an error.

    ``own=True``: always a new :func:`aligned` buffer (one copy, the conversion itself),
    which a CPU device takes without copying again; else ``a`` itself when it already
    has the working dtype.
    """
    arr = _numeric(a, where)
    dtype = np.dtype(float_dtype())
    if own:
        out = aligned(arr.shape, dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range: inf
            np.copyto(out, arr, casting="unsafe")
    else:
        with np.errstate(over="ignore"):
            out = arr.astype(dtype, copy=False)
    if not all_finite(out):
        raise ValueError(f"{where}: contains NaN or inf values (after conversion to "
                         f"{out.dtype})")
    return out


def default_device() -> Any:
    """The device ``jax.device_put`` places on (``jax.default_device`` honoured)."""
    d = jax.config.jax_default_device
    if d is None:
        return jax.devices()[0]
    return jax.devices(d)[0] if isinstance(d, str) else d


def finite_sum(tree) -> jax.Array:
    """One bool: every element of ``tree`` is finite (traceable).

    ``sum(x * 0) == 0``: ``x * 0`` is 0 for a finite ``x`` and NaN for a NaN or
    inf, so one reduction per leaf (fused with the update that writes it)
    replaces an element-wise test, and, unlike a sum of the values, it cannot
    overflow to inf on large finite ones.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.array(True)
    return sum(jnp.sum(x * 0) for x in leaves) == 0


_device_tree_finite = jax.jit(finite_sum)


def tree_finite(tree: Any) -> bool:
    """Whether every array of ``tree`` (JAX arrays, e.g. parameters after some epochs) is
    finite: host views on a CPU, one compiled reduction on an accelerator. Nothing is
    remembered (:func:`remember_finite` does that)."""
    leaves = jax.tree.leaves(tree)
    if all(next(iter(a.devices())).platform == "cpu" for a in leaves):
        return all(all_finite(np.asarray(a)) for a in leaves)
    return bool(_device_tree_finite(leaves))


#: JAX arrays found finite, by ``id``: a weak reference to each, so an entry holds
#: nothing alive and a new array at a reused address is not taken for an old one.
#: (JAX arrays are immutable: checked once, finite for good.) The last few only.
_FINITE: dict[int, weakref.ref] = {}
_IN_FLOAT16: dict[int, weakref.ref] = {}  # parameters checked within float16's range
_FINITE_MAX = 256  # (a parameter tree and the data sets of a few fits)


def _known(a: jax.Array, memo: dict = _FINITE) -> bool:
    ref = memo.get(id(a))
    return ref is not None and ref() is a and not a.is_deleted()


_MEMO_LOCK = threading.Lock()  # fits in threads fill the memos at once


def _remember(a: jax.Array, memo: dict = _FINITE) -> None:
    with _MEMO_LOCK:  # (two threads evicting the same oldest entry: a KeyError)
        memo.pop(id(a), None)  # a dead array's entry at this address: the new one is newest
        while len(memo) >= _FINITE_MAX:
            del memo[next(iter(memo))]  # the oldest
        memo[id(a)] = weakref.ref(a)


def _finite_once(a) -> bool:
    """Whether the array ``a`` (NumPy or JAX) is finite: a JAX array read in place (a host
    view on a CPU, one reduction on an accelerator) and, when finite, remembered (JAX
    arrays are immutable: checked once, finite for good)."""
    if not isinstance(a, jax.Array):
        return all_finite(np.asarray(a))
    if _known(a):
        return True
    ok = tree_finite(a)
    if ok:
        _remember(a)
    return ok


def _kept_on_device(a, where: str) -> bool:
    """Whether ``a`` is a JAX array of the working dtype on the default device, used where it
    is; checked in place (a host view on a CPU, one reduction on an accelerator), once per
    array (a ``fit`` per epoch on the same arrays sums them once). Arrays elsewhere
    (another device, several) go through the host like NumPy data, so that every split
    lands on the same device."""
    if not (isinstance(a, jax.Array) and a.dtype == np.dtype(float_dtype())
            and a.is_fully_addressable and a.devices() == {default_device()}):
        return False
    if not _finite_once(a):
        raise ValueError(f"{where}: contains NaN or inf values")
    return True


def as_floats(arrays: Sequence, wheres: Sequence[str]) -> list[jax.Array]:
    """``arrays`` as device arrays of the working float dtype; numeric and finite, else an
    error naming the array (``wheres``).

    A JAX array that already has that dtype is kept where it is; anything else is
    converted on the host into a buffer of its own (:func:`host_float`), and those are
    placed with ONE ``jax.device_put`` (each call costs tens of microseconds; and
    ``jnp.asarray`` would compile a small program per shape).
    """
    out = [a if _kept_on_device(a, where) else host_float(a, where, own=True)
           for a, where in zip(arrays, wheres)]
    host = [i for i, a in enumerate(out) if isinstance(a, np.ndarray)]
    if host:  # (device_put of nothing still costs its tens of microseconds)
        for i, placed in zip(host, jax.device_put([out[i] for i in host])):
            out[i] = placed
    return out


def as_float_arg(a, where: str) -> jax.Array | np.ndarray:
    """One array checked as :func:`as_floats` checks it, for a compiled call to place: a JAX
    array kept where it is, anything else a host buffer of its own (:func:`host_float`)
    that the compiled call transfers in its C++ dispatch (a ``jax.device_put`` first cost
    ``predict`` of one sample 40-75 us more, a third of the call). The buffer is the
    call's alone, so a change to ``a`` once the call returns cannot reach the result."""
    return a if _kept_on_device(a, where) else host_float(a, where, own=True)


def check_static(net: Network, where: str) -> Network:
    """``net`` if it is hashable (a static argument of the compiled epoch and forward), else a
    ``TypeError`` naming the first layer and field that is not (a list where the layer
    contract asks for a tuple)."""
    try:
        hash(net)
    except TypeError:
        for i, layer in enumerate(net.layers):
            for field in dataclasses.fields(layer):
                value = getattr(layer, field.name, None)
                try:
                    hash(value)
                except TypeError:
                    raise TypeError(
                        f"{where}: layer {i} ({layer.name}) field {field.name!r} holds an "
                        f"unhashable {type(value).__name__}; a layer is a static argument of "
                        "compiled functions, its fields must be hashable (a tuple, not a "
                        "list)") from None
        raise
    return net


def check_bool(value: Any, name: str, where: str = "fit") -> bool:
    """``value`` as a bool, when it is one (Python's or NumPy's); else ``TypeError`` (a
    string such as ``'no'`` would be true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be True or False, got {value!r}")
    return bool(value)


def positive_int(value: Any, name: str, where: str = "fit") -> int:
    """A Python or NumPy int >= 1 (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")
    return int(value)


#: The dtypes parameters may have: an update of a 16-bit parameter is lost when it is below
#: half a unit of its last place (a precision policy computes in 16 bits, keeping them 32).
PARAM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_params(net: Network, params: Any, where: str = "fit") -> Params:
    """Raise before tracing unless ``params`` has one dict per layer with the layer's shapes,
    each an array (NumPy or JAX) of float32 or float64 (:data:`PARAM_DTYPES`)."""
    if not isinstance(params, (tuple, list)) or len(params) != len(net.layers):
        got = (f"{type(params).__name__} of {len(params)}" if isinstance(params, (tuple, list))
               else type(params).__name__)
        raise ValueError(f"{where}: params must be a tuple of {len(net.layers)} dicts (one per "
                         f"layer, from network.init), got {got}")
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        expected = layer.param_shapes()
        if not isinstance(p, Mapping) or set(p) != set(expected):
            got = sorted(map(str, p)) if isinstance(p, Mapping) else repr(p)
            raise ValueError(f"{where}: layer {i} ({layer.name}) has parameters "
                             f"{sorted(expected)}, got {got}")
        for k, shape in expected.items():
            a = p[k]
            if not (hasattr(a, "shape") and hasattr(a, "dtype")):
                raise TypeError(f"{where}: layer {i} ({layer.name}) parameter {k!r} must be an "
                                f"array (NumPy or JAX), got {type(a).__name__}")
            # (a big-endian '>f4' is float32 too: NumPy's reading of another machine's file)
            native = a.dtype.newbyteorder("=") if isinstance(a, np.ndarray) else a.dtype
            if tuple(a.shape) != shape or native not in PARAM_DTYPES:
                raise ValueError(f"{where}: layer {i} ({layer.name}) parameter {k!r} must be "
                                 f"float32 or float64 {shape}, got {a.dtype} {tuple(a.shape)}"
                                 + ("; keep parameters in 32 bits and compute in 16 with a "
                                    "precision policy (policy='bfloat16')"
                                    if a.dtype.itemsize == 2 else ""))
    return tuple(_native(p) for p in params)


def _native(p: Mapping) -> Mapping:
    """``p`` with its NumPy arrays of another byte order (``'>f4'``) in the machine's own,
    which compiled calls take (JAX refuses a big-endian argument); ``p`` itself when none."""
    if not any(isinstance(a, np.ndarray) and not a.dtype.isnative for a in p.values()):
        return p
    return {k: a.astype(a.dtype.newbyteorder("=")) if isinstance(a, np.ndarray)
            and not a.dtype.isnative else a for k, a in p.items()}


def working_dtypes(params: Params) -> Params:
    """``params`` with each JAX array in the dtype JAX computes in now: a float64 array made
    while ``jax_enable_x64`` was on, given after it was switched off, becomes float32, as a
    NumPy float64 one does when it is passed (``fit``'s compiled epoch would otherwise take
    float64 parameters in and give float32 out: a JAX error from inside its loop)."""
    def cast(a):
        if not isinstance(a, jax.Array) or isinstance(a, jax.core.Tracer):
            return a
        dtype = jax.dtypes.canonicalize_dtype(a.dtype)
        if dtype == a.dtype:
            return a
        return jax.device_put(np.asarray(a).astype(dtype), a.sharding)
    return tuple({k: cast(a) for k, a in p.items()} for p in params)


def check_params_finite(net: Network, params: Params, where: str = "fit") -> None:
    """Raise ``ValueError`` naming the first layer and parameter that holds NaN or inf,
    or, under a float16 policy, values beyond float16's range (inf in the compute
    dtype, so NaN outputs).

    Traced parameters are not read. A JAX array found finite is remembered (once checked,
    finite for good), and so are the parameters ``fit`` returns after a guarded epoch
    (:func:`remember_finite`): a loop of ``fit`` calls reads them once.
    """
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        for k in sorted(p):
            if isinstance(p[k], jax.core.Tracer):
                continue
            if not _finite_once(p[k]):
                raise ValueError(f"{where}: layer {i} ({layer.name}) parameter {k!r} holds NaN "
                                 "or inf values")
            _check_float16_range(net, p[k], f"{where}: layer {i} ({layer.name}) parameter "
                                            f"{k!r}")


def _check_float16_range(net: Network, a, what: str) -> None:
    """Under a float16 policy, raise unless the parameter ``a`` fits float16 (|a| <= 65504)."""
    if net.policy.compute_dtype != "float16" or not a.size:
        return
    jax_array = isinstance(a, jax.Array)
    if jax_array and _known(a, _IN_FLOAT16):  # immutable: checked once, for good
        return
    top, limit = float(_max_abs(a)), float(jnp.finfo(jnp.float16).max)
    if top <= limit and jax_array:
        _remember(a, _IN_FLOAT16)
    if top > limit:
        raise ValueError(f"{what} holds values up to {top:.6g}, beyond float16 (at most "
                         f"{limit:.0f}), the compute dtype of policy {str(net.policy)!r}: "
                         "they would be inf; use a bfloat16 or float32 policy for them")


def remember_finite(tree: Any) -> None:
    """Remember the JAX arrays of ``tree`` as finite (the caller has checked them: ``fit``'s
    guard checks the parameters after every epoch)."""
    for a in jax.tree.leaves(tree):
        if isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer):
            _remember(a)


@functools.lru_cache(maxsize=64)
def _seed_key(seed: int, impl: str) -> jax.Array:
    """``jax.random.key(seed)`` under the PRNG implementation ``impl``, made once: a key is
    immutable, and making one eagerly cost ``fit`` about 0.15 ms per call."""
    return jax.random.key(seed)


def check_key(key: Any, where: str = "fit") -> jax.Array:
    """A PRNG key: ``None`` is ``jax.random.key(0)``, an int ``n >= 0`` is
    ``jax.random.key(n)``; a single typed key (shape ``()``) and a legacy key (uint32
    data of shape ``(2,)``) pass as they are. Anything else (a batch of keys, key data
    of another shape or dtype) raises ``TypeError`` naming ``where``."""
    if key is None:
        key = 0
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        if not 0 <= key < 2**63:
            raise ValueError(f"{where}: an int seed must be in [0, 2**63), got {key!r}")
        made = _seed_key(int(key), jax.config.jax_default_prng_impl)
        if made.is_deleted():  # (a caller deleted the key fit returned: make it again)
            _seed_key.cache_clear()
            made = _seed_key(int(key), jax.config.jax_default_prng_impl)
        return made
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) \
            and key.shape == ():
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,):
        return key  # a legacy jax.random.PRNGKey
    got = (f"an array of dtype {key.dtype} and shape {key.shape}"
           if isinstance(key, (jax.Array, np.ndarray)) else repr(key)[:200])
    raise TypeError(f"{where}: key must be a PRNG key such as jax.random.key(0) or an int "
                    f"seed (one key: a typed key of shape (), or legacy uint32 key data of "
                    f"shape (2,)), got {got}")


def check_options(schedule, optimizer, callbacks, metrics) -> tuple:
    """Types of fit's options; returns ``metrics`` as a tuple of known names."""
    if not isinstance(schedule, Schedule):
        raise TypeError(f"fit: schedule must be a Schedule, got {schedule!r}")
    if optimizer is not None and not (callable(getattr(optimizer, "init", None))
                                      and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"fit: optimizer must be an optax GradientTransformation, got "
                        f"{optimizer!r}")
    if optimizer is not None and schedule != Schedule():
        raise ValueError("fit: schedule is the learning rate of the default optimizer (EpyNN's "
                         "SGD); an optimizer given brings its own (an optax schedule): pass "
                         f"one or the other, got both ({schedule!r})")
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Sequence) \
            or not all(callable(cb) for cb in callbacks):
        raise TypeError(f"fit: callbacks must be a sequence of callables such as [print_epoch], "
                        f"got {callbacks!r}")
    return metrics_lib.check_metrics(metrics, "fit: metrics")


def check_opt_state(optimizer, params: Params, opt_state: Any, where: str = "fit: opt_state"
                    ) -> Any:
    """``opt_state`` if it has the tree structure, shapes and dtypes ``optimizer.init``
    gives for ``params``; else ``ValueError``. A leaf of another dtype of the same kind
    (float64 kept from a run with ``jax_enable_x64`` on, or float32 from one without it)
    is cast to the optimizer's (:func:`exact_cast`): the compiled epoch's carry must leave
    with the dtypes it came in with."""
    expected = jax.eval_shape(optimizer.init, params)
    leaves, refs = jax.tree.leaves(opt_state), jax.tree.leaves(expected)
    same = jax.tree.structure(expected) == jax.tree.structure(opt_state) and all(
        tuple(np.shape(a)) == tuple(b.shape) for a, b in zip(leaves, refs))
    if not same:
        raise ValueError(f"{where} does not match the optimizer's state for these params "
                         "(pass the optimizer it came from, or opt_state=None)")
    if all(_is_key(b) or not hasattr(a, "dtype") or np.dtype(a.dtype) == np.dtype(b.dtype)
           for a, b in zip(leaves, refs)):
        return opt_state
    out = [a if _is_key(b) or not hasattr(a, "dtype") or np.dtype(a.dtype) == np.dtype(b.dtype)
           else jax.device_put(exact_cast(np.asarray(a), b.dtype, f"{where} leaf {j}"))
           for j, (a, b) in enumerate(zip(leaves, refs))]
    return jax.tree.unflatten(jax.tree.structure(opt_state), out)


def _is_key(x: Any) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


#: Dtype kinds that hold the same sort of number: a saved leaf must be of its reference's.
_KIND_NAMES = {"b": "bool", "i": "int", "u": "int", "f": "float"}


def exact_cast(arr: np.ndarray, dtype: Any, where: str) -> np.ndarray:
    """``arr`` as ``dtype`` when that keeps its values: the same kind (bool, int, float),
    ints within the dtype's range, floats not beyond it (float64 to float32 rounds);
    else ``ValueError`` naming ``where``."""
    dtype = np.dtype(dtype)
    kind = _KIND_NAMES.get(arr.dtype.kind)
    if kind is None or kind != _KIND_NAMES.get(dtype.kind):
        raise ValueError(f"{where}: saved as {arr.dtype}, the optimizer keeps "
                         f"{dtype} ({_KIND_NAMES.get(dtype.kind, dtype.kind)} values)")
    if kind == "int" and arr.size:
        info = np.iinfo(dtype)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise ValueError(f"{where}: values outside the range of {dtype} (saved "
                             f"{arr.dtype} from {arr.min()} to {arr.max()})")
    with np.errstate(over="ignore"):
        out = arr.astype(dtype)
    if kind == "float" and (np.isinf(out) != np.isinf(arr)).any():
        raise ValueError(f"{where}: values beyond the range of {dtype}")
    return out


def _restored_leaf(j: int, ref: Any, leaf: Any) -> np.ndarray:
    """The saved leaf ``j`` as a host array of the dtype of ``ref`` (the optimizer's own):
    :func:`exact_cast`, and floats finite (inf only where the optimizer's fresh state holds
    inf too); else ``ValueError`` naming the leaf."""
    where = f"optimizer state leaf {j}"
    arr = np.asarray(leaf)
    out = exact_cast(arr, np.dtype(jnp.asarray(ref).dtype), where)
    if arr.dtype.kind == "f" and (np.isnan(arr).any() or (
            np.isinf(arr).any() and not np.isinf(np.asarray(ref)).any())):
        raise ValueError(f"{where} ({arr.dtype}) holds NaN or inf values")
    return out


def restore_opt_state(optimizer, params: Params, leaves: Sequence) -> Any:
    """An optimizer state rebuilt from its saved ``leaves``, shaped like ``optimizer.init(params)``.

    Raises ``ValueError`` naming the leaf when the number, shapes or kinds of the leaves
    do not match what ``optimizer`` keeps, or a leaf's values do not convert exactly to
    the optimizer's dtype (:func:`_restored_leaf`: a float count, NaN, an int out of range);
    and when ``leaves`` records the structure of the state it was saved from (its
    ``structure``, ``str(jax.tree.structure(state))``, as a checkpoint's leaves do) and
    ``optimizer``'s state has another (another optimizer, as many leaves of the same
    shapes). ``TypeError`` naming the argument when ``optimizer`` is no optax
    transformation, ``params`` no tuple of parameters or ``leaves`` no sequence.
    """
    if not callable(getattr(optimizer, "init", None)):
        raise TypeError(f"restore_opt_state: optimizer must be an optax "
                        f"GradientTransformation, got {repr(optimizer)[:200]}")
    if not isinstance(params, (tuple, list)):
        raise TypeError(f"restore_opt_state: params must be the network's parameters (a "
                        f"tuple of dicts, one per layer), got {type(params).__name__}")
    if isinstance(leaves, (str, bytes)) or not isinstance(leaves, Sequence):
        raise TypeError(f"restore_opt_state: leaves must be a sequence of arrays (the "
                        f"opt_state of a checkpoint loaded without an optimizer), got "
                        f"{type(leaves).__name__}")
    from epynn_jax.network import optim

    reference = optimizer.init(params)
    ref_leaves, treedef = jax.tree_util.tree_flatten(reference)
    saved = getattr(leaves, "structure", None)
    legacy = optim.legacy_loss_scale_state(reference)
    if legacy is not None:  # a float16 state saved before its step counters: they start at 0
        old_leaves, old_treedef = jax.tree_util.tree_flatten(legacy)
        if len(leaves) == len(old_leaves) and saved in (None, str(old_treedef)):
            import optax

            old = restore_opt_state(optax.GradientTransformation(lambda p: legacy, None),
                                    params, leaves)
            return optim.upgraded_loss_scale_state(old)
    if saved is not None and saved != str(treedef):
        raise ValueError(f"optimizer state saved with another optimizer: the saved state is "
                         f"{saved[:300]}, this optimizer keeps {str(treedef)[:300]} (if it "
                         "is the same optimizer and only its library renamed the state's "
                         "classes, pass the leaves as a plain tuple, tuple(ck.opt_state), "
                         "which is not compared)")
    if len(ref_leaves) != len(leaves):
        raise ValueError(f"optimizer state has {len(leaves)} arrays, the optimizer keeps "
                         f"{len(ref_leaves)}: was it saved with another optimizer?")
    out = []
    for j, (ref, leaf) in enumerate(zip(ref_leaves, leaves)):
        if _is_key(ref) != _is_key(leaf) or jnp.shape(ref) != jnp.shape(leaf):
            raise ValueError(f"optimizer state leaf {j}: saved {jnp.shape(leaf)}, the "
                             f"optimizer keeps {jnp.shape(ref)}")
        # device_put, not jnp.asarray: that compiles a conversion per new shape
        out.append(leaf if _is_key(leaf) else jax.device_put(_restored_leaf(j, ref, leaf)))
    return jax.tree_util.tree_unflatten(treedef, out)


_JSON_NAMES = {str: "a string", list: "a list", int: "an int", dict: "an object",
               type(None): "null"}
#: The metadata fields ``fit`` records in a checkpoint, and the types each may have.
_FIT_METADATA: dict[str, tuple[type, ...]] = {
    "loss": (str,), "metrics": (list,), "batch_size": (int,), "train_split": (str,),
    "epochs": (int,), "schedule": (dict, type(None)), "data": (dict,)}


def check_fit_metadata(metadata: Any, where: str) -> dict:
    """``metadata`` of a checkpoint, once the fields ``fit`` records there have their
    types (each may be absent): ``loss`` and ``train_split`` strings, ``metrics`` a list
    of strings, ``batch_size`` and ``epochs`` ints, ``schedule`` null or the fields of a
    :class:`~epynn_jax.maths.schedules.Schedule`, ``data`` (the data fingerprint) an
    object of one object per split. Else ``ValueError`` naming ``where`` and the field;
    other fields are left to their readers."""
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{where}: metadata must be an object, got {type(metadata).__name__}")
    for field, types in _FIT_METADATA.items():
        value = metadata.get(field)
        if field in metadata and (not isinstance(value, types) or isinstance(value, bool)):
            names = " or ".join(_JSON_NAMES[t] for t in types)
            what = " (the data fingerprint)" if field == "data" else ""
            raise ValueError(f"{where}: metadata {field!r}{what} must be {names}, got "
                             f"{repr(value)[:80]}")
        if isinstance(value, int):  # the schedules compute with it in floats
            try:
                float(value)
            except OverflowError:
                raise ValueError(f"{where}: metadata {field!r} must be an int that fits a "
                                 f"float, got one of {value.bit_length()} bits") from None
    if not all(isinstance(m, str) for m in metadata.get("metrics", ())):
        raise ValueError(f"{where}: metadata 'metrics' must be a list of names")
    if metadata.get("schedule") is not None:
        try:
            Schedule(**metadata["schedule"])
        except (TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"{where}: metadata 'schedule' is no schedule: {err}") from None
    if not all(isinstance(v, dict) for v in metadata.get("data", {}).values()):
        raise ValueError(f"{where}: metadata 'data' (the data fingerprint) must map each "
                         "split to an object")
    return dict(metadata)


def _shape(a, where: str) -> tuple[int, ...]:
    try:
        return tuple(np.shape(a))
    except ValueError as err:  # a ragged nested list
        raise ValueError(f"{where}: not an array of one shape ({err})") from None


def check_split(net: Network, name: str, X, Y) -> None:
    """Validate the shapes of one split (or one streamed batch) ``(X, Y)`` named ``name``
    in errors: ranks and sizes against the network, labels that fit the output (same
    shape per sample). Reads no data: the values are checked as they are converted
    (:func:`host_float`, :func:`as_float_arg`; a memory-mapped set's batch by batch as it
    streams).
    """
    for a, v in ((X, "X"), (Y, "Y")):
        if a is None:
            raise TypeError(f"{name} {v}: None, not an array (a split is a pair (X, Y) of "
                            "arrays with one row per sample)")
    Xshape, Yshape = _shape(X, f"{name} X"), _shape(Y, f"{name} Y")
    check_input_shape(net, Xshape, f"{name} X")
    if Yshape[:1] != Xshape[:1]:
        raise ValueError(f"{name}: X has {Xshape[0]} samples but Y has "
                         f"{Yshape[0] if Yshape else 0}")
    if Yshape[1:] == () and net.output_shape == (1,):  # a label vector for one output unit
        raise ValueError(f"{name} Y: labels of shape {Yshape} (one per sample) for the one "
                         f"output unit of {net.layers[-1].name}, which needs shape "
                         f"({Yshape[0]}, 1): pass Y.reshape(-1, 1)")
    if Yshape[1:] != net.output_shape:
        raise ValueError(
            f"{name} Y: labels of sample shape {Yshape[1:]} do not fit the output of "
            f"{net.layers[-1].name} (sample shape {net.output_shape}); one-hot encode "
            f"labels to {net.output_shape[-1]} columns or change the output units"
        )


def check_label_range(Y: np.ndarray, loss: str, where: str) -> None:
    """Raise unless the labels ``Y`` (host array) are where the loss is defined: within
    [0, 1] for BCE and CCE, above -1 for MSLE (``log(1 + Y)``)."""
    if loss in ("BCE", "CCE") and Y.size and (Y.min() < 0 or Y.max() > 1):
        raise ValueError(f"{where}: loss {loss} needs labels in [0, 1]")
    if loss == "MSLE" and Y.size and Y.min() <= -1:
        raise ValueError(f"{where}: loss MSLE needs labels above -1 (it takes log(1 + Y))")


def check_pair(net: Network, name: str, xy: Any) -> None:
    """Raise unless ``xy`` is a pair ``(X, Y)`` whose shapes fit ``net`` (:func:`check_split`;
    no data read)."""
    if not (isinstance(xy, (tuple, list)) and len(xy) == 2):
        raise TypeError(f"data[{name!r}]: expected a pair (X, Y)")
    try:
        check_split(net, name, *xy)
    except ValueError as err:
        if all(isinstance(b, (tuple, list)) and len(b) == 2
               and all(isinstance(a, (tuple, list)) for a in b) for b in xy):
            raise ValueError(f"{err}. If data[{name!r}] is a list of two (X, Y) batches, give "
                             "their X and Y as arrays (np.asarray): two batches of nested "
                             "lists cannot be told from one (X, Y) pair") from None
        raise


def check_data(net: Network, data: Mapping[str, tuple], loss: str) -> dict[str, tuple]:
    """Validate and convert every split ``{name: (X, Y)}`` before any tracing
    (:func:`check_split`); returns them as device arrays (:func:`as_floats`: one
    conversion on the host, none for JAX arrays that already have the working dtype)."""
    for name, xy in data.items():
        check_pair(net, name, xy)
    names = list(data)
    placed = as_floats([a for s in names for a in data[s]],
                       [f"{s} {v}" for s in names for v in ("X", "Y")])
    out = {s: (placed[2 * i], placed[2 * i + 1]) for i, s in enumerate(names)}
    if loss in ("BCE", "CCE", "MSLE"):
        for s, (_, Y) in out.items():
            check_label_range(np.asarray(Y), loss, f"{s} Y")
    for s, (X, _) in out.items():
        check_compute_range(net, X, f"{s} X")
    return out


def check_compute_range(net: Network, X: jax.Array, where: str) -> None:
    """Under a float16 policy, raise unless ``X`` fits float16 (|x| <= 65504): a larger
    value becomes inf in the compute dtype, and NaN downstream. (bfloat16 has float32's
    range.)"""
    if net.policy.compute_dtype != "float16" or isinstance(X, jax.core.Tracer) or not X.size:
        return
    top = float(_max_abs(X))
    limit = float(jnp.finfo(jnp.float16).max)
    if top > limit:
        raise ValueError(f"{where}: values up to {top:.6g} do not fit float16 (at most "
                         f"{limit:.0f}), the compute dtype of policy {str(net.policy)!r}; "
                         "scale the inputs")


@jax.jit
def _max_abs(a: jax.Array) -> jax.Array:
    return jnp.max(jnp.abs(a))


def check_eval_splits(eval_splits: Any, splits: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the splits ``fit`` evaluates: every split of ``splits`` when
    ``eval_splits`` is None, else those named (each once, each in ``splits``)."""
    if eval_splits is None:
        return tuple(splits)
    if isinstance(eval_splits, str) or not isinstance(eval_splits, (tuple, list)) or not all(
            isinstance(s, str) for s in eval_splits):
        raise TypeError(f"fit: eval_splits must be a tuple of split names, got {eval_splits!r}")
    unknown = [s for s in eval_splits if s not in splits]
    if unknown:
        raise ValueError(f"fit: eval_splits {unknown} are not in data (splits: "
                         f"{', '.join(splits)})")
    if len(set(eval_splits)) != len(eval_splits):
        raise ValueError(f"fit: eval_splits names a split twice: {list(eval_splits)}")
    return tuple(eval_splits)
