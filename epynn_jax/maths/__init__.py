"""Pure math used by layers and networks: activations, losses, metrics, initializers,
schedules, and the random keys and shuffles (``prng``)."""

from epynn_jax.maths import activations, initializers, losses, metrics, prng, schedules
from epynn_jax.maths.activations import ActivationHPars

__all__ = ["activations", "initializers", "losses", "metrics", "prng", "schedules",
           "ActivationHPars"]
