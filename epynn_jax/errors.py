"""The library's own exception types for files and training failures.

- :class:`ModelFileError` (a ``ValueError``): a model or checkpoint file is
  truncated, corrupted, foreign, or does not match its architecture.
- :class:`NonFiniteError` (a ``FloatingPointError``): training produced a NaN
  or inf loss, gradient or parameter; carries the last good state.
- :class:`TrainingInterrupted` (a ``KeyboardInterrupt``): Ctrl-C during
  ``fit``; carries the state at the end of the last completed epoch and the
  path of the checkpoint written for it (if checkpointing was on).

Any other error that stops ``network.fit`` once training has begun (a callback's, a
checkpoint save's, a loader's) is raised as it is, with ``fit_result``: the epochs done.
:func:`add_note` adds a line to someone else's error where Python can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ModelFileError", "NonFiniteError", "TrainingInterrupted", "add_note"]


def add_note(err: BaseException, note: str) -> None:
    """``err.add_note(note)`` (shown under the error's message) on Python >= 3.11; nothing
    on 3.10, or for an error that takes no note."""
    if hasattr(err, "add_note"):
        try:
            err.add_note(note)
        except Exception:  # noqa: BLE001 (a __setattr__ that refuses: err goes on as it is)
            pass


class ModelFileError(ValueError):
    """A model/checkpoint file cannot be loaded: the message says what is wrong."""


class NonFiniteError(FloatingPointError):
    """A loss, gradient or updated parameter became NaN or inf during ``fit``.

    Attributes:
        epoch: 0-based epoch in which it happened.
        step: 0-based batch within that epoch (``None`` when unknown).
        layer_index, layer_name: the layer where it started (the first one, in
            backward order, whose gradient or update was non-finite), or
            ``None`` when only the loss was non-finite.
        bad_layers: indices of every layer whose gradient/update was non-finite.
        params, opt_state, key: the last good training state (before the bad step).
        history: the metrics of the completed epochs.
    """

    def __init__(self, message: str, *, epoch: int, step: int | None = None,
                 layer_index: int | None = None, layer_name: str | None = None,
                 bad_layers: tuple[int, ...] = (), params: Any = None, opt_state: Any = None,
                 key: Any = None, history: dict | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.layer_index = layer_index
        self.layer_name = layer_name
        self.bad_layers = tuple(bad_layers)
        self.params = params
        self.opt_state = opt_state
        self.key = key
        self.history = history if history is not None else {}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``, re-raised once the state is consistent.

    Attributes:
        result: a ``FitResult`` for the last completed epoch.
        checkpoint: path of the checkpoint saved for it, or ``None``.
    """

    def __init__(self, message: str, *, result: Any = None,
                 checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.checkpoint = checkpoint
