"""Pure math used by layers and networks: activations, losses, metrics, initializers, schedules."""

from epynn_jax.maths import activations, initializers, losses, metrics, schedules
from epynn_jax.maths.activations import ActivationHPars

__all__ = ["activations", "initializers", "losses", "metrics", "schedules", "ActivationHPars"]
