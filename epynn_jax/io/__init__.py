"""Input/output: safe, atomic model and checkpoint files, and when ``fit`` saves them."""

from epynn_jax.errors import ModelFileError
from epynn_jax.io import checkpoint, checkpointing
from epynn_jax.io.checkpoint import (
    Model,
    load_checkpoint,
    load_model,
    restore_opt_state,
    save_checkpoint,
    save_model,
)
from epynn_jax.io.checkpointing import Checkpoints

__all__ = ["checkpoint", "checkpointing", "Checkpoints", "Model", "ModelFileError",
           "load_checkpoint", "load_model", "restore_opt_state", "save_checkpoint", "save_model"]
