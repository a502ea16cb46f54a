"""``python -m epynn_jax.compat SCRIPT.py [ARGS...]``: run an EpyNN script on the facade.

Compiled epochs are kept in JAX's persistent compilation cache
(``$XDG_CACHE_HOME/epynn_jax/jax`` or ``~/.cache/epynn_jax/jax``) so that running
a script again skips most compilation. An existing ``JAX_COMPILATION_CACHE_DIR``
is respected; ``EPYNN_JAX_NO_CACHE=1`` turns the cache off.
"""

from __future__ import annotations

import os
import sys

from epynn_jax.compat import run_script


def _enable_cache() -> None:
    if os.environ.get("EPYNN_JAX_NO_CACHE") or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "epynn_jax", "jax")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return
    if os.access(path, os.W_OK):
        import jax

        jax.config.update("jax_compilation_cache_dir", path)


def main(argv: list[str] | None = None) -> int:
    """Run the script named by the first argument; return an exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m epynn_jax.compat SCRIPT.py [ARGS...]\n\n"
              "Run a script written for EpyNN 1.2.13 with `epynn` resolving to epynn_jax.compat.")
        return 0 if argv else 2
    if not os.path.isfile(argv[0]):
        print(f"python -m epynn_jax.compat: no such script: {argv[0]}", file=sys.stderr)
        return 2
    _enable_cache()
    run_script(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
