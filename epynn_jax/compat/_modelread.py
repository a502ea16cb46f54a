"""Reading the facade's model files: the core loads and checks, this maps to facade objects.

:func:`read_parts` asks :func:`epynn_jax.io.checkpoint.load_model` for the
file (every check of the core: sizes, members, shapes, dtypes, finite
weights, allow-listed classes, the extras section's limits), then checks
each field of the facade's section and rebuilds the facade layers from it:
a built-in layer from its EpyNN constructor arguments, which must give the
very functional layer the core rebuilt; a custom NumPy layer from its class,
which is never imported because a file names it (it is passed in
``custom_layers`` or defined in an already imported module). Every problem
raises a one-line :class:`~epynn_jax.errors.ModelFileError` naming the file;
files of the facade's first format and EpyNN's pickles are explained.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from epynn_jax.compat import registry
from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat._modelfile import (
    KEY,
    OLD_FORMAT,
    SE_DATASET,
    SECTION,
    SECTION_VERSION,
    SETS,
    SKIP_ATTRS,
    SLOT_PATH,
    TAGS,
    CustomLayerSlot,
)
from epynn_jax.compat.commons.loss import loss_functions
from epynn_jax.compat.commons.models import Layer as FacadeLayer
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.errors import ModelFileError
from epynn_jax.io import checkpoint
from epynn_jax.layers import embedding as functional_embedding
from epynn_jax.layers.base import Layer
from epynn_jax.maths import metrics as metrics_lib

__all__ = ["read_parts"]


# -- fields of the section ----------------------------------------------------------------


def _from_json(v: Any, where: str) -> Any:
    if isinstance(v, list):
        return [_from_json(x, where) for x in v]
    if not isinstance(v, dict):
        return v
    if set(v) == {"__tuple__"}:
        return tuple(_from_json(x, where) for x in _field(v, "__tuple__", list, where))
    if set(v) == {"__float__"}:
        if v["__float__"] not in ("nan", "inf", "-inf"):
            raise ModelFileError(f"{where}: invalid tagged float {v['__float__']!r}")
        return float(v["__float__"])
    return {k: _from_json(x, f"{where}.{k}") for k, x in v.items()}


def _field(rec: Any, key: str, types, where: str) -> Any:
    """``rec[key]``, which must exist and be of ``types`` (never a bool for an int)."""
    if not isinstance(rec, dict):
        raise ModelFileError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if key not in rec:
        raise ModelFileError(f"{where}: missing {key!r}")
    v = rec[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        names = "/".join("null" if t is type(None) else t.__name__ for t in types)
        raise ModelFileError(f"{where}: {key!r} must be {names}, got {str(v)[:80]!r}")
    return v


def _count(rec: dict, key: str, where: str, low: int = 0) -> int:
    v = _field(rec, key, int, where)
    if not low <= v < 2**31:
        raise ModelFileError(f"{where}: {key!r} = {v} is out of range")
    return v


def _hpars(rec: dict, key: str, where: str) -> dict | None:
    hp = _field(rec, key, (dict, type(None)), where)
    if hp is not None and not all(isinstance(v, (str, int, float, bool, type(None)))
                                  for v in hp.values()):
        raise ModelFileError(f"{where}: {key!r} must map names to numbers or strings")
    return hp


# -- read --------------------------------------------------------------------------------


def _explain(path: str) -> None:
    """Raise a one-line ModelFileError for the files this version knowingly refuses."""
    with open(path, "rb") as fh:
        head = fh.read(1)
    if head == b"\x80" or head in (b"(", b"}", b"]"):
        raise ModelFileError(
            f"{path} is a pickle (the format EpyNN 1.2.13 writes). epynn_jax does not unpickle "
            "files: unpickling can run arbitrary code and needs EpyNN's own classes. To convert "
            "it, load it with EpyNN itself, rebuild the same layers with the facade, copy each "
            "layer's weights (new.layers[i].p = {k: v.copy() for k, v in old.layers[i].p."
            "items()}) after initialize(), then call model.write().")
    fmt, version = checkpoint.read_format(path)
    if fmt == OLD_FORMAT:
        raise ModelFileError(
            f"{path} is a model file of the first epynn_jax.compat format ({OLD_FORMAT!r}, "
            f"version {version!r}), which this version does not read: re-run the script that "
            "trained it with this version of epynn_jax and call model.write() again")


def _find_class(path: str, custom_layers: Mapping[str, type], where: str) -> type:
    """The custom layer class ``module:QualName``: from ``custom_layers``, or from the
    namespace of its module when that module is already imported (never imported here)."""
    module, qualname = path.split(":")
    for name in (path, qualname, qualname.rsplit(".", 1)[-1]):
        if name in custom_layers:
            cls = custom_layers[name]
            break
    else:
        cls = sys.modules.get(module)
        for part in qualname.split("."):
            cls = getattr(cls, "__dict__", {}).get(part) if cls is not None else None
    if cls is None:
        short = qualname.rsplit(".", 1)[-1]
        raise ModelFileError(
            f"{where}: the model has the custom layer {path}, which is not defined here: pass "
            f"read_model(..., custom_layers={{{short!r}: {short}}}) or import its module first "
            "(a model file never imports code)")
    if not (isinstance(cls, type) and issubclass(cls, FacadeLayer)
            and not issubclass(cls, BuiltinLayer)):
        raise ModelFileError(f"{where}: {path} is not a custom layer class (a subclass of "
                             "epynn.commons.models.Layer other than the built-in layers)")
    return cls


def _common_attrs(layer, rec: dict, where: str) -> None:
    layer.se_hPars = _hpars(rec, "se_hPars", where)
    lrate = _field(rec, "lrate", list, where)
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lrate):
        raise ModelFileError(f"{where}: 'lrate' must be a list of numbers")
    layer.lrate = [float(x) for x in lrate]
    layer.trainable = _field(rec, "trainable", bool, where)


def _restore_embedding(rec: dict, fl: Layer, where: str) -> Embedding:
    if type(fl) is not functional_embedding.Embedding:
        raise ModelFileError(f"{where}: the network's first layer is a {fl.name}, not an "
                             "Embedding")
    layer = Embedding()
    se = _field(rec, "se_dataset", dict, where)
    if set(se) != set(SE_DATASET):
        raise ModelFileError(f"{where}: 'se_dataset' must have the keys {sorted(SE_DATASET)}")
    for k, types in SE_DATASET.items():
        _field(se, k, types, f"{where} se_dataset")
    layer.se_dataset = dict(se)
    vocab = _field(rec, "vocabulary", (list, type(None)), where)
    if vocab is not None:
        elements = []
        for pair in vocab:
            if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in TAGS
                    and type(pair[1]) is TAGS[pair[0]]):
                raise ModelFileError(f"{where}: invalid vocabulary entry {str(pair)[:80]}")
            elements.append(pair[1])
        if len(set(elements)) != len(elements):
            raise ModelFileError(f"{where}: the vocabulary repeats an element")
        layer.e2i = {e: j for j, e in enumerate(elements)}
        layer.i2e = dict(enumerate(elements))
        layer.d["e"] = len(elements)
    if fl.vocabulary_size != (None if vocab is None else len(vocab)):
        raise ModelFileError(f"{where}: the vocabulary has {None if vocab is None else len(vocab)}"
                             f" elements, the network's Embedding {fl.vocabulary_size}")
    return layer


def _restore_builtin(rec: dict, fl: Layer, where: str) -> BuiltinLayer:
    name = _field(rec, "class", str, where)
    if name not in registry.BUILTIN or name == "Embedding":
        raise ModelFileError(f"{where}: unknown built-in layer {name[:80]!r}")
    cls = registry.builtin_class(name)
    kwargs = _from_json(_field(rec, "kwargs", dict, where), where)
    unknown = set(kwargs) - (set(inspect.signature(cls).parameters) - {"se_hPars"})
    if unknown:
        raise ModelFileError(f"{where}: {name} takes no argument(s) {sorted(unknown)[:5]}")
    try:
        layer = cls(**registry.constructor_kwargs(name, kwargs))
        mine = layer._functional_class()(**layer._functional_kwargs(), hpars=fl.hpars)
    except (TypeError, ValueError, KeyError, OverflowError, NotImplementedError) as err:
        raise ModelFileError(f"{where}: invalid arguments for {name}: {err}") from None
    if mine != dataclasses.replace(fl, input_shape=None):
        raise ModelFileError(f"{where}: the arguments of {name} do not match the network's "
                             f"{fl.name} layer")
    layer._fl = fl
    layer.d.update(fl.d)
    return layer


_ABSENT = object()


def _behaviour(cls: type, name: str) -> bool:
    """Whether ``name`` is behaviour of ``cls`` (a method, property or other descriptor, or
    anything callable) that an instance attribute of that name would hide or be hidden by;
    a class's plain data default (``k = 2``) is not."""
    attr = inspect.getattr_static(cls, name, _ABSENT)
    return attr is not _ABSENT and (callable(attr) or hasattr(type(attr), "__get__"))


def _restore_custom(rec: dict, fl: Layer, custom_layers: Mapping[str, type],
                    where: str) -> FacadeLayer:
    path = _field(rec, "class", str, where)
    if not isinstance(fl, CustomLayerSlot) or fl.layer_class != path:
        raise ModelFileError(f"{where}: the network holds a {fl.name} layer, not the custom "
                             f"layer {path[:200]}")
    cls = _find_class(path, custom_layers, where)
    layer = cls.__new__(cls)
    FacadeLayer.__init__(layer)
    attrs = _from_json(_field(rec, "attrs", dict, where), where)
    for k, v in attrs.items():
        if k in SKIP_ATTRS or k.startswith("_") or not KEY.match(k):
            raise ModelFileError(f"{where}: attribute {k[:80]!r} cannot be restored")
        if _behaviour(cls, k):
            raise ModelFileError(f"{where}: attribute {k!r} names a method or property of "
                                 f"{cls.__name__}; a model file restores data attributes only")
        vars(layer)[k] = v  # the instance dict, as written: no property or setter runs
    if "dims" in rec:
        dims = _from_json(_field(rec, "dims", dict, where), where)
        if not all(isinstance(k, str) and KEY.match(k) for k in dims):
            raise ModelFileError(f"{where}: dims keys must be names")
        layer.d.update(dims)
    return layer


def _restore_layer(i: int, rec: Any, fl: Layer, p: dict,
                   custom_layers: Mapping[str, type]) -> FacadeLayer:
    where = f"layer {i}"
    kind = _field(rec, "kind", str, where)
    if (i == 0) != (kind == "embedding"):
        raise ModelFileError(f"{where}: the Embedding must be layer 0, and only it")
    if kind == "embedding":
        layer = _restore_embedding(rec, fl, where)
    elif kind == "builtin":
        layer = _restore_builtin(rec, fl, where)
    elif kind == "custom":
        layer = _restore_custom(rec, fl, custom_layers, where)
    else:
        raise ModelFileError(f"{where}: unknown kind {kind[:80]!r}")
    _common_attrs(layer, rec, where)
    layer.name = type(layer).__name__
    layer.p = {k: np.array(v) for k, v in p.items()}
    return layer


def _metrics(history: dict | None, names: list[str]) -> dict:
    out = {}
    for m, per_set in (history or {}).items():
        try:
            metrics_lib.check_metric(m)
        except (TypeError, ValueError) as err:
            raise ModelFileError(f"history: {err}") from None
        if set(per_set) != set(names):
            raise ModelFileError(f"history[{m!r}] has the sets {sorted(per_set)[:5]}, the "
                                 f"model {names}")
        out[m] = [[float(x) for x in per_set[n]] for n in names] + [[]] * (3 - len(names))
    return out


def _model_attrs(sec: dict, history: dict | None) -> dict:
    where = "model"
    uname = _field(sec, "uname", str, where)
    loss = _field(sec, "loss", (str, type(None)), where)
    output = _field(sec, "output", (str, type(None)), where)
    seed = _field(sec, "seed", (int, type(None)), where)
    names = _field(sec, "dsets", list, where)
    if not 1 <= len(uname) <= 1000 or len(names) > 3 or len(set(names)) != len(names) \
            or not all(n in SETS for n in names):
        raise ModelFileError(f"{where}: invalid 'uname' or 'dsets'")
    attrs = {
        "uname": uname, "loss": loss, "output": output, "seed": seed,
        "se_hPars": _hpars(sec, "se_hPars", where),
        "epochs": _count(sec, "epochs", where), "e": _count(sec, "e", where),
        "_done_epochs": _count(sec, "done_epochs", where),
        "_n_label_columns": _count(sec, "label_columns", where, low=1),
        "_file_dsets": list(names), "metrics": _metrics(history, names),
    }
    if loss is not None:
        try:
            attrs["training_loss"] = loss_functions(loss, output)
        except ValueError as err:
            raise ModelFileError(f"{where}: {err}") from None
    return attrs


def _restore(model: checkpoint.Model, custom_layers: Mapping[str, type]):
    sec = (model.extras or {}).get(SECTION)
    if sec is None:
        raise ModelFileError("an epynn_jax model file without the facade's section (written "
                             "by the functional API?): load it with epynn_jax.io.load_model")
    version = _field(sec, "version", int, SECTION)
    if not 1 <= version <= SECTION_VERSION:
        raise ModelFileError(f"{SECTION} section version {version} (this version reads 1 to "
                             f"{SECTION_VERSION}; written by a newer epynn_jax?)")
    records = _field(sec, "layers", list, SECTION)
    if len(records) != len(model.net.layers):
        raise ModelFileError(f"{SECTION} describes {len(records)} layers, the network has "
                             f"{len(model.net.layers)}")
    layers = [_restore_layer(i, rec, fl, p, custom_layers)
              for i, (rec, fl, p) in enumerate(zip(records, model.net.layers, model.params))]
    return layers, _model_attrs(sec, model.history)


def read_parts(path: str | os.PathLike,
               custom_layers: Mapping[str, type] | None = None) -> tuple[list, dict]:
    """The layers of the model file at ``path`` and the model's attributes.

    Raises :class:`ModelFileError` (one line, naming the file) for any file
    that is not a valid facade model file; ``OSError`` when it cannot be
    opened.
    """
    path = os.fspath(path)
    custom_layers = dict(custom_layers or {})
    for name, cls in custom_layers.items():
        if not (isinstance(cls, type) and issubclass(cls, FacadeLayer)):
            raise TypeError(f"read_model: custom_layers[{name!r}] must be a subclass of "
                            f"epynn.commons.models.Layer, got {cls!r}")
    try:
        model = checkpoint.load_model(path, custom_layers={SLOT_PATH: CustomLayerSlot})
    except ModelFileError:
        _explain(path)
        raise
    try:
        return _restore(model, custom_layers)
    except ModelFileError as err:
        raise ModelFileError(f"{path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - a section we could not anticipate
        raise ModelFileError(f"{path}: invalid {SECTION} section ({type(err).__name__}: "
                             f"{err})") from None
