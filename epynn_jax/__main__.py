"""``python -m epynn_jax``: the ``epynn-jax`` command."""

import sys

from epynn_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
