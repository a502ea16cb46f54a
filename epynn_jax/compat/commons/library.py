"""Directories and model files: ``configure_directory``, ``write_model``, ``read_model``.

Model files are the core's model files (:mod:`epynn_jax.io.checkpoint`, no
pickle), with the facade's own attributes in a validated section of the
same document: see :mod:`epynn_jax.compat._modelfile` (writing),
:mod:`epynn_jax.compat._modelread` (reading) and ``docs/compat.md``.
Every problem with a file raises :class:`epynn_jax.errors.ModelFileError`
(also importable from here, its former home). A pickle written by EpyNN
itself, or a file of the facade's first format, is refused with a one-line
explanation.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Mapping

from epynn_jax.compat._modelfile import write_model
from epynn_jax.compat._modelread import read_parts
from epynn_jax.compat._report import say
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.errors import ModelFileError
from epynn_jax.io.checkpoint import FORMAT, VERSION

__all__ = ["configure_directory", "write_model", "read_model", "read_file", "FORMAT",
           "VERSION", "ModelFileError"]


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


def read_model(model_path: str | None = None,
               custom_layers: Mapping[str, type] | None = None) -> EpyNN:
    """Read a model file (default: the newest file in ``./models``); it predicts at once.

    ``custom_layers`` maps a custom layer's class name (or ``module:QualName``)
    to the class, for classes not defined at the top level of an imported
    module; nothing is ever imported because a file names it.
    """
    if model_path is None:
        files = glob.glob(os.path.join(os.getcwd(), "models", "*"))
        if not files:
            raise FileNotFoundError("read_model: no model file in ./models")
        model_path = max(files, key=os.path.getctime)
    layers, attrs = read_parts(model_path, custom_layers)
    uname = attrs["uname"]
    model = EpyNN(layers, name=uname.split("_", 1)[1] if "_" in uname else uname)
    for k, v in attrs.items():
        setattr(model, k, v)
    model.initialized = True
    return model
