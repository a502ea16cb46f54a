"""Directories and model files: ``configure_directory``, ``write_model``, ``read_model``.

Model files are **not pickles**. A file is a zip archive holding
``model.json`` (format name and version, architecture with each layer's
constructor arguments and hyperparameters, vocabulary, label columns,
metrics history) and one ``.npy`` array per parameter
(``layers/<i>/<key>.npy``, written and read with ``allow_pickle=False``).
Training data and caches are not stored, so files are small. Writing is
atomic: a temporary file in the same directory, flushed and fsynced, then
``os.replace``.

A pickle written by EpyNN itself is refused with an explanation (unpickling
runs arbitrary code, and it would need EpyNN's classes).
"""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile

import numpy as np

from epynn_jax.compat._report import say

__all__ = ["configure_directory", "write_model", "read_model", "read_file", "FORMAT",
           "VERSION", "ModelFileError"]

FORMAT = "epynn_jax.compat.model"
VERSION = 1
SUFFIX = ".epynn"


class ModelFileError(ValueError):
    """A model file that cannot be read (not ours, corrupt, a pickle, a newer version)."""


def read_file(f) -> str:
    """The text content of file ``f``."""
    with open(f) as fh:
        return fh.read()


def configure_directory(clear: bool = False) -> None:
    """Create ``./datasets``, ``./models`` and ``./plots`` (emptied first with ``clear``)."""
    for sub in ("datasets", "models", "plots"):
        path = os.path.join(os.getcwd(), sub)
        if clear and os.path.exists(path):
            shutil.rmtree(path)
            say(f"Remove: {path}")
        if not os.path.exists(path):
            os.mkdir(path)
            say(f"Make: {path}")


# -- encoding helpers ------------------------------------------------------------------------


def _json_value(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return {"__tuple__": [_json_value(x) for x in v]}
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"not JSON-able: {type(v).__name__}")


def _from_json(v):
    if isinstance(v, dict):
        if set(v) == {"__tuple__"}:
            return tuple(_from_json(x) for x in v["__tuple__"])
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def _tagged(e) -> list:
    e = e.item() if isinstance(e, np.generic) else e
    for tag, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if isinstance(e, typ):
            return [tag, e]
    raise TypeError(f"vocabulary element of type {type(e).__name__} cannot be saved")


def _untagged(pair):
    tag, value = pair
    return {"bool": bool, "int": int, "float": float, "str": str}[tag](value)


def _simple_attrs(layer) -> dict:
    skip = {"d", "fs", "p", "fc", "bs", "g", "bc", "o", "np_rng", "lrate", "se_hPars", "name",
            "activation", "check"}
    out = {}
    for k, v in vars(layer).items():
        if k in skip or k.startswith("_"):
            continue
        try:
            out[k] = _json_value(v)
        except TypeError:
            continue
    return out


# -- write -------------------------------------------------------------------------------------


def _layer_record(layer, arrays: dict, i: int) -> dict:
    from epynn_jax.compat._builtin import BuiltinLayer

    rec = {
        "class": type(layer).__name__,
        "module": type(layer).__module__,
        "builtin": isinstance(layer, BuiltinLayer),
        "se_hPars": _json_value(getattr(layer, "se_hPars", None) or {}),
        "lrate": [float(x) for x in getattr(layer, "lrate", [])],
        "trainable": bool(getattr(layer, "trainable", False)),
        "params": list(layer.p),
        "d": _json_value({k: v for k, v in layer.d.items()
                          if isinstance(v, (int, float, str, bool, tuple, np.generic))}),
    }
    if rec["builtin"]:
        rec["kwargs"] = _json_value(layer._config())
        fl = layer._fl
        rec["input_shape"] = list(fl.input_shape) if fl is not None else None
    else:
        rec["attrs"] = _simple_attrs(layer)
    for k, v in layer.p.items():
        arrays[f"layers/{i}/{k}.npy"] = np.asarray(v)
    return rec


def _embedding_record(emb) -> dict:
    rec = {"se_dataset": _json_value(emb.se_dataset), "vocabulary": None}
    if hasattr(emb, "e2i"):
        rec["vocabulary"] = [_tagged(e) for e, _ in sorted(emb.e2i.items(), key=lambda t: t[1])]
    return rec


def write_model(model, model_path: str | None = None) -> str:
    """Write ``model`` to ``model_path`` (default ``./models/<uname>.epynn``); return the path."""
    if model_path is None:
        model_path = os.path.join(os.getcwd(), "models", model.uname + SUFFIX)
    model_path = os.fspath(model_path)
    arrays: dict[str, np.ndarray] = {}
    desc = {
        "format": FORMAT,
        "version": VERSION,
        "uname": model.uname,
        "loss": getattr(model, "loss", None),
        "output": getattr(model, "output", None),
        "seed": getattr(model, "seed", None),
        "se_hPars": _json_value(getattr(model, "se_hPars", {}) or {}),
        "epochs": int(getattr(model, "epochs", 0) or 0),
        "e": int(getattr(model, "e", 0) or 0),
        "done_epochs": int(getattr(model, "_done_epochs", 0)),
        "metrics": _json_value(getattr(model, "metrics", {})),
        "dsets": [d.name for d in model.embedding.dsets],
        "label_columns": model._label_columns(),
        "embedding": _embedding_record(model.embedding),
        "layers": [_layer_record(layer, arrays, i) for i, layer in enumerate(model.layers)],
    }
    parent = os.path.dirname(os.path.abspath(model_path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("model.json", json.dumps(desc, indent=1, allow_nan=True))
                for name, arr in arrays.items():
                    buf = io.BytesIO()
                    np.save(buf, arr, allow_pickle=False)
                    zf.writestr(name, buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, model_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    say(f"Make: {model_path}", model)
    return model_path


# -- read --------------------------------------------------------------------------------------


def _check_file(path: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return
    if head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]"):
        raise ModelFileError(
            f"{path} is a pickle (the format EpyNN 1.2.13 writes). epynn_jax does not unpickle "
            "files: unpickling can run arbitrary code and needs EpyNN's own classes. To convert "
            "it, load it with EpyNN itself, rebuild the same layers with the facade, copy each "
            "layer's weights (new.layers[i].p = {k: v.copy() for k, v in old.layers[i].p."
            "items()}) after initialize(), then call model.write().")
    raise ModelFileError(f"{path} is not an epynn_jax model file (expected a zip archive)")


def _restore_builtin(rec: dict):
    from epynn_jax.compat import registry

    cls = registry.builtin_class(rec["class"])
    layer = cls(**registry.constructor_kwargs(rec["class"], _from_json(rec["kwargs"])))
    return layer


def _restore_custom(rec: dict):
    from epynn_jax.compat.commons.models import Layer

    module = sys.modules.get(rec["module"])
    cls = module
    for part in rec["class"].split("."):
        cls = getattr(cls, part, None) if cls is not None else None
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ModelFileError(
            f"the model has a custom layer {rec['module']}.{rec['class']}: define (import) that "
            "class before read_model (it is never imported from the file)")
    layer = cls.__new__(cls)
    Layer.__init__(layer)
    for k, v in _from_json(rec.get("attrs", {})).items():
        setattr(layer, k, v)
    return layer


def read_model(model_path: str | None = None):
    """Read a model file (default: the newest file in ``./models``)."""
    from epynn_jax.compat.embedding.models import Embedding
    from epynn_jax.compat.network.models import EpyNN

    if model_path is None:
        files = glob.glob(os.path.join(os.getcwd(), "models", "*"))
        if not files:
            raise FileNotFoundError("read_model: no model file in ./models")
        model_path = max(files, key=os.path.getctime)
    model_path = os.fspath(model_path)
    _check_file(model_path)
    try:
        with zipfile.ZipFile(model_path) as zf:
            desc = json.loads(zf.read("model.json"))
            arrays = {n: np.load(io.BytesIO(zf.read(n)), allow_pickle=False)
                      for n in zf.namelist() if n.endswith(".npy")}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError) as err:
        raise ModelFileError(f"{model_path}: corrupt or incomplete model file ({err})") from None
    if desc.get("format") != FORMAT:
        raise ModelFileError(f"{model_path}: not an epynn_jax.compat model file")
    if desc.get("version", 0) > VERSION:
        raise ModelFileError(f"{model_path}: written by a newer version (format "
                             f"{desc['version']}, this reads up to {VERSION})")
    erec = desc["embedding"]
    layers = []
    for i, rec in enumerate(desc["layers"]):
        if i == 0:
            layer = Embedding()
            layer.se_dataset = _from_json(erec["se_dataset"])
            if erec["vocabulary"] is not None:
                vocab = [_untagged(p) for p in erec["vocabulary"]]
                layer.e2i = {e: j for j, e in enumerate(vocab)}
                layer.i2e = dict(enumerate(vocab))
                layer.d["e"] = len(vocab)
        elif rec["builtin"]:
            layer = _restore_builtin(rec)
        else:
            layer = _restore_custom(rec)
        layer.se_hPars = _from_json(rec["se_hPars"]) or None
        layer.lrate = rec["lrate"]
        layer.trainable = rec["trainable"]
        layer.name = rec["class"]
        for k in rec["params"]:
            layer.p[k] = arrays[f"layers/{i}/{k}.npy"]
        if rec["builtin"] and rec.get("input_shape") is not None:
            layer._build(tuple(rec["input_shape"]))
            layer.d.update(layer._fl.d)
        layers.append(layer)
    name = desc["uname"].split("_", 1)[1] if "_" in desc["uname"] else desc["uname"]
    model = EpyNN(layers, name=name)
    model.uname = desc["uname"]
    model.loss, model.output, model.seed = desc["loss"], desc["output"], desc["seed"]
    if model.loss is not None:
        from epynn_jax.compat.commons.loss import loss_functions
        model.training_loss = loss_functions(model.loss, model.output)
    model.se_hPars = _from_json(desc["se_hPars"])
    model.epochs, model.e = desc["epochs"], desc["e"]
    model._done_epochs = desc["done_epochs"]
    model.metrics = _from_json(desc["metrics"])
    model._n_label_columns = desc["label_columns"]
    model.initialized = True
    return model
