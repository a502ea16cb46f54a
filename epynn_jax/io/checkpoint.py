"""Safe, atomic model and checkpoint files (no pickle, no code run on load).

File format (version 1): a zip archive of uncompressed (stored) members

- one ``.npy`` file per array (written with ``allow_pickle=False``): the
  parameters ``params/<layer>/<key>``, and in a checkpoint the optimizer state
  leaves ``opt_state/<j>`` (``jax.tree_util.tree_flatten`` order) and the PRNG
  key ``key`` (its ``jax.random.key_data``);
- ``model.json`` (written last): ``{"format": "epynn_jax.model", "version": 1,
  "input_shape": [...], "layers": [{"class": "module:QualName", "fields": {...}}, ...],
  "arrays": {name: {"file": "arrays/N.npy", "shape": [...], "dtype": "<f4",
  "sha256": "<hex digest of the .npy member>"}}, "metadata": {...},
  "history": {...} | null, "checkpoint": {...} | null, "extras": {...} | null,
  "policy": {"compute_dtype": ..., "param_dtype": ..., "output_dtype": ...}}``.
  Layer fields are the dataclass fields, JSON-encoded: tuples as
  ``{"__tuple__": [...]}``, non-finite floats as ``{"__float__": "nan"}``,
  nested frozen dataclasses (``ActivationHPars``) as
  ``{"__dataclass__": "module:QualName", "fields": {...}}``.

``policy`` is the network's precision policy
(:class:`~epynn_jax.network.precision.Policy`: each dtype a name such as
``"bfloat16"``, or null for the default float dtype); files without it (written
before policies existed) load with the default ``Policy()``, full precision. A
policy the library does not know is refused. Arrays are always stored in the
parameters' dtype (float32 or float64 under every policy).

In a checkpoint, ``checkpoint`` is ``{"epoch": ..., "opt_state": <leaf count>,
"batch": ... (when not 0), "opt_structure": ...}``: ``opt_structure`` is the
optimizer state's tree structure (:func:`state_structure`), which restoring compares
with the optimizer's own (:func:`restore_opt_state`); files written before it existed
restore unchecked.

``extras`` is a validated place for what another layer of the library (the
EpyNN facade) stores next to the network: a JSON object whose depth, size,
strings, numbers (finite floats, 64-bit ints) and value types are checked by
:func:`check_extras` before anything is built. Every member is stored
uncompressed (a compressed member is refused), so no member can expand in memory
beyond its size on disk (no zip bomb).

Loading never runs code from the file and costs time in proportion to it: the
cheap checks all come first, before any layer is constructed or traced:

1. the archive: members stored uncompressed, not overlapping, no duplicates;
   ``model.json`` at most ``MAX_JSON_BYTES``; format, version and structure;
2. the counts: at most ``MAX_LAYERS`` layers and ``MAX_ARRAYS`` arrays;
3. every array's index entry: a known name, a numeric dtype, a shape whose
   size matches its member's, a well-formed checksum;
4. every class path (of each layer and each dataclass in its fields): the
   class is looked up through class attributes only, must be defined exactly
   at that path (its own ``__module__:__qualname__``), in an allowed module,
   and be a layer (or, in fields, a dataclass). Layer classes of
   ``epynn_jax.layers`` (and dataclasses of ``epynn_jax.maths``) load
   directly; any other module is imported only when the caller names it in
   ``allow_modules``, or the class is passed in ``custom_layers``.

Then the layers are constructed and built (``jax.eval_shape``, once per
distinct layer), the rebuilt architecture must encode back to exactly the
stored one, and every array is read: its member's SHA-256 must match the
index, its ``.npy`` header the index, a parameter the architecture's shape
(``layer.param_shapes()``) with dtype float32 or float64 (a float16, bfloat16 or
float128 parameter is refused, naming the array) and finite values. Files written
by epynn_jax 0.1 have no checksums: they load unverified, with a warning
(re-save them to add checksums); a file where only some arrays have a checksum
is refused. Every problem with a file's content raises
:class:`~epynn_jax.errors.ModelFileError` saying what is wrong (a missing file
raises the usual ``FileNotFoundError``; a path that is not a regular file, such as a
named pipe or a device, an ``OSError`` saying what it is, before it is opened).

Writes are atomic: the archive goes to a temporary file ``.<name>.XXXXXXXX.tmp``
in the same directory (where that name would exceed the file system's limit,
``<name>`` is the name's start and a hash of it), locked (``flock``) while it
is written, flushed and fsynced, then ``os.replace``-d over the target and the
directory is fsynced; an interrupted save leaves the previous file intact. A
new file gets the permissions ``open`` gives (``0o666`` less the umask), a
replaced file keeps its own. A save first removes the
temporary files of earlier saves of the same target that were killed before
they could clean up: only files of that exact pattern, that no writer holds
locked, and that were last written ``STALE_TEMP_AGE_S`` seconds ago or more
(on systems without ``fcntl`` nothing is removed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import io
import json
import math
import numbers
import os
import re
import secrets
import stat
import time
import types
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.errors import ModelFileError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, so stale temp files are never removed
    fcntl = None
from epynn_jax.layers.base import Layer, check_bound
from epynn_jax.network import checks
from epynn_jax.network.model import Network, Params, build
from epynn_jax.network.precision import policy_from_json, policy_to_json

__all__ = [
    "FORMAT",
    "VERSION",
    "Model",
    "save_model",
    "load_model",
    "save_checkpoint",
    "load_checkpoint",
    "restore_opt_state",
    "encode_layer",
    "atomic_write",
    "check_extras",
    "check_history",
    "SavedLeaves",
    "state_structure",
    "read_format",
    "open_regular",
]

FORMAT = "epynn_jax.model"
VERSION = 1
MODEL_JSON = "model.json"
BUILTIN_MODULES = ("epynn_jax.layers", "epynn_jax.maths")
MAX_JSON_BYTES = 16 * 2**20
#: Most layers a model file may list: every distinct layer is traced once on load, so the
#: cap bounds the time a small file can cost. Raise it to load deeper networks.
MAX_LAYERS = 256
#: Most arrays a model file may hold (parameters, optimizer state leaves, key).
MAX_ARRAYS = 4096
MAX_DEPTH = 32
#: A temporary file of an interrupted save is removed once unlocked and this old (seconds).
STALE_TEMP_AGE_S = 60.0
_NPY_HEADER_MAX = 2**16
_PARAM_KINDS = "f"
#: The dtypes parameters are stored in: ``fit``'s own (``checks.PARAM_DTYPES``), little-endian.
_PARAM_DTYPES = tuple(d.newbyteorder("<") for d in checks.PARAM_DTYPES)
_STATE_KINDS = "fiub"
MAX_EXTRAS_DEPTH = 16
MAX_EXTRAS_ITEMS = 2**22
MAX_EXTRAS_STRING = 2**20
_INT64 = 2**63
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARRAY_NAME = re.compile(r"params/(0|[1-9]\d{0,8})/\w+|opt_state/(0|[1-9]\d{0,8})|key")
_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class Model(NamedTuple):
    """What :func:`load_model` / :func:`load_checkpoint` return.

    ``opt_state`` is ``None`` in a plain model file; in a checkpoint it is the
    optimizer state rebuilt for the ``optimizer`` given to
    :func:`load_checkpoint`, or the tuple of its leaves when none was given
    (see :func:`restore_opt_state`). ``key`` and ``epoch`` (epochs completed)
    are ``None`` unless saved; ``batch`` is the batches done of epoch ``epoch``
    (a streamed fit saved mid-epoch; 0 otherwise, and in files without it);
    ``extras`` is the file's validated extras section (see :func:`check_extras`),
    ``None`` when it has none.
    """

    net: Network
    params: Params
    metadata: dict
    history: dict | None
    opt_state: Any = None
    key: jax.Array | None = None
    epoch: int | None = None
    extras: dict | None = None
    batch: int = 0


class SavedLeaves(tuple):
    """A checkpoint's optimizer state leaves (``jax.tree_util.tree_flatten`` order), as
    :func:`load_checkpoint` returns them without an optimizer: a tuple (and a pytree of
    its leaves) whose ``structure`` is the state's tree structure when it was saved
    (:func:`state_structure`; ``None`` in files written before it was recorded).
    :func:`restore_opt_state` (and ``fit``'s resume) refuse an optimizer whose state has
    another structure."""

    structure: str | None

    def __new__(cls, leaves: Sequence, structure: str | None = None) -> SavedLeaves:
        self = super().__new__(cls, leaves)
        self.structure = structure
        return self

    def __reduce__(self):
        return SavedLeaves, (tuple(self), self.structure)


jax.tree_util.register_pytree_node(SavedLeaves, lambda t: (tuple(t), t.structure),
                                   lambda structure, leaves: SavedLeaves(leaves, structure))

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def state_structure(state: Any) -> str | None:
    """What a checkpoint records of an optimizer state's tree: ``str(jax.tree.structure(
    state))``, its classes, dict keys and nesting (``PyTreeDef((CustomNode(namedtuple[
    TraceState], [...]), ...))``), which tell one optimizer's state from another's with
    as many leaves of the same shapes. ``None`` (nothing recorded, nothing compared) when
    that text holds a memory address (an object with no repr of its own in a custom
    node), which no other process would match."""
    text = str(jax.tree.structure(state))
    return None if _ADDRESS.search(text) else text


# -- encoding layers -------------------------------------------------------------------


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _init_fields(obj) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(obj) if f.init]


def _encode(value: Any, where: str) -> Any:
    """A JSON-able encoding of one (hashable) field value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": _class_path(type(value)), "fields": _encode_fields(value, where)}
    raise TypeError(f"{where}: cannot store a value of type {type(value).__name__} "
                    f"({value!r}) in a model file")


def _encode_fields(obj, where: str) -> dict:
    return {f.name: _encode(getattr(obj, f.name), f"{where}.{f.name}") for f in _init_fields(obj)}


def encode_layer(layer: Layer) -> dict:
    """``{"class": "module:QualName", "fields": {...}}`` for one layer."""
    return {"class": _class_path(type(layer)), "fields": _encode_fields(layer, layer.name)}


class _Resolver:
    """Maps ``module:QualName`` to a class, importing only allowed modules.

    The qualname is followed through class namespaces only (``vars``, so no
    module ``__getattr__`` or descriptor runs), never through a module, and the
    class found must be defined exactly at that path. Results are cached: a
    path repeated in a file is looked up once.
    """

    def __init__(self, allow_modules: Sequence[str], custom_layers: Mapping[str, type] | None):
        if isinstance(allow_modules, str):
            allow_modules = (allow_modules,)
        self.allowed = (*BUILTIN_MODULES, *allow_modules)
        self.custom = dict(custom_layers or {})
        for name, cls in self.custom.items():
            if not isinstance(cls, type):
                raise TypeError(f"custom_layers[{name!r}] must be a class, got {cls!r}")
        self._found: dict[str, type] = {}

    def _allowed(self, module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in self.allowed)

    def resolve(self, path: Any, where: str) -> type:
        if isinstance(path, str) and path in self._found:
            return self._found[path]
        cls = self._resolve(path, where)
        self._found[path] = cls
        return cls

    def _resolve(self, path: Any, where: str) -> type:
        if not isinstance(path, str) or not _CLASS_PATH.match(path):
            raise ModelFileError(f"{where}: invalid class path {path!r} "
                                 "(expected 'module:QualName')")
        module, qualname = path.split(":")
        for name in (path, qualname):
            if name in self.custom:
                return self.custom[name]
        if not self._allowed(module):
            raise ModelFileError(
                f"{where}: class {path!r} comes from module {module!r}, which is not imported "
                f"unless allowed: pass allow_modules=({module!r},) or "
                f"custom_layers={{{qualname.rsplit('.', 1)[-1]!r}: the_class}} to load_model"
            )
        try:
            obj: Any = importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any import failure is reported as such
            raise ModelFileError(f"{where}: cannot import module {module!r} for class "
                                 f"{path!r}: {type(err).__name__}: {err}") from None
        for part in qualname.split("."):
            obj = vars(obj).get(part)
            if isinstance(obj, types.ModuleType):
                raise ModelFileError(f"{where}: class path {path!r} goes through the module "
                                     f"{obj.__name__!r}: a model file names a class by the "
                                     "module that defines it")
            if not isinstance(obj, type):
                raise ModelFileError(f"{where}: module {module!r} has no class {qualname!r}")
        own = _class_path(obj)
        if own != path:
            raise ModelFileError(f"{where}: class path {path!r} names a class defined as "
                                 f"{own!r}; a model file names each class where it is defined")
        return obj


def _nested_classes(fields: dict, where: str):
    """Every ``__dataclass__`` path inside a layer's encoded fields (depth-limited)."""
    stack = [(v, 1) for v in fields.values()]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ModelFileError(f"{where}: value nested too deeply")
        if isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, dict):
            if "__dataclass__" in value:
                yield value["__dataclass__"]
            stack.extend((v, depth + 1) for v in value.values())


def _check_classes(doc: dict, resolver: _Resolver) -> None:
    """Resolve every class path of the file (layers and field dataclasses) before any is made."""
    for i, entry in enumerate(doc["layers"]):
        where = f"layer {i}"
        if not (isinstance(entry, dict) and set(entry) == {"class", "fields"}
                and isinstance(entry["fields"], dict)):
            raise ModelFileError(f"{where}: expected {{'class': ..., 'fields': {{...}}}}")
        cls = resolver.resolve(entry["class"], where)
        if not (issubclass(cls, Layer) and dataclasses.is_dataclass(cls)):
            raise ModelFileError(f"{where}: {entry['class']!r} is not a layer class")
        for path in _nested_classes(entry["fields"], where):
            if not dataclasses.is_dataclass(resolver.resolve(path, where)):
                raise ModelFileError(f"{where}: {path!r} is not a dataclass")


def _decode(value: Any, resolver: _Resolver, where: str, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ModelFileError(f"{where}: value nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, resolver, where, depth + 1) for v in value]
    if not isinstance(value, dict):
        raise ModelFileError(f"{where}: unexpected value {value!r}")
    if set(value) == {"__tuple__"} and isinstance(value["__tuple__"], list):
        return tuple(_decode(v, resolver, where, depth + 1) for v in value["__tuple__"])
    if set(value) == {"__float__"} and value["__float__"] in ("nan", "inf", "-inf"):
        return float(value["__float__"])
    if set(value) == {"__dataclass__", "fields"} and isinstance(value["fields"], dict):
        cls = resolver.resolve(value["__dataclass__"], where)
        if not dataclasses.is_dataclass(cls):
            raise ModelFileError(f"{where}: {value['__dataclass__']!r} is not a dataclass")
        fields = _decode_fields(value["fields"], cls, resolver, where, depth + 1)
        return _construct(cls, fields, where)
    raise ModelFileError(f"{where}: unexpected value {value!r}")


def _decode_fields(raw: dict, cls: type, resolver: _Resolver, where: str, depth: int) -> dict:
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(raw) - names
    if unknown:
        raise ModelFileError(f"{where}: {cls.__name__} has no field(s) {sorted(unknown)}")
    return {k: _decode(v, resolver, f"{where}.{k}", depth) for k, v in raw.items()}


def _construct(cls: type, fields: dict, where: str):
    try:
        return cls(**fields)
    except (TypeError, ValueError, OverflowError) as err:
        raise ModelFileError(f"{where}: invalid fields for {cls.__name__}: {err}") from None


def _decode_layer(entry: dict, i: int, resolver: _Resolver) -> Layer:
    """The layer of a checked entry (see :func:`_check_classes`), without its input shape."""
    where = f"layer {i}"
    cls = resolver.resolve(entry["class"], where)
    try:
        check_bound(cls)  # a module written for the earlier contract: say which lines to add
    except TypeError as err:
        raise ModelFileError(f"{where}: {err}") from None
    fields = _decode_fields(entry["fields"], cls, resolver, f"{where} ({cls.__name__})", 1)
    fields.pop("input_shape", None)
    return _construct(cls, fields, f"{where} ({cls.__name__})")


def _policy(doc: dict):
    """The file's precision policy (None: the default, as in files written before it)."""
    try:
        return policy_from_json(doc["policy"]) if doc.get("policy") is not None else None
    except ValueError as err:
        raise ModelFileError(f"{MODEL_JSON}: {err}") from None


def _build_network(doc: dict, resolver: _Resolver) -> Network:
    """Construct and build the checked layers (traces each distinct layer once)."""
    layers = doc["layers"]
    policy = _policy(doc)
    built = [_decode_layer(e, i, resolver) for i, e in enumerate(layers)]
    try:
        net = build(built, tuple(doc["input_shape"]), policy)
    except (TypeError, ValueError, OverflowError) as err:
        raise ModelFileError(f"model.json: the architecture does not build: {err}") from None
    for i, (layer, entry) in enumerate(zip(net.layers, layers)):
        if encode_layer(layer) != entry:
            raise ModelFileError(f"layer {i} ({layer.name}): stored fields do not match the "
                                 "layer rebuilt from the input shape")
    return net


# -- arrays --------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _count_arg(value: Any, name: str, where: str = "save_model") -> int:
    """An int argument ``>= 0`` as a Python int: any ``numbers.Integral`` but a bool (a
    NumPy int too, as ``fit`` takes) below 2**63 (what the loader takes back), else
    ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{where}: {name} must be an int >= 0, got {value!r}")
    if value >= _INT64:
        raise ValueError(f"{where}: {name} must be below 2**63 (a file holds 64-bit ints), "
                         f"got {value!r}")
    return int(value)


def path_arg(path: Any, name: str = "path", where: str = "save_model") -> str:
    """A path argument as a str: a str, bytes (``os.fsdecode``) or ``os.PathLike``; anything
    else (an int file descriptor included) raises ``TypeError`` naming the argument."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{where}: {name} must be a str, bytes or os.PathLike path, got "
                        f"{type(path).__name__}") from None


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _host_array(x: Any, where: str, kinds: str) -> tuple[np.ndarray, dict]:
    """A contiguous host array and its index entry (keys are stored as key data)."""
    extra = {}
    if _is_key(x):
        extra["key_impl"] = str(jax.random.key_impl(x))
        x = jax.random.key_data(x)
    arr = np.asarray(jax.device_get(x), order="C")
    if arr.dtype.kind not in kinds or arr.dtype.hasobject or arr.dtype.fields is not None:
        raise TypeError(f"{where}: cannot store an array of dtype {arr.dtype} in a model file")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr, {"shape": list(arr.shape), "dtype": arr.dtype.str, **extra}


def _param_arrays(net: Network, params: Params) -> dict[str, np.ndarray]:
    if not isinstance(net, Network):
        raise TypeError(f"save_model: net must be a Network (from network.build), got {net!r}")
    if not isinstance(params, (tuple, list)) or len(params) != len(net.layers):
        raise ValueError(f"save_model: params must be a sequence of {len(net.layers)} dicts "
                         "(one per layer)")
    out = {}
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        expected = layer.param_shapes()
        if not isinstance(p, Mapping) or set(p) != set(expected):
            got = sorted(p) if isinstance(p, Mapping) else p
            raise ValueError(f"save_model: layer {i} ({layer.name}) expects parameters "
                             f"{sorted(expected)}, got {got}")
        for k, shape in expected.items():
            where = f"layer {i} ({layer.name}) parameter {k!r}"
            arr, _ = _host_array(p[k], where, _PARAM_KINDS)
            if arr.dtype not in _PARAM_DTYPES:
                raise TypeError(f"save_model: {where} is {arr.dtype}; parameters are stored "
                                "as float32 or float64 (cast them, e.g. with "
                                "jax.tree.map(lambda a: a.astype('float32'), params))")
            if arr.shape != shape:
                raise ValueError(f"save_model: {where} has shape {arr.shape}, expected {shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"save_model: {where} contains NaN or inf values")
            out[f"params/{i}/{k}"] = arr
    return out


def _check_dtype(s: Any, kinds: str, where: str) -> np.dtype:
    try:
        dt = np.dtype(s) if isinstance(s, str) else None
    except (TypeError, ValueError):
        dt = None
    if kinds == _PARAM_KINDS and dt not in _PARAM_DTYPES:
        raise ModelFileError(f"{where}: unsupported dtype {s!r}: parameters are stored as "
                             "float32 or float64")
    if dt is None or dt.kind not in kinds or dt.hasobject or dt.fields is not None \
            or dt.subdtype is not None or dt.byteorder == ">":
        raise ModelFileError(f"{where}: unsupported dtype {s!r}")
    return dt


def _npy_header(fp, dtype: np.dtype, shape: tuple[int, ...], where: str) -> int:
    """Check a .npy header (at ``fp``) against ``dtype`` and ``shape``; return its length."""
    version = np.lib.format.read_magic(fp)
    if version not in ((1, 0), (2, 0)):
        raise ModelFileError(f"{where}: unsupported .npy version {version}")
    with warnings.catch_warnings():  # a mangled header can warn while it is parsed
        warnings.simplefilter("ignore")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        hshape, fortran, hdtype = read_header(fp)  # numpy caps the header it parses
    if tuple(hshape) != shape or hdtype != dtype or fortran:
        raise ModelFileError(f"{where}: .npy header says {hdtype} {tuple(hshape)}"
                             f"{' fortran' if fortran else ''}, the index says "
                             f"{dtype} {shape}")
    return fp.tell()


@functools.lru_cache(maxsize=256)
def _canonical_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The .npy header numpy writes for a C-ordered array of ``dtype`` and ``shape``."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _check_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype,
               shape: tuple[int, ...], where: str) -> bytes:
    """Check a member's .npy header against the index, and that exactly the array's bytes
    follow it; return the header's bytes.

    The header numpy writes is compared as bytes (no parsing); any other header is
    parsed with numpy's reader (which caps its size) and must agree.
    """
    canonical = _canonical_header(dtype, shape)
    with zf.open(info) as fp:
        head = fp.read(len(canonical))
        if head != canonical:
            start = io.BytesIO(head + fp.read(_NPY_HEADER_MAX))
            head = start.getvalue()[:_npy_header(start, dtype, shape, where)]
    if info.file_size - len(head) != math.prod(shape) * dtype.itemsize:
        raise ModelFileError(f"{where}: member {info.filename!r} has {info.file_size} bytes: "
                             f"data is truncated or has trailing bytes")
    return head


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype,
              shape: tuple[int, ...], where: str, sha256: str | None,
              header: bytes) -> np.ndarray:
    """Read one .npy member whose ``header`` :func:`_check_npy` checked; verify its checksum.

    The member's size was checked against ``shape``, so reading it whole is
    bounded. The array is a read-only view of the member's bytes.
    """
    with zf.open(info) as fp:
        raw = fp.read()
    if len(raw) != info.file_size:
        raise ModelFileError(f"{where}: member {info.filename!r} is truncated")
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise ModelFileError(f"{where}: checksum mismatch: member {info.filename!r} does not "
                             "hold the bytes saved for this array (members renamed, swapped or "
                             "corrupted)")
    if not raw.startswith(header):  # the file changed while it was read
        raise ModelFileError(f"{where}: member {info.filename!r} changed while it was read")
    return np.frombuffer(memoryview(raw)[len(header):], dtype=dtype).reshape(shape)


# -- extras: a validated JSON section for other parts of the library -------------------


def _extras_path(path: tuple) -> str:
    return "extras" + "".join(f"[{k!r}]" for k in path)


def _check_extras_value(value: Any, path: tuple, count: list, error: type) -> None:
    """Check one value (recursively; the depth is bounded before each step down)."""
    count[0] += 1
    if count[0] > MAX_EXTRAS_ITEMS:
        raise error(f"extras: more than {MAX_EXTRAS_ITEMS} values")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise error(f"{_extras_path(path)}: integer outside the 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error(f"{_extras_path(path)}: non-finite number {value!r}")
        return
    if isinstance(value, str):
        if len(value) > MAX_EXTRAS_STRING:
            raise error(f"{_extras_path(path)}: string longer than {MAX_EXTRAS_STRING}")
        return
    if not isinstance(value, (list, dict)):
        raise error(f"{_extras_path(path)}: unsupported value of type {type(value).__name__}")
    if len(path) >= MAX_EXTRAS_DEPTH:
        raise error(f"{_extras_path(path)}: nested deeper than {MAX_EXTRAS_DEPTH} levels")
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        if isinstance(value, dict) and (not isinstance(k, str) or len(k) > MAX_EXTRAS_STRING):
            raise error(f"{_extras_path(path)}: invalid key {str(k)[:80]!r}")
        _check_extras_value(v, (*path, k), count, error)


def check_extras(extras: Any, error: type[Exception] = ModelFileError) -> dict | None:
    """Return ``extras`` if it is ``None`` or a valid extras section, else raise ``error``.

    Valid: a dict whose values are JSON values (``None``, bool, int in the
    64-bit range, finite float, str, list, dict with str keys), at most
    ``MAX_EXTRAS_DEPTH`` levels deep, ``MAX_EXTRAS_ITEMS`` values in all and
    strings (keys included) of at most ``MAX_EXTRAS_STRING`` characters.
    :func:`load_model` checks a file's section with this before it builds
    anything; :func:`save_model` checks what it is given (``error=ValueError``).
    The caller still checks the meaning of its own fields.
    """
    if extras is None:
        return None
    if not isinstance(extras, dict):
        raise error(f"extras must be a JSON object, got {type(extras).__name__}")
    _check_extras_value(extras, (), [0], error)
    return extras


def read_format(path: str | os.PathLike) -> tuple[Any, Any]:
    """``(format, version)`` as declared by the ``model.json`` of the zip file at ``path``.

    Reads nothing but that member, within the loader's size limit, and checks
    nothing else: for telling a user what a file that :func:`load_model`
    refused is (an older format, another program's zip). ``(None, None)``
    when the file is no zip with a readable ``model.json`` (an ``OSError``
    opening it propagates, as for anything but a regular file: :func:`open_regular`).
    """
    with open_regular(path) as f:
        try:
            with zipfile.ZipFile(f) as zf:
                info = zf.getinfo(MODEL_JSON)
                if info.file_size > MAX_JSON_BYTES:
                    return None, None
                with zf.open(info) as fp:
                    doc = json.loads(fp.read(MAX_JSON_BYTES + 1).decode("utf-8"))
        except Exception:  # noqa: BLE001 - whatever the bytes: no declared format
            return None, None
    if not isinstance(doc, dict):
        return None, None
    return doc.get("format"), doc.get("version")


# -- writing -------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # tempfile.mkstemp's, 8 of them
_TEMP_EXTRA = len(".") + len(".") + 8 + len(".tmp")


def _name_max(directory: Path) -> int:
    """The longest file name (in bytes) the file system of ``directory`` takes."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or not told
        return 255


def _temp_stem(path: Path) -> str:
    """What this target's temp files are named after: the target's name, or where that
    would make a temp name too long for the file system, its first characters and a hash
    of the whole name (``<start>~<8 hex digits>``), so other targets' differ."""
    name, limit = path.name, _name_max(path.parent if str(path.parent) else Path("."))
    if len(os.fsencode(name)) + _TEMP_EXTRA <= limit:
        return name
    digest = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    start = name
    while start and len(os.fsencode(start + digest)) + _TEMP_EXTRA > limit:
        start = start[:-1]
    return start + digest


def _temp_name(stem: str) -> re.Pattern:
    """The names :func:`_create_temp` gives temp files of ``stem`` (8 random characters)."""
    return re.compile(re.escape(f".{stem}.") + r"[a-z0-9_]{8}\.tmp")


def _create_temp(directory: Path, stem: str, mode: int) -> tuple[int, str]:
    """A new file ``.<stem>.XXXXXXXX.tmp`` in ``directory``, opened for writing, created
    with ``mode`` (less the umask, as ``open`` creates files) and never over an existing
    file or link (``O_EXCL``); returns its descriptor and path."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
    for _ in range(100):
        random = "".join(secrets.choice(_TEMP_CHARS) for _ in range(8))
        tmp = os.path.join(directory, f".{stem}.{random}.tmp")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name for .{stem}.XXXXXXXX.tmp in {directory}")


def _kept_mode(path: Path) -> int | None:
    """The permission bits of the regular file ``path`` replaces (None: a new file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) & 0o777 if stat.S_ISREG(st.st_mode) else None


def _remove_stale_temps(path: Path, min_age_s: float | None = None) -> list[Path]:
    """Remove temp files that killed saves of ``path`` left behind; return those removed.

    A candidate has this target's temp name, is a regular file (never a link),
    is not locked by a live writer (``atomic_write`` holds a ``flock`` while
    it writes, released by the kernel when the writer dies) and was last
    written at least ``min_age_s`` (default ``STALE_TEMP_AGE_S``) seconds ago,
    which also covers the instant between a writer creating its file and
    locking it. Never raises: a file that cannot be checked is kept.
    """
    if fcntl is None:
        return []
    min_age = STALE_TEMP_AGE_S if min_age_s is None else min_age_s
    pattern, removed = _temp_name(_temp_stem(path)), []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_NONBLOCK", 0))
        except OSError:  # gone, a link, or not ours to open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a writer holds it
            st = os.fstat(fd)
            same = os.stat(entry.path, follow_symlinks=False)
            if (stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (same.st_dev, same.st_ino)
                    and time.time() - st.st_mtime >= min_age):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _write_target(path: str | os.PathLike) -> tuple[Path, Path]:
    """The regular file :func:`atomic_write` replaces for ``path`` (a link followed) and
    its directory, or an ``OSError`` naming ``path``, before anything is created."""
    text = path_arg(path, where="atomic_write")
    if text.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep)):
        raise IsADirectoryError(f"cannot write {text}: it ends with a path separator, so it "
                                "names a directory; give the path of a file")
    target = Path(text)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
        if target.is_symlink():  # realpath stops where the links loop
            raise OSError(f"cannot write {text}: a loop of symbolic links (at {target})")
    if target.exists() and not target.is_file():
        raise OSError(f"{target} exists and is not a regular file ({_kind(target.stat())}): "
                      "give the path of a file to write")
    directory = target.parent if str(target.parent) else Path(".")
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot write {target}: directory {directory} does not "
                                "exist") from None
    except NotADirectoryError:
        raise NotADirectoryError(f"cannot write {target}: {directory} is not a directory (a "
                                 "part of it is a file)") from None
    if not stat.S_ISDIR(st.st_mode):
        what = "a file" if stat.S_ISREG(st.st_mode) else _kind(st)
        raise NotADirectoryError(f"cannot write {target}: {directory} is {what}, not a "
                                 "directory")
    return target, directory


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Write ``path`` atomically: temp file in the same directory, fsync, replace, fsync dir.

    ``write(fileobj)`` fills the file. On any failure (or KeyboardInterrupt)
    the temp file is removed and an existing ``path`` is left untouched. The
    temp file is locked while it is written, and stale temp files of earlier,
    killed writes of ``path`` are removed first (:func:`_remove_stale_temps`).
    A new file gets the permissions ``open`` would give it (``0o666`` less the
    umask); a file replaced keeps its own. The temp file's name fits the file
    system's limit whatever the length of ``path``'s (:func:`_temp_stem`).

    A symbolic link is written through (the file it points to is replaced, the
    link kept); a path that exists and is not a regular file (a directory, a
    named pipe, a device such as ``/dev/null``) is refused with ``OSError``
    before anything is written: replacing it would swap it for a plain file. So are
    a path ending in a separator (``IsADirectoryError``), a loop of links, and a
    directory that does not exist (``FileNotFoundError``) or is not one
    (``NotADirectoryError``): each error names ``path`` (:func:`_write_target`).
    An ``OSError`` while writing (a full disk, a file-size limit) is raised as the same
    type and ``errno`` with ``filename`` set to ``path`` (the system's names no file).
    """
    path, directory = _write_target(path)
    _remove_stale_temps(directory / path.name)
    kept = _kept_mode(path)
    try:
        fd, tmp = _create_temp(directory, _temp_stem(directory / path.name),
                               0o666 if kept is None else kept)
    except OSError as err:  # not the temp file's name: the path the caller gave
        raise type(err)(f"cannot write {path}: no temporary file can be created in "
                        f"{directory}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # "a writer is alive": see above
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if kept is not None:
            os.chmod(tmp, kept)  # the umask may have taken bits the old file had
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            # a full disk or a file-size limit, found writing: name the file (the OS does not)
            raise type(err)(err.errno, f"{err.strerror} (nothing written to it; a file "
                            "there before is kept)", str(path)) from err
        raise
    _fsync_dir(directory)
    return path


class _Hashing:
    """A write-only file object that passes bytes through and hashes them (SHA-256)."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def write(self, b) -> int:
        self.h.update(b)
        return self.f.write(b)


def _json_number(x: Any) -> Any:
    """``json.dumps``'s ``default``: a NumPy scalar or 0-d array (NumPy or JAX) of bools,
    ints or floats as the Python bool, int or float it holds (a NaN or inf float is then
    written as Python's are: ``NaN``, ``Infinity``); anything else is not JSON-serializable."""
    if isinstance(x, (np.generic, np.ndarray, jax.Array)) and np.ndim(x) == 0 \
            and checks.is_real(x.dtype):
        arr = np.asarray(x)
        kind = arr.dtype.kind
        return bool(arr) if kind == "b" else int(arr) if kind in "iu" else float(arr)
    raise TypeError(f"Object of type {type(x).__name__} is not JSON serializable")


def _json_dict(value: Any, what: str) -> Any:
    """``value`` as it will be read back from the file (JSON: tuples become lists), once it
    is JSON-serializable (NumPy scalars and 0-d arrays as Python numbers:
    :func:`_json_number`) and every key of its objects a str (:func:`_check_keys`)."""
    try:
        doc = json.loads(json.dumps(value, default=_json_number))
    except (TypeError, ValueError, RecursionError) as err:
        raise TypeError(f"save_model: {what} must be JSON-serializable: {err}") from None
    _check_keys(value, what)
    return doc


def _check_keys(value: Any, what: str) -> None:
    """Raise ``ValueError`` unless every key of every dict in ``value`` is a str: JSON
    would write ``1`` as ``"1"``, and ``{1: "a", "1": "b"}`` would load as one entry.
    (``value`` has passed ``json.dumps``: dicts, lists and tuples, no cycle.)"""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            bad = [k for k in v if not isinstance(k, str)]
            if bad:
                raise ValueError(f"save_model: {what} has the key {bad[0]!r} of type "
                                 f"{type(bad[0]).__name__}; model files keep str keys only "
                                 "(JSON would turn it into a str)")
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)


def _key_entry(key: Any) -> tuple[np.ndarray, dict]:
    if not isinstance(key, (jax.Array, np.ndarray)):
        raise TypeError(f"save_model: key must be a jax.random key, got {repr(key)[:200]}")
    checks.check_key(key, "save_model")  # one key, as the loader requires
    if _is_key(key):
        return _host_array(key, "key", "u")
    arr = np.asarray(jax.device_get(key))
    if arr.dtype != np.uint32:
        raise TypeError(f"save_model: key must be a jax.random key, got dtype {arr.dtype}")
    return _host_array(arr, "key", "u")


def _extras_doc(extras: Mapping | None) -> dict | None:
    if extras is None:
        return None
    if not isinstance(extras, Mapping):
        raise TypeError(f"save_model: extras must be a mapping, got {type(extras).__name__}")
    doc = _json_dict(dict(extras), "extras")
    try:
        return check_extras(doc, ValueError)
    except ValueError as err:
        raise ValueError(f"save_model: {err}") from None


def _history_doc(history: Mapping | None) -> dict | None:
    """``history`` as the file will hold it, once the loader would take it
    (:func:`check_history`)."""
    if history is None:
        return None
    doc = _json_dict(history, "history")
    try:
        return check_history(doc, ValueError)
    except ValueError as err:
        raise ValueError(f"save_model: {err}") from None


def _check_json_size(doc: dict) -> None:
    """Raise ``ValueError`` when ``doc`` makes a ``model.json`` larger than the loader
    reads (``MAX_JSON_BYTES``), naming the largest of the sections a caller fills."""
    size = len(json.dumps(doc, indent=1).encode())
    if size <= MAX_JSON_BYTES:
        return
    sizes = {k: len(json.dumps(doc[k]).encode()) for k in ("metadata", "history", "extras")}
    big = max(sizes, key=sizes.get)
    raise ValueError(f"save_model: model.json would be {size} bytes, beyond the {MAX_JSON_BYTES} "
                     f"a model file may hold (MAX_JSON_BYTES); {big} takes {sizes[big]} of them")


def save_model(path: str | os.PathLike, net: Network, params: Params, *,
               metadata: Mapping | None = None, opt_state: Any = None, key: Any = None,
               history: Mapping | None = None, epoch: int | None = None,
               extras: Mapping | None = None, batch: int = 0) -> Path:
    """Save ``net`` and ``params`` (and optionally training state) to ``path``, atomically.

    ``metadata`` and ``history`` must be JSON-serializable with str keys; ``history``
    must pass :func:`check_history`, ``extras`` (a section another part of the library
    keeps next to the network, returned as ``Model.extras``) :func:`check_extras`. With
    ``opt_state`` (any optax state pytree; its leaves and its structure,
    :func:`state_structure`, are stored), ``key`` (a ``jax.random`` key) or ``epoch`` the
    file is a checkpoint (see :func:`save_checkpoint`; ``batch``: batches done of epoch
    ``epoch``); with both ``opt_state`` and ``epoch``, ``metadata`` must pass
    :func:`~epynn_jax.network.checks.check_fit_metadata`, as :func:`load_checkpoint`
    requires. Raises ``TypeError``/``ValueError`` naming the argument for anything the
    loader would refuse (non-finite parameters, shapes that do not match the layers, a
    ``model.json`` beyond ``MAX_JSON_BYTES``) before anything is written; a path that
    cannot be written (:func:`atomic_write`) raises ``OSError`` naming it. Every array's
    index entry holds the SHA-256 of its ``.npy`` member. Returns the path.

    ``path`` is a str, bytes (decoded with ``os.fsdecode``) or ``os.PathLike``, as for
    every path of this module (:func:`path_arg`). ``epoch`` and ``batch`` take any
    ``numbers.Integral`` but a bool (a NumPy int too), stored as a Python int; NumPy
    scalars and 0-d arrays in ``metadata``, ``history`` and ``extras`` are written as the
    Python numbers they hold (a NaN or inf float as JSON ``NaN``/``Infinity``, as a Python
    float is); any other value JSON cannot hold raises ``TypeError`` naming the argument.
    """
    path = path_arg(path)
    if isinstance(net, Network) and len(net.layers) > MAX_LAYERS:
        raise ValueError(f"save_model: the network has {len(net.layers)} layers; model files "
                         f"hold at most {MAX_LAYERS}, so the file could not be loaded (raise "
                         "epynn_jax.io.checkpoint.MAX_LAYERS, here and where it is loaded)")
    arrays = _param_arrays(net, params)
    extras_doc = _extras_doc(extras)
    index = {name: _host_array(a, name, _PARAM_KINDS)[1] for name, a in arrays.items()}
    checkpoint = None
    if opt_state is not None or key is not None or epoch is not None:
        epoch = None if epoch is None else _count_arg(epoch, "epoch")
        batch = _count_arg(batch, "batch")
        leaves = jax.tree_util.tree_leaves(opt_state) if opt_state is not None else []
        for j, leaf in enumerate(leaves):
            arrays[f"opt_state/{j}"], index[f"opt_state/{j}"] = _host_array(
                leaf, f"opt_state leaf {j}", _STATE_KINDS)
        if key is not None:
            arrays["key"], index["key"] = _key_entry(key)
        checkpoint = {"epoch": epoch, "opt_state": None if opt_state is None else len(leaves)}
        if batch:
            checkpoint["batch"] = batch
        structure = None if opt_state is None else state_structure(opt_state)
        if structure is not None:
            checkpoint["opt_structure"] = structure
    if len(index) > MAX_ARRAYS:
        raise ValueError(f"save_model: {len(index)} arrays to store; model files hold at most "
                         f"{MAX_ARRAYS}, so the file could not be loaded (raise "
                         "epynn_jax.io.checkpoint.MAX_ARRAYS, here and where it is loaded)")
    for j, name in enumerate(index):
        index[name]["file"] = f"arrays/{j}.npy"
        index[name]["sha256"] = "0" * 64  # its length, for the size check; set as written
    metadata_doc = _json_dict(dict(metadata or {}), "metadata")
    if epoch is not None and opt_state is not None:  # what load_checkpoint will require
        checks.check_fit_metadata(metadata_doc, "save_model")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "input_shape": list(net.input_shape),
        "layers": [encode_layer(layer) for layer in net.layers],
        "arrays": index,
        "metadata": metadata_doc,
        "history": _history_doc(history),
        "checkpoint": checkpoint,
        "extras": extras_doc,
        "policy": policy_to_json(net.policy),
    }
    _check_json_size(doc)

    def write(f):
        # The arrays first, hashed as they are written; then the index that holds the hashes.
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, arr in arrays.items():
                with zf.open(index[name]["file"], "w", force_zip64=arr.nbytes > 2**30) as m:
                    hashing = _Hashing(m)
                    np.lib.format.write_array(hashing, arr, allow_pickle=False)
                index[name]["sha256"] = hashing.h.hexdigest()
            zf.writestr(MODEL_JSON, json.dumps(doc, indent=1).encode())

    return atomic_write(path, write)


def save_checkpoint(path: str | os.PathLike, net: Network, params: Params, *, opt_state: Any,
                    key: Any, epoch: int, history: Mapping | None = None,
                    metadata: Mapping | None = None, batch: int = 0) -> Path:
    """Save a training checkpoint: model, optimizer state, PRNG key, epoch and history.

    ``epoch`` is the number of completed epochs, ``batch`` the batches done of the
    next one (a streamed fit saved mid-epoch; ``key`` is then that epoch's first).
    Atomic like :func:`save_model`.
    """
    return save_model(path, net, params, metadata=metadata, opt_state=opt_state, key=key,
                      history=history, epoch=epoch, batch=batch)


# -- reading -------------------------------------------------------------------------------


def _check_archive(zf: zipfile.ZipFile) -> None:
    """Every member stored (uncompressed), none overlapping another: bytes read <= file size."""
    infos = zf.infolist()
    if len(infos) > MAX_ARRAYS + 1:
        raise ModelFileError(f"the archive has {len(infos)} members; model files hold "
                             f"{MODEL_JSON} and at most {MAX_ARRAYS} arrays (raise "
                             "epynn_jax.io.checkpoint.MAX_ARRAYS to load more)")
    names = [i.filename for i in infos]
    if len(names) != len(set(names)):
        raise ModelFileError("duplicate members in the archive")
    data_end = getattr(zf, "start_dir", None)  # where the central directory begins
    previous, end = None, 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise ModelFileError(f"member {info.filename[:200]!r} is compressed or encrypted "
                                 f"(method {info.compress_type}); model files store their "
                                 "members uncompressed")
        if info.compress_size != info.file_size:
            raise ModelFileError(f"member {info.filename!r}: inconsistent sizes in the archive")
        if info.header_offset < end:
            raise ModelFileError(f"members {previous!r} and {info.filename!r} overlap in the "
                                 "archive (not a file save_model wrote)")
        # the local header is 30 bytes and the name, plus an extra field (not counted: this
        # is a lower bound of where the member ends)
        name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437",
                                         errors="replace")
        end = info.header_offset + 30 + len(name) + info.compress_size
        if data_end is not None and end > data_end:
            raise ModelFileError(f"member {info.filename!r} extends past the archive's data")
        previous = info.filename


def _read_doc(zf: zipfile.ZipFile) -> dict:
    names = zf.namelist()
    if MODEL_JSON not in names:
        raise ModelFileError(f"no {MODEL_JSON} in the archive: not an epynn_jax model file")
    info = zf.getinfo(MODEL_JSON)
    if info.file_size > MAX_JSON_BYTES:
        raise ModelFileError(f"{MODEL_JSON} is too large ({info.file_size} bytes)")
    with zf.open(info) as fp:
        raw = fp.read(MAX_JSON_BYTES + 1)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ModelFileError(f"{MODEL_JSON} is not valid JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(f"{MODEL_JSON} does not describe an epynn_jax model "
                             f"(format {doc.get('format') if isinstance(doc, dict) else None!r})")
    version = doc.get("version")
    if not _is_int(version) or not 1 <= version <= VERSION:
        raise ModelFileError(f"unsupported model file version {version!r} (this library reads "
                             f"versions 1 to {VERSION}; a newer epynn_jax wrote it?)")
    required = {"input_shape": list, "layers": list, "arrays": dict, "metadata": dict}
    for k, t in required.items():
        if not isinstance(doc.get(k), t):
            raise ModelFileError(f"{MODEL_JSON}: missing or invalid {k!r}")
    for k in ("history", "checkpoint"):
        if doc.get(k) is not None and not isinstance(doc[k], dict):
            raise ModelFileError(f"{MODEL_JSON}: invalid {k!r}")
    return doc


def _check_counts(doc: dict) -> None:
    """Layers, arrays, input shape and checkpoint fields: sizes before any work per item."""
    n = len(doc["layers"])
    if n == 0:
        raise ModelFileError(f"{MODEL_JSON}: 'layers' must be a non-empty list")
    if n > MAX_LAYERS:
        raise ModelFileError(f"{MODEL_JSON} lists {n} layers; model files hold at most "
                             f"{MAX_LAYERS} (raise epynn_jax.io.checkpoint.MAX_LAYERS to load "
                             "a deeper network)")
    if len(doc["arrays"]) > MAX_ARRAYS:
        raise ModelFileError(f"{MODEL_JSON} lists {len(doc['arrays'])} arrays; model files hold "
                             f"at most {MAX_ARRAYS} (raise epynn_jax.io.checkpoint.MAX_ARRAYS "
                             "to load more)")
    shape = doc["input_shape"]
    if not (0 < len(shape) <= MAX_DEPTH and all(_is_int(s) and s >= 1 for s in shape)):
        raise ModelFileError(f"{MODEL_JSON}: invalid input_shape {shape!r}")
    ck = doc.get("checkpoint")
    if ck is not None:
        leaves = ck.get("opt_state")
        if leaves is not None and not (_is_int(leaves) and 0 <= leaves <= MAX_ARRAYS):
            raise ModelFileError(f"checkpoint: invalid optimizer state leaf count {leaves!r}")
        epoch = ck.get("epoch")
        if epoch is not None and not (_is_int(epoch) and epoch >= 0):
            raise ModelFileError(f"invalid checkpoint epoch {epoch!r}")
        batch = ck.get("batch", 0)
        if not (_is_int(batch) and 0 <= batch < _INT64):
            raise ModelFileError(f"invalid checkpoint batch {batch!r}")
        structure = ck.get("opt_structure")
        if structure is not None and not isinstance(structure, str):
            raise ModelFileError(f"checkpoint: invalid optimizer state structure "
                                 f"{structure!r}"[:300])


class _Entry(NamedTuple):
    """A checked index entry: its member, dtype, shape, checksum (None: unverified) and the
    bytes of its checked .npy header."""

    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple[int, ...]
    sha256: str | None
    header: bytes


def _kinds(name: Any, doc: dict) -> str:
    """The dtype kinds allowed for the array ``name``; raise for a name that cannot be there."""
    match = _ARRAY_NAME.fullmatch(name) if isinstance(name, str) else None
    ck = doc.get("checkpoint") or {}
    if match and name.startswith("params/") and int(match.group(1)) < len(doc["layers"]):
        return _PARAM_KINDS
    if match and name.startswith("opt_state/") and int(match.group(2)) < (ck.get("opt_state")
                                                                         or 0):
        return _STATE_KINDS
    if name == "key" and doc.get("checkpoint") is not None:
        return "u"
    raise ModelFileError(f"unexpected array {name!r} in the index (the file lists "
                         f"{len(doc['layers'])} layers and "
                         f"{ck.get('opt_state') or 0} optimizer state arrays)")


def _check_index(zf: zipfile.ZipFile, doc: dict) -> tuple[dict[str, _Entry], bool]:
    """Check every index entry against its member without reading any array.

    Returns the entries and whether the file is checksummed (False: written
    by epynn_jax 0.1, no array has a checksum).
    """
    out: dict[str, _Entry] = {}
    files = {MODEL_JSON}
    for name, entry in doc["arrays"].items():
        kinds = _kinds(name, doc)
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) \
                or not isinstance(entry.get("shape"), list) or len(entry["shape"]) > MAX_DEPTH \
                or not all(_is_int(s) and s >= 0 for s in entry["shape"]):
            raise ModelFileError(f"array {name!r}: invalid index entry {entry!r}"[:300])
        where = f"array {name!r}"
        dtype = _check_dtype(entry.get("dtype"), kinds, where)
        sha = entry.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise ModelFileError(f"{where}: invalid sha256 {sha!r}"[:300])
        file = entry["file"]
        if file in files:
            raise ModelFileError(f"{where}: member {file!r} used twice")
        files.add(file)
        try:
            info = zf.getinfo(file)
        except KeyError:
            raise ModelFileError(f"{where}: member {file!r} is missing") from None
        shape = tuple(entry["shape"])
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size > nbytes + _NPY_HEADER_MAX or info.file_size < nbytes:
            raise ModelFileError(f"{where}: member {file!r} has {info.file_size} bytes, which "
                                 f"does not fit an array {shape} of {dtype}")
        out[name] = _Entry(info, dtype, shape, sha, _check_npy(zf, info, dtype, shape, where))
    extra = set(zf.namelist()) - files
    if extra:
        raise ModelFileError(f"unexpected members in the archive: {sorted(extra)[:5]}")
    unchecked = [name for name, e in out.items() if e.sha256 is None]
    if unchecked and len(unchecked) != len(out):
        raise ModelFileError(f"array {unchecked[0]!r} has no sha256 checksum, though other "
                             "arrays of the file have one (a damaged or edited file)")
    return out, not unchecked


def _expected_arrays(net: Network, doc: dict) -> dict[str, tuple | None]:
    """Name -> required shape (None: any) of every array the architecture and checkpoint need."""
    out: dict[str, tuple | None] = {}
    shapes: dict[Layer, dict] = {}  # equal layers have equal parameter shapes: trace once
    for i, layer in enumerate(net.layers):
        try:
            p = shapes[layer] if layer in shapes else shapes.setdefault(layer,
                                                                        layer.param_shapes())
        except TypeError:  # an unhashable custom layer
            p = layer.param_shapes()
        for k, shape in p.items():
            out[f"params/{i}/{k}"] = shape
    ck = doc.get("checkpoint")
    if ck is not None:
        for j in range(ck.get("opt_state") or 0):
            out[f"opt_state/{j}"] = None
        if "key" in doc["arrays"]:
            out["key"] = None
    return out


def _read_arrays(zf: zipfile.ZipFile, net: Network, doc: dict,
                 entries: dict[str, _Entry]) -> dict[str, np.ndarray]:
    expected = _expected_arrays(net, doc)
    if set(entries) != set(expected):
        missing, extra = sorted(set(expected) - set(entries)), sorted(set(entries) - set(expected))
        raise ModelFileError(f"arrays do not match the architecture: missing {missing}, "
                             f"unexpected {extra}")
    for name, shape in expected.items():
        if shape is not None and entries[name].shape != shape:
            raise ModelFileError(f"array {name!r} has shape {entries[name].shape}, the "
                                 f"architecture needs {shape}")
    out = {}
    for name in expected:
        e = entries[name]
        arr = _read_npy(zf, e.info, e.dtype, e.shape, f"array {name!r}", e.sha256, e.header)
        if name.startswith("params/") and not np.all(np.isfinite(arr)):
            raise ModelFileError(f"array {name!r} contains NaN or inf values")
        out[name] = arr
    return out


def _to_device(x: Any, dtype: Any = None) -> jax.Array:
    """A device array of ``x`` (cast on the host to ``dtype`` if given).

    ``jax.device_put`` only transfers; ``jnp.asarray`` would compile a conversion
    for every new shape (tens of ms each, most of a model's load time).
    """
    if dtype is not None and (not isinstance(x, jax.Array) or x.dtype != dtype):
        x = np.asarray(x, dtype=jax.dtypes.canonicalize_dtype(dtype))
    return jax.device_put(x) if not isinstance(x, jax.Array) else x


def _wrap_key(data: np.ndarray, entry: dict, where: str) -> jax.Array:
    impl = entry.get("key_impl")
    if impl is None:
        return _to_device(data)
    if not isinstance(impl, str) or not re.fullmatch(r"\w+", impl):
        raise ModelFileError(f"{where}: invalid key implementation {impl!r}")
    try:
        return jax.random.wrap_key_data(data, impl=impl)
    except (TypeError, ValueError, KeyError) as err:
        raise ModelFileError(f"{where}: cannot rebuild the PRNG key ({impl}): {err}") from None


def _checked_key(data: np.ndarray, entry: dict) -> jax.Array:
    """The file's PRNG key: one key (:func:`~epynn_jax.network.checks.check_key`), never
    a batch of keys or key data of another shape or dtype."""
    key = _wrap_key(data, entry, "key")
    try:
        return checks.check_key(key, "array 'key'")
    except (TypeError, ValueError) as err:
        raise ModelFileError(str(err)) from None


def _state_leaf(data: np.ndarray, entry: dict, j: int) -> jax.Array:
    """Optimizer state leaf ``j`` on the device; its values must survive JAX's dtype (a
    uint64 becomes a uint32 without x64: never by wrapping around)."""
    if entry.get("key_impl") is not None:
        return _wrap_key(data, entry, "opt_state")
    try:
        return _to_device(checks.exact_cast(data, jax.dtypes.canonicalize_dtype(data.dtype),
                                            f"optimizer state leaf {j}"))
    except ValueError as err:
        raise ModelFileError(str(err)) from None


def _fits_float(x: int | float) -> bool:
    """Whether the number ``x`` converts to a float (an int beyond 1.8e308 does not)."""
    try:
        float(x)
    except OverflowError:
        return False
    return True


def check_history(history: Any, error: type[Exception] = ModelFileError) -> dict | None:
    """Return ``history`` if it is ``None`` or maps metric -> split -> list of numbers,
    each number one that converts to a float (NaN and inf are kept: an epoch may score
    them; an int beyond the float range is refused), else raise ``error`` naming the entry.
    :func:`load_model` checks a file's history with this; :func:`save_model` what it is
    given (``error=ValueError``)."""
    if history is None:
        return None
    ok = isinstance(history, dict) and all(isinstance(v, dict) and all(
        isinstance(s, list) and all(isinstance(x, (int, float)) for x in s) for s in v.values())
        for v in history.values())
    if not ok:
        raise error("history must map metric -> split -> list of numbers")
    for metric, splits in history.items():
        for split, values in splits.items():
            if not all(_fits_float(x) for x in values):
                raise error(f"history[{metric!r}][{split!r}]: a number too large for a float")
    return history


def _parse(zf: zipfile.ZipFile, resolver: _Resolver) -> tuple[Model, bool]:
    """The model in ``zf``, and whether its arrays were verified against checksums.

    Cheap checks first (archive, JSON, counts, index, class paths), then the
    layers are constructed and built, then the arrays read.
    """
    _check_archive(zf)
    doc = _read_doc(zf)
    _check_counts(doc)
    entries, verified = _check_index(zf, doc)
    _check_classes(doc, resolver)
    extras = check_extras(doc.get("extras"))
    history = check_history(doc.get("history"))
    net = _build_network(doc, resolver)
    arrays = _read_arrays(zf, net, doc, entries)
    params = tuple({k: _to_device(arrays[f"params/{i}/{k}"]) for k in p}
                   for i, p in enumerate(_param_names(net, arrays)))
    ck = doc.get("checkpoint") or {}
    key = _checked_key(arrays["key"], doc["arrays"]["key"]) if "key" in arrays else None
    opt_state = None
    if ck.get("opt_state") is not None:
        opt_state = SavedLeaves([_state_leaf(arrays[f"opt_state/{j}"],
                                             doc["arrays"][f"opt_state/{j}"], j)
                                 for j in range(ck["opt_state"])], ck.get("opt_structure"))
    model = Model(net, params, doc["metadata"], history, opt_state, key, ck.get("epoch"),
                  extras, int(ck.get("batch", 0)))
    return model, verified or not entries


def _param_names(net: Network, arrays: dict) -> list[list[str]]:
    """Each layer's parameter names, in the order the file's index lists them."""
    names: list[list[str]] = [[] for _ in net.layers]
    for name in arrays:
        if name.startswith("params/"):
            _, i, k = name.split("/")
            names[int(i)].append(k)
    return names


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _kind(st: os.stat_result) -> str:
    """What a path that is not a regular file is, in words."""
    return next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a file")


def _require_regular(st: os.stat_result, path: Any, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path} is {_kind(st)}, not a regular file: cannot read it as a {what}")


def open_regular(path: str | os.PathLike, what: str = "model file") -> io.BufferedReader:
    """``path`` opened for reading in binary, if it is a regular file (links followed).

    Anything else raises ``OSError`` saying what it is (``what`` names the file's
    role), before it is opened: ``open`` on a named pipe waits for a writer forever, a
    device may never end. The file is opened without blocking and checked again, so a
    pipe swapped in between cannot block either. A missing file raises the usual
    ``FileNotFoundError``.
    """
    _require_regular(os.stat(path), path, what)
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0))
    try:
        _require_regular(os.fstat(fd), path, what)
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _load(path: str | os.PathLike, allow_modules: Sequence[str],
          custom_layers: Mapping[str, type] | None) -> Model:
    path = Path(path_arg(path, where="load_model"))
    resolver = _Resolver(allow_modules, custom_layers)
    with open_regular(path) as f:  # a missing or unreadable file raises the usual OSError
        try:
            zf = zipfile.ZipFile(f)
        except Exception as err:  # noqa: BLE001 - whatever the bytes, report a bad file
            raise ModelFileError(f"{path}: not a zip archive (truncated, corrupted or not a "
                                 f"model file): {type(err).__name__}: {err}") from None
        with zf:
            try:
                model, verified = _parse(zf, resolver)
            except ModelFileError as err:
                raise ModelFileError(f"{path}: {err}") from None
            except Exception as err:  # noqa: BLE001 - content we could not anticipate
                raise ModelFileError(f"{path}: corrupted model file ({type(err).__name__}: "
                                     f"{err})") from None
    if not verified:
        warnings.warn(f"{path}: the arrays of this model file have no checksums (written by "
                      "epynn_jax 0.1), so they are loaded unverified; re-save it with "
                      "save_model to add them", UserWarning, stacklevel=3)
    return model


def load_model(path: str | os.PathLike, *, allow_modules: Sequence[str] = (),
               custom_layers: Mapping[str, type] | None = None) -> Model:
    """Load a model (or checkpoint) file written by :func:`save_model`.

    ``allow_modules`` names modules (and their submodules) that may be
    imported for custom layer classes; ``custom_layers`` maps a class name
    (``"MyLayer"`` or ``"mypkg.layers:MyLayer"``) to the class itself. Nothing
    else outside ``epynn_jax`` is imported. ``path`` is a str, bytes (``os.fsdecode``) or
    ``os.PathLike`` (anything else: ``TypeError`` naming it). Raises
    :class:`ModelFileError` for any problem with the file's content, ``OSError`` when
    ``path`` is missing or not a regular file (:func:`open_regular`: a named pipe would
    block forever). In a checkpoint, ``opt_state`` is the tuple of the optimizer state's
    leaves (see :func:`load_checkpoint`).
    """
    return _load(path, allow_modules, custom_layers)


def restore_opt_state(optimizer: Any, params: Params, leaves: Sequence) -> Any:
    """Rebuild an optimizer state from saved leaves, shaped like ``optimizer.init(params)``.

    Raises :class:`ModelFileError` naming the leaf when the number, shapes or kinds
    (bool, int, float) of the leaves do not match what ``optimizer`` keeps, or when a
    leaf's values do not convert exactly to the optimizer's dtype (NaN, a fractional
    count, an int out of range); float32 leaves load as float64 and back.
    """
    try:
        return checks.restore_opt_state(optimizer, params, leaves)
    except ValueError as err:
        raise ModelFileError(str(err)) from None


def load_checkpoint(path: str | os.PathLike, optimizer: Any = None, *,
                    allow_modules: Sequence[str] = (),
                    custom_layers: Mapping[str, type] | None = None) -> Model:
    """Load a checkpoint written by :func:`save_checkpoint`.

    With ``optimizer`` (an optax ``GradientTransformation``) the optimizer
    state is rebuilt as its pytree; without, ``opt_state`` is the tuple of
    leaves. ``path`` may be a directory holding ``last.epynn`` (what
    :class:`~epynn_jax.io.checkpointing.Checkpoints` writes there). Raises
    :class:`ModelFileError` when the file is no checkpoint, or when the metadata fields
    ``fit`` records (loss, metrics, batch size, split, epochs, schedule, data
    fingerprint) have the wrong types
    (:func:`~epynn_jax.network.checks.check_fit_metadata`).
    """
    path = path_arg(path, where="load_checkpoint")
    if Path(path).is_dir():
        path = Path(path) / "last.epynn"
    model = load_model(path, allow_modules=allow_modules, custom_layers=custom_layers)
    if model.epoch is None or model.opt_state is None:
        raise ModelFileError(f"{path}: a model file, not a checkpoint (no optimizer state or "
                             "epoch); use load_model")
    try:
        checks.check_fit_metadata(model.metadata, "checkpoint")
    except ValueError as err:
        raise ModelFileError(f"{path}: {err}") from None
    if optimizer is not None:
        try:
            opt_state = restore_opt_state(optimizer, model.params, model.opt_state)
        except ModelFileError as err:
            raise ModelFileError(f"{path}: {err}") from None
        model = model._replace(opt_state=opt_state)
    return model
