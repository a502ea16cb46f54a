"""epynn_jax: EpyNN's hand-written neural networks, compiled with JAX."""

__version__ = "0.1.0"
