"""Input/output: safe, atomic model and checkpoint files."""

from epynn_jax.errors import ModelFileError
from epynn_jax.io import checkpoint
from epynn_jax.io.checkpoint import (
    Model,
    load_checkpoint,
    load_model,
    restore_opt_state,
    save_checkpoint,
    save_model,
)

__all__ = ["checkpoint", "Model", "ModelFileError", "load_checkpoint", "load_model",
           "restore_opt_state", "save_checkpoint", "save_model"]
