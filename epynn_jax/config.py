"""Runtime configuration: JAX's persistent compilation cache, opt-in for libraries.

A compiled epoch (one XLA program per network, batch size, optimizer and
data shape) takes from a fraction of a second to several seconds to compile.
JAX can keep compiled programs on disk and reuse them in the next process.

Importing ``epynn_jax`` changes no JAX setting: a library must not switch
process-wide options for the program that imports it. Programs that want the
cache call :func:`enable_compilation_cache` once::

    import epynn_jax
    epynn_jax.config.enable_compilation_cache()      # ~/.cache/epynn_jax/jax

The command line (``epynn-jax``) and the EpyNN script runner
(``python -m epynn_jax.compat``) are programs, not libraries: they call
:func:`setup`, which switches the cache on unless ``EPYNN_JAX_NO_CACHE=1`` and
freezes the objects the imports made for the garbage collector (``gc.freeze``).

- the cache lives in ``$XDG_CACHE_HOME/epynn_jax/jax`` (``~/.cache/epynn_jax/jax``
  when ``XDG_CACHE_HOME`` is unset);
- programs that took at least :data:`MIN_COMPILE_TIME_SECS` (0.03 s) to
  compile are written (JAX's own default, 1 s, would skip most of our epochs;
  at 0.03 s ``predict``'s program is kept too, while eager code's
  one-operation programs, a few milliseconds each, are not written);
- a cache directory the user already chose (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update('jax_compilation_cache_dir', ...)``) is kept;
- :func:`enable_compilation_cache` ``(False)`` switches it off at any time;
- while it is on, ``fit``'s, ``predict``'s and ``evaluate``'s programs are also kept in its
  ``epynn_jax-programs`` subdirectory, keyed on what determines them, and read
  back in a later process without being traced (``epynn_jax.network.programs``;
  ``EPYNN_JAX_NO_PROGRAM_STORE=1`` leaves that part out).

The cache is trusted code: do not point it at a directory others can write.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import jax

__all__ = [
    "ENV_NO_CACHE",
    "MIN_COMPILE_TIME_SECS",
    "default_cache_dir",
    "enable_compilation_cache",
    "compilation_cache_dir",
    "setup",
]

ENV_NO_CACHE = "EPYNN_JAX_NO_CACHE"
MIN_COMPILE_TIME_SECS = 0.03
_JAX_DEFAULT_MIN_COMPILE_TIME = 1.0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/epynn_jax/jax``, or ``~/.cache/epynn_jax/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "epynn_jax" / "jax"


def compilation_cache_dir() -> str | None:
    """The persistent cache directory in use (``None`` when the cache is off)."""
    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir


def _reset_jax_cache() -> None:
    # JAX decides once per process whether the cache is used (at the first
    # compile); resetting makes a later change of directory or switch apply.
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()


def enable_compilation_cache(enabled: bool = True, path: str | os.PathLike | None = None,
                             min_compile_time_secs: float = MIN_COMPILE_TIME_SECS) -> str | None:
    """Switch JAX's persistent compilation cache on (in ``path``) or off.

    ``path`` defaults to the directory already configured, else
    :func:`default_cache_dir`. Returns the directory in use (``None`` when off).
    Takes effect for the next compilation, also after earlier ones. This
    changes JAX's process-wide settings; ``epynn_jax`` never calls it on import.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enable_compilation_cache: enabled must be a bool, got {enabled!r}")
    if min_compile_time_secs < 0:
        raise ValueError("enable_compilation_cache: min_compile_time_secs must be >= 0, "
                         f"got {min_compile_time_secs!r}")
    if not enabled:
        jax.config.update("jax_enable_compilation_cache", False)
        _reset_jax_cache()
        return None
    if path is None:
        path = jax.config.jax_compilation_cache_dir or default_cache_dir()
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        # An unwritable home must not stop a run: it only runs uncached.
        jax.config.update("jax_enable_compilation_cache", False)
        _reset_jax_cache()
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    _reset_jax_cache()
    return str(path)


def setup(freeze_gc: bool = True) -> str | None:
    """The programs' default: the cache on unless ``EPYNN_JAX_NO_CACHE`` is set, and
    the objects alive now frozen for the garbage collector.

    Called by ``epynn-jax`` and ``python -m epynn_jax.compat`` (never on
    import), after their imports. Respects a directory and threshold the user
    configured in JAX before. Returns the directory in use (``None`` when off).

    ``freeze_gc``: ``gc.freeze()``, which moves every object alive now (mostly
    the functions, classes and constants of the imported modules, JAX's
    included) to the collector's permanent generation. The collector's full
    passes then skip them: one such pass fell in the first ``fit`` of a
    process and took 30-35 ms of it over the imports' objects (5 ms after the
    freeze). Cyclic garbage among the frozen objects is never collected, so
    programs call this after their imports, before their data.
    """
    where = _cache_setup()
    if freeze_gc:
        gc.freeze()
    return where


def _cache_setup() -> str | None:
    """:func:`setup`'s cache part."""
    if _truthy(os.environ.get(ENV_NO_CACHE)):
        return enable_compilation_cache(False)
    if not jax.config.jax_enable_compilation_cache:
        return None  # switched off in JAX itself (JAX_ENABLE_COMPILATION_CACHE=0)
    threshold = jax.config.jax_persistent_cache_min_compile_time_secs
    if threshold == _JAX_DEFAULT_MIN_COMPILE_TIME:
        threshold = MIN_COMPILE_TIME_SECS
    return enable_compilation_cache(True, jax.config.jax_compilation_cache_dir, threshold)
