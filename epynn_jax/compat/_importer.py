"""Make ``import epynn`` and ``import epynn.<sub>`` resolve to ``epynn_jax.compat``.

A ``sys.meta_path`` finder maps the name ``epynn`` (and every ``epynn.*``) to
the module of the same path under ``epynn_jax.compat``; both names then refer
to the *same* module object, so classes compare equal whichever name a script
imports them by.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

__all__ = ["install", "uninstall", "installed", "ALIAS", "TARGET"]

ALIAS = "epynn"
TARGET = "epynn_jax.compat"


def _target(fullname: str) -> str:
    return TARGET + fullname[len(ALIAS):]


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return types.ModuleType(spec.name)

    def exec_module(self, module) -> None:
        real = importlib.import_module(self.target)
        # The import system returns whatever sys.modules holds after exec_module.
        sys.modules[module.__name__] = real


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        real_name = _target(fullname)
        if importlib.util.find_spec(real_name) is None:
            return None
        real_spec = importlib.util.find_spec(real_name)
        is_pkg = real_spec.submodule_search_locations is not None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real_name), is_package=is_pkg)


_FINDER = _AliasFinder()
_saved: dict[str, types.ModuleType] = {}


def installed() -> bool:
    """Whether ``epynn`` currently resolves to the facade."""
    return _FINDER in sys.meta_path


def install() -> None:
    """Route ``epynn`` and ``epynn.*`` imports to ``epynn_jax.compat`` (idempotent)."""
    if installed():
        return
    for name in list(sys.modules):
        if name == ALIAS or name.startswith(ALIAS + "."):
            _saved[name] = sys.modules.pop(name)
    sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Undo :func:`install`: forget the aliases and restore any real ``epynn`` modules."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in list(sys.modules):
        if name == ALIAS or name.startswith(ALIAS + "."):
            del sys.modules[name]
    sys.modules.update(_saved)
    _saved.clear()
