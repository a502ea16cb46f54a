"""When ``fit`` saves: the checkpoint policy it is given.

``fit(..., checkpoints=Checkpoints("runs/a", every=5, best=("accuracy", "dval", "max")))``
writes, in that directory, ``last.epynn`` every ``every`` epochs (and, with
``every_batches=N``, every ``N`` batches within an epoch: ``fit`` then streams its
epochs, see :mod:`~epynn_jax.network.streaming`), at the end and on
Ctrl-C, and ``best.epynn`` whenever the ``best`` value improves (files written
atomically by :func:`~epynn_jax.io.checkpoint.save_checkpoint`). Resume with
``fit(..., resume=load_checkpoint("runs/a"))``.

``fit`` calls the four methods of :class:`~epynn_jax.network.fitting.Checkpointer`
(and ``after_batches`` after each chunk of a streamed epoch);
it never imports this module, so ``network`` stays below ``io``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from epynn_jax.io.checkpoint import path_arg, save_checkpoint
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.network.checks import positive_int
from epynn_jax.network.fitting import Progress
from epynn_jax.network.model import Network

__all__ = ["Checkpoints", "CHECKPOINT_SUFFIX"]

CHECKPOINT_SUFFIX = ".epynn"


def _best_value(values: Sequence[float], mode: str) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


class Checkpoints:
    """Save ``last`` every ``every`` epochs (and at the end, and on Ctrl-C or an error
    that stops ``fit``) and ``best`` when ``best = (metric, split, 'max' | 'min')``
    improves, in ``directory``.

    ``every_batches=N`` also saves ``last`` after every ``N`` batches of an epoch
    (``fit`` then streams the epoch in chunks of ``N`` batches); a resume
    continues at the batch it records.

    ``directory`` is a str, bytes or ``os.PathLike`` (as every path of
    :mod:`~epynn_jax.io.checkpoint`); ``every`` and ``every_batches`` take any
    ``numbers.Integral`` >= 1 but a bool (a NumPy int too, as ``fit``'s ``epochs``),
    kept as Python ints. Arguments are checked here; ``fit`` checks ``best`` against its
    metrics and splits (:meth:`start`) before any tracing.
    """

    def __init__(self, directory: str | os.PathLike, every: int | None = None,
                 best: tuple[str, str, str] | None = None,
                 every_batches: int | None = None) -> None:
        self.directory = Path(path_arg(directory, "directory", "Checkpoints"))
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"Checkpoints: {str(self.directory)!r} is not a directory")
        if every is not None:
            every = positive_int(every, "every", "Checkpoints")
        if every_batches is not None:
            every_batches = positive_int(every_batches, "every_batches", "Checkpoints")
        if best is not None:
            if not (isinstance(best, (tuple, list)) and len(best) == 3):
                raise ValueError("Checkpoints: best must be a (metric, split, mode) triple, e.g. "
                                 f"('accuracy', 'dval', 'max'), got {best!r}")
            metric, split, mode = best
            if mode not in ("max", "min"):
                raise ValueError(f"Checkpoints: best mode must be 'max' or 'min', got {mode!r}")
            best = (metrics_lib.check_metric(metric), split, mode)
        self.every = every
        self.best = best
        self.every_batches = every_batches
        self._last: tuple[int, int] | None = None  # (epoch, batch) of the last 'last' saved

    def __repr__(self) -> str:
        return (f"Checkpoints({str(self.directory)!r}, every={self.every!r}, "
                f"best={self.best!r}, every_batches={self.every_batches!r})")

    def path(self, name: str) -> Path:
        """The file of checkpoint ``name`` (``'last'`` or ``'best'``)."""
        return self.directory / f"{name}{CHECKPOINT_SUFFIX}"

    # -- what fit calls ----------------------------------------------------------------

    def start(self, metric_names: tuple[str, ...], splits: Sequence[str]) -> None:
        """Check ``best`` against this fit's metrics and splits; create the directory."""
        if self.best is not None:
            metric, split, _ = self.best
            if metric not in metric_names:
                raise ValueError(f"fit: checkpoint best metric {metric!r} is not computed "
                                 f"(metrics: {', '.join(metric_names)})")
            if split not in splits:
                raise ValueError(f"fit: checkpoint best split {split!r} is not evaluated "
                                 f"(evaluated splits: {', '.join(splits)})")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._last = None

    def after_epoch(self, net: Network, progress: Progress, metadata: dict) -> dict[str, Path]:
        saved = {}
        if self.best is not None and self._improved(progress.history):
            saved["best"] = self._save("best", net, progress, metadata)
        if self.every is not None and progress.epoch % self.every == 0:
            saved["last"] = self._save("last", net, progress, metadata)
        return saved

    def after_batches(self, net: Network, progress: Progress, metadata: dict
                      ) -> dict[str, Path]:
        """After a chunk of a streamed epoch: ``last`` when ``every_batches`` batches were
        done since the last save of this epoch (or since it began)."""
        if self.every_batches is None or progress.batch == 0:
            return {}
        since = progress.batch
        if self._last is not None and self._last[0] == progress.epoch:
            since -= self._last[1]
        if since < self.every_batches:
            return {}
        return {"last": self._save("last", net, progress, metadata)}

    def finish(self, net: Network, progress: Progress, metadata: dict) -> dict[str, Path]:
        if self._last == (progress.epoch, progress.batch):
            return {}
        return {"last": self._save("last", net, progress, metadata)}

    def interrupted(self, net: Network, progress: Progress, metadata: dict) -> Path | None:
        """Ctrl-C or an error stopped ``fit``: ``last`` holds what was trained (the epochs
        and batches of ``progress``), unless it holds it already."""
        if self._last == (progress.epoch, progress.batch):
            return self.path("last")
        return self._save("last", net, progress, metadata)

    # -- helpers -------------------------------------------------------------------------

    def _improved(self, history: dict) -> bool:
        """Whether the last epoch is the best so far (strictly better than every earlier one)."""
        metric, split, mode = self.best
        values = history[metric][split]
        last, before = values[-1], _best_value(values[:-1], mode)
        if not math.isfinite(last):
            return False
        return before is None or (last > before if mode == "max" else last < before)

    def _save(self, name: str, net: Network, progress: Progress, metadata: dict) -> Path:
        state = progress.state
        path = save_checkpoint(self.path(name), net, state.params, opt_state=state.opt_state,
                               key=state.key, epoch=progress.epoch, history=progress.history,
                               metadata=metadata, batch=progress.batch)
        if name == "last":
            self._last = (progress.epoch, progress.batch)
        return path
