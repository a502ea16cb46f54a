"""``python -m epynn_jax``: the ``epynn-jax`` command."""

from epynn_jax.cli import run

if __name__ == "__main__":
    run()
