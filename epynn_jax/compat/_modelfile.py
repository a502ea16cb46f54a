"""The facade's model files: the core's format with the facade's section in its extras.

A facade model file IS a core model file (:mod:`epynn_jax.io.checkpoint`):

- its network is the facade's functional layers: each built-in facade layer
  stores the functional layer it wraps (``layer._fl``), and a user's NumPy
  layer, which has no functional form, stores a :class:`CustomLayerSlot`
  declaring its class path, the names and shapes of its parameters and its
  output shape. The core therefore checks every parameter of every layer,
  custom ones included, like any parameter: shape from the architecture, a
  float dtype, finite values, declared sizes that match the bytes on disk;
- its history is the model's metrics (``{metric: {set name: [per epoch]}}``);
- its extras hold one section, ``"epynn_jax.compat"``: what the facade needs
  besides (the layers' EpyNN classes and constructor arguments, ``se_hPars``,
  ``lrate``, ``trainable``, the Embedding's ``se_dataset`` and vocabulary, a
  custom layer's simple attributes, the model's name, loss, seed, epochs,
  label columns). The core validates the section's depth, size and value
  types before anything is built; :mod:`epynn_jax.compat._modelread` checks
  the meaning of each field when it reads a file.

This module holds the slot, the section's names and :func:`write_model`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any

import numpy as np

from epynn_jax.compat import registry
from epynn_jax.compat._builtin import BuiltinLayer
from epynn_jax.compat._report import say
from epynn_jax.compat.commons.models import Layer as FacadeLayer
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.io import checkpoint
from epynn_jax.layers.base import Layer, LayerError
from epynn_jax.network.model import build

__all__ = ["CustomLayerSlot", "write_model", "SECTION", "SECTION_VERSION", "OLD_FORMAT",
           "SUFFIX", "SLOT_PATH"]

SECTION = "epynn_jax.compat"
SECTION_VERSION = 1
OLD_FORMAT = "epynn_jax.compat.model"
SUFFIX = ".epynn"
SETS = ("dtrain", "dval", "dtest")
_PART = r"(?:[A-Za-z_]\w*|<locals>)"
_CLASS_PATH = re.compile(rf"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:{_PART}(?:\.{_PART})*$")
KEY = re.compile(r"^[A-Za-z_]\w{0,99}$")
#: a custom layer's attributes that a file never stores or restores (besides ``_*``)
SKIP_ATTRS = frozenset({"d", "fs", "p", "fc", "bs", "g", "bc", "o", "np_rng", "lrate",
                        "se_hPars", "name", "activation", "check", "trainable"})
SE_DATASET = {"dtrain_relative": (int, float), "dval_relative": (int, float),
              "dtest_relative": (int, float), "batch_size": (int, type(None)),
              "X_scale": (bool,), "X_encode": (bool,), "Y_encode": (bool,)}
TAGS = {"bool": bool, "int": int, "float": float, "str": str}


# -- the slot a custom NumPy layer takes in the core's network ---------------------------


def _shape_ok(shape: Any, low: int) -> bool:
    return isinstance(shape, tuple) and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= low for s in shape)


@dataclasses.dataclass(frozen=True)
class CustomLayerSlot(Layer):
    """Shape-only stand-in for a user's NumPy layer in a model file's network.

    ``layer_class`` is the layer's ``module:QualName``; ``params`` its
    parameter names and shapes, ``((key, shape), ...)``; ``output_sample_shape``
    its output shape without the batch axis (``None``: taken to be the input
    shape, when neither a following built-in layer nor the layers' caches
    tell it). It holds no code: it
    cannot compute; ``compat._modelread`` turns it back into the user's layer.
    """

    layer_class: str = ""
    params: tuple = ()
    output_sample_shape: tuple | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.layer_class, str) and len(self.layer_class) <= 500
                and _CLASS_PATH.match(self.layer_class)):
            raise ValueError(f"CustomLayerSlot: invalid class path {self.layer_class!r}")
        ok = isinstance(self.params, tuple) and len(self.params) <= 1000 and all(
            isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], str)
            and KEY.match(e[0]) and _shape_ok(e[1], 0) and len(e[1]) <= 32
            for e in self.params)
        if not ok or len({e[0] for e in self.params}) != len(self.params):
            raise ValueError(f"CustomLayerSlot {self.layer_class}: invalid parameter shapes")
        out = self.output_sample_shape
        if out is not None and not (_shape_ok(out, 1) and 1 <= len(out) <= 32):
            raise ValueError(f"CustomLayerSlot {self.layer_class}: invalid output shape {out!r}")

    @property
    def name(self) -> str:
        return self.layer_class.rsplit(".", 1)[-1].rsplit(":", 1)[-1]

    def compute_shapes(self, X_shape):
        return dataclasses.replace(self, input_shape=tuple(X_shape))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.params)

    @property
    def output_shape(self) -> tuple[int, ...]:
        shape = self._require_built("output_shape")
        return shape if self.output_sample_shape is None else self.output_sample_shape

    def _no_code(self, *args, **kwargs):
        raise LayerError(f"{self.name}: this slot stands for the custom layer "
                         f"{self.layer_class} in a model file and does not compute; read the "
                         "file with epynn_jax.compat's read_model")

    initialize_parameters = forward = backward = compute_gradients = _no_code


SLOT_PATH = f"{CustomLayerSlot.__module__}:{CustomLayerSlot.__qualname__}"


# -- JSON values of the section ------------------------------------------------------------


def _to_json(v: Any, where: str) -> Any:
    """A JSON value for ``v``: tuples tagged ``__tuple__``, non-finite floats ``__float__``."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(v, tuple):
        return {"__tuple__": [_to_json(x, where) for x in v]}
    if isinstance(v, list):
        return [_to_json(x, where) for x in v]
    if isinstance(v, dict) and all(isinstance(k, str) for k in v) \
            and set(v) not in ({"__tuple__"}, {"__float__"}):
        return {k: _to_json(x, f"{where}.{k}") for k, x in v.items()}
    raise TypeError(f"{where}: a value of type {type(v).__name__} cannot be stored")


# -- write -------------------------------------------------------------------------------


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _custom_output(model, i: int) -> tuple[int, ...] | None:
    """The output sample shape of custom layer ``i``, as far as the model knows it."""
    layers = model.layers
    nxt = layers[i + 1] if i + 1 < len(layers) else None
    if isinstance(nxt, BuiltinLayer) and nxt._fl is not None:
        return tuple(nxt._fl.input_shape)
    # EpyNN's convention: a layer caches its input as fc['X'] and its output as fc['A']
    seen = [_cached_shape(nxt, "X"), _cached_shape(layers[i], "A")]
    for shape in seen:
        if shape is not None:
            return shape
    if nxt is None:
        return (model._label_columns(),)
    return None


def _cached_shape(layer, key: str) -> tuple[int, ...] | None:
    """The sample shape of ``layer.fc[key]`` (a custom layer's cache), if it has one."""
    fc = getattr(layer, "fc", None) if isinstance(layer, FacadeLayer) \
        and not isinstance(layer, BuiltinLayer) else None
    shape = tuple(np.shape(fc[key])) if isinstance(fc, dict) and key in fc else ()
    return shape[1:] if len(shape) >= 2 and _shape_ok(shape[1:], 1) else None


def _functional_layers(model) -> list[Layer]:
    if not isinstance(model.layers[0], Embedding):
        raise TypeError("the first layer must be the facade's Embedding")
    out: list[Layer] = []
    for i, layer in enumerate(model.layers):
        where = f"layer {i} ({type(layer).__name__})"
        if isinstance(layer, BuiltinLayer):
            if registry.BUILTIN.get(type(layer).__name__) is None \
                    or registry.builtin_class(type(layer).__name__) is not type(layer):
                raise TypeError(f"{where}: a subclass of a built-in layer cannot be stored; "
                                "subclass epynn.commons.models.Layer for a custom layer")
            if layer._fl is None:
                raise ValueError(f"{where} has no shapes yet: initialize() the model before "
                                 "write()")
            out.append(layer._fl)
        elif isinstance(layer, FacadeLayer):
            params = tuple((k, tuple(int(s) for s in np.shape(v))) for k, v in layer.p.items())
            out.append(CustomLayerSlot(layer_class=_class_path(type(layer)), params=params,
                                       output_sample_shape=_custom_output(model, i)))
        else:
            raise TypeError(f"{where}: not a layer of epynn_jax.compat (subclass "
                            "epynn.commons.models.Layer)")
    return out


def _common(layer) -> dict:
    return {"se_hPars": _to_json(getattr(layer, "se_hPars", None), "se_hPars"),
            "lrate": [float(x) for x in getattr(layer, "lrate", [])],
            "trainable": bool(getattr(layer, "trainable", False))}


def _layer_record(layer, i: int) -> dict:
    where = f"layer {i} ({type(layer).__name__})"
    if isinstance(layer, Embedding):
        vocab = None
        if hasattr(layer, "e2i"):
            vocab = [_tagged(e, where) for e, _ in sorted(layer.e2i.items(), key=lambda t: t[1])]
        return {"kind": "embedding", "se_dataset": _to_json(layer.se_dataset, where),
                "vocabulary": vocab, **_common(layer)}
    if isinstance(layer, BuiltinLayer):
        return {"kind": "builtin", "class": type(layer).__name__,
                "kwargs": _to_json(layer._config(), where), **_common(layer)}
    attrs = {}
    for k, v in vars(layer).items():
        if k in SKIP_ATTRS or k.startswith("_") or not KEY.match(k):
            continue
        try:
            attrs[k] = _to_json(v, f"{where}.{k}")
        except TypeError:
            continue  # arrays, functions, objects: not part of a model file
    record = {"kind": "custom", "class": _class_path(type(layer)), "attrs": attrs,
              **_common(layer)}
    try:  # its dimensions, which its forward may read (EpyNN fills d in compute_shapes)
        record["dims"] = _to_json(dict(getattr(layer, "d", {})), f"{where}.d")
    except TypeError:
        pass  # dimensions that are not JSON (arrays, objects): not part of a model file
    return record


def _tagged(e, where: str) -> list:
    e = e.item() if isinstance(e, np.generic) else e
    for tag, typ in TAGS.items():
        if isinstance(e, typ):
            if typ is float and not math.isfinite(e):
                break
            return [tag, e]
    raise TypeError(f"{where}: vocabulary element {e!r} cannot be stored")


def _set_names(model) -> list[str]:
    names = [d.name for d in model.embedding.dsets]
    return names or list(getattr(model, "_file_dsets", []))


def _section(model) -> dict:
    return {
        "version": SECTION_VERSION,
        "uname": model.uname,
        "loss": getattr(model, "loss", None),
        "output": getattr(model, "output", None),
        "seed": getattr(model, "seed", None),
        "se_hPars": _to_json(getattr(model, "se_hPars", None), "se_hPars"),
        "epochs": int(getattr(model, "epochs", 0) or 0),
        "e": int(getattr(model, "e", 0) or 0),
        "done_epochs": int(getattr(model, "_done_epochs", 0)),
        "dsets": _set_names(model),
        "label_columns": int(model._label_columns()),
        "layers": [_layer_record(layer, i) for i, layer in enumerate(model.layers)],
    }


def _history(model) -> dict:
    names = _set_names(model)
    return {m: {n: [float(x) for x in vals[k]] for k, n in enumerate(names)}
            for m, vals in getattr(model, "metrics", {}).items()}


def write_model(model, model_path: str | os.PathLike | None = None) -> str:
    """Write ``model`` to ``model_path`` (default ``./models/<uname>.epynn``); return the path.

    The core's atomic writer: an existing file is replaced only by a complete
    new one. Raises ``ValueError`` (NaN or inf weights, naming the layer and
    key; a model not initialized) or ``TypeError`` before anything is written.
    """
    if model_path is None:
        model_path = os.path.join(os.getcwd(), "models", model.uname + SUFFIX)
    model_path = os.fspath(model_path)
    try:
        fls = _functional_layers(model)
        net = build(fls, fls[0].input_shape)
        for i, (fl, built) in enumerate(zip(fls, net.layers)):
            if isinstance(model.layers[i], BuiltinLayer) and built != fl:
                raise ValueError(f"layer {i} ({fl.name}) does not take the output of the "
                                 "layer before it")
        params = tuple(dict(layer.p) for layer in model.layers)
        extras = {SECTION: _section(model)}
        os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
        checkpoint.save_model(model_path, net, params, history=_history(model), extras=extras,
                              metadata={"api": SECTION, "uname": model.uname})
    except (TypeError, ValueError) as err:
        kind = TypeError if isinstance(err, TypeError) else ValueError
        raise kind(f"EpyNN.write: cannot write {model_path}: {err}") from None
    say(f"Make: {model_path}", model)
    return model_path
