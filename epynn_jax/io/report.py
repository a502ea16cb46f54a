"""Training reports: a progress bar, a per-epoch metrics table, and a plot.

Everything here reads the ``history`` that :func:`epynn_jax.network.fit`
builds, ``{metric: {split: [value per epoch]}}``, and prints to a stream; no
global state, nothing printed unless asked. :class:`Reporter` is a ``fit``
callback::

    from epynn_jax import network
    from epynn_jax.io.report import Reporter

    result = network.fit(net, params, data, epochs=20, callbacks=[Reporter(20)])

Matplotlib is optional: :func:`plot_history` returns ``None`` without it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

__all__ = [
    "Reporter",
    "columns",
    "format_header",
    "format_row",
    "metrics_table",
    "progress_bar",
    "final_metrics",
    "plot_history",
]

History = Mapping[str, Mapping[str, list]]


def columns(history: History) -> list[tuple[str, str]]:
    """The (metric, split) pairs of a history, metric-major, in insertion order."""
    return [(m, s) for m, per_split in history.items() for s in per_split]


def _width(metric: str, split: str) -> int:
    return max(len(f"{metric}/{split}"), 9)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else str(value)
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def format_header(history: History) -> str:
    """``epoch`` then one right-aligned ``metric/split`` column per pair."""
    cells = [f"{m}/{s}".rjust(_width(m, s)) for m, s in columns(history)]
    return "  ".join(["epoch".rjust(5), *cells])


def format_row(history: History, epoch: int) -> str:
    """The values of epoch ``epoch`` (0-based; printed 1-based) under :func:`format_header`."""
    cells = [_fmt(history[m][s][epoch]).rjust(_width(m, s)) for m, s in columns(history)]
    return "  ".join([str(epoch + 1).rjust(5), *cells])


def metrics_table(history: History, every: int = 1) -> str:
    """The whole history as a table: every ``every``-th epoch plus the last one.

    >>> print(metrics_table({"accuracy": {"dtrain": [0.5, 1.0]}}))
    epoch  accuracy/dtrain
        1           0.5000
        2           1.0000
    """
    n = max((len(v) for per in history.values() for v in per.values()), default=0)
    rows = [format_row(history, e) for e in range(n) if (e + 1) % every == 0 or e == n - 1]
    return "\n".join([format_header(history), *rows])


def progress_bar(done: int, total: int, elapsed: float, width: int = 24) -> str:
    """``[#####-----]  5/10 epochs  1.2 s  ETA 1.2 s``.

    >>> progress_bar(5, 10, 1.0, width=10)
    '[#####-----]  5/10 epochs  1.0 s  ETA 1.0 s'
    """
    total = max(total, 1)
    filled = min(width, round(width * done / total))
    eta = elapsed / done * (total - done) if done else float("nan")
    eta_text = f"ETA {eta:.1f} s" if math.isfinite(eta) else "ETA ?"
    return (f"[{'#' * filled}{'-' * (width - filled)}] {str(done).rjust(len(str(total)))}/{total}"
            f" epochs  {elapsed:.1f} s  {eta_text}")


def final_metrics(history: History) -> dict[str, dict[str, float]]:
    """The last value of every (metric, split)."""
    return {m: {s: float(v[-1]) for s, v in per.items() if v} for m, per in history.items()}


class Reporter:
    """A ``fit`` callback printing a table row per epoch and a progress bar.

    ``every``: print a row every ``every`` epochs (and at the last one);
    ``progress``: draw the bar (default: only when ``stream`` is a terminal,
    so logs and pipes get clean rows). Never stops training (returns None).
    """

    def __init__(self, epochs: int, stream: IO[str] | None = None, every: int = 1,
                 progress: bool | None = None, title: str | None = None) -> None:
        self.epochs = epochs
        self.stream = sys.stdout if stream is None else stream
        self.every = max(int(every), 1)
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.progress = isatty() if progress is None else progress
        self.title = title
        self.start = time.perf_counter()
        self._header_done = False
        self._bar_len = 0

    def _clear_bar(self) -> None:
        if self._bar_len:
            self.stream.write("\r" + " " * self._bar_len + "\r")
            self._bar_len = 0

    def __call__(self, epoch: int, history: History) -> None:
        last = epoch + 1 >= self.epochs
        if not self._header_done:
            if self.title:
                self.stream.write(self.title + "\n")
            self.stream.write(format_header(history) + "\n")
            self._header_done = True
        if (epoch + 1) % self.every == 0 or last:
            self._clear_bar()
            self.stream.write(format_row(history, epoch) + "\n")
        if self.progress:
            bar = progress_bar(epoch + 1, self.epochs, time.perf_counter() - self.start)
            self._clear_bar()
            self.stream.write(bar + ("\n" if last else ""))
            self._bar_len = 0 if last else len(bar)
        self.stream.flush()


def plot_history(history: History, path: str | Path, title: str = "") -> Path | None:
    """Save one line per (metric, split) against the epoch to ``path`` (PNG).

    Returns the path, or ``None`` when matplotlib is not installed. Uses the
    non-interactive Agg backend and never opens a window.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        for m, s in columns(history):
            values = history[m][s]
            ax.plot(range(1, len(values) + 1), values, label=f"{m} / {s}")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
