"""EpyNN 1.2.13's API as a stateful facade over epynn_jax's functional core.

Scripts written for EpyNN keep working::

    python -m epynn_jax.compat train.py [ARGS...]

runs ``train.py`` with ``epynn`` and every ``epynn.*`` module resolving to
this package (``epynn.dense.models.Dense`` is :class:`epynn_jax.compat.dense.models.Dense`).
In-process, :func:`install` does the same and :func:`uninstall` undoes it.
Or import from here directly: ``from epynn_jax.compat.network.models import EpyNN``.

``set_quiet(True)`` (or ``EPYNN_JAX_QUIET=1``) silences every print.
See ``docs/compat.md`` for what is kept, what was fixed and what differs.
"""

from __future__ import annotations

import os
import runpy
import sys

from epynn_jax.compat._importer import install, installed, uninstall
from epynn_jax.compat._report import set_quiet

__all__ = ["install", "uninstall", "installed", "set_quiet", "run_script"]


def run_script(path: str, argv: list[str] | None = None) -> dict:
    """Run an EpyNN script as ``__main__`` with ``epynn`` resolving to the facade.

    Like ``python SCRIPT ARGS``: ``sys.argv = [path, *argv]`` and the script's
    directory first on ``sys.path``. Returns the script's globals.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such script: {path}")
    old_argv, old_path = sys.argv[:], sys.path[:]
    sys.argv = [path, *(argv or [])]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    install()
    try:
        return runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv[:] = old_argv
        sys.path[:] = old_path
