"""``python -m epynn_jax.compat SCRIPT.py [ARGS...]``: run an EpyNN script on the facade.

The runner switches JAX's persistent compilation cache on before the script
runs (:func:`epynn_jax.config.setup`; importing the facade changes no JAX
setting), so running a script again skips most compilation;
``EPYNN_JAX_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import os
import sys

from epynn_jax import config
from epynn_jax.compat import run_script


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
    config.setup()
    run_script(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
