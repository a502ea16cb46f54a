"""Training reports: a progress bar, a per-epoch metrics table, and a plot.

Everything here reads the ``history`` that :func:`epynn_jax.network.fit`
builds, ``{metric: {split: [value per epoch]}}``, and prints to a stream; no
global state, nothing printed unless asked. :class:`Reporter` is a ``fit``
callback::

    from epynn_jax import network
    from epynn_jax.io.report import Reporter

    result = network.fit(net, params, data, epochs=20, callbacks=[Reporter(20)])

Matplotlib is optional: :func:`plot_history` returns ``None`` without it, and
otherwise the path it wrote (``.png`` appended to a path without a suffix; a
directory is refused).
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

__all__ = [
    "Reporter",
    "columns",
    "format_header",
    "format_row",
    "metrics_table",
    "progress_bar",
    "progress_line",
    "eta_seconds",
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


def _every(every: int, where: str) -> int:
    """``every``: an int >= 1 (``TypeError`` or ``ValueError`` naming ``where``)."""
    if isinstance(every, bool) or not isinstance(every, numbers.Integral):
        raise TypeError(f"{where}: every must be an int >= 1, got {every!r}")
    if every < 1:
        raise ValueError(f"{where}: every must be an int >= 1, got {every!r}")
    return int(every)


def metrics_table(history: History, every: int = 1) -> str:
    """The whole history as a table: every ``every``-th epoch (an int >= 1) plus the last one.

    >>> print(metrics_table({"accuracy": {"dtrain": [0.5, 1.0]}}))
    epoch  accuracy/dtrain
        1           0.5000
        2           1.0000
    """
    every = _every(every, "metrics_table")
    n = max((len(v) for per in history.values() for v in per.values()), default=0)
    rows = [format_row(history, e) for e in range(n) if (e + 1) % every == 0 or e == n - 1]
    return "\n".join([format_header(history), *rows])


def eta_seconds(done: int, total: int, elapsed: float,
                since: tuple[int, float] = (0, 0.0)) -> float:
    """Seconds left, at the rate measured since ``since = (epochs done, elapsed s)``.

    The rate is ``(elapsed - since[1]) / (done - since[0])`` seconds per epoch;
    NaN while no epoch has finished after ``since``. :class:`Reporter` measures
    from the end of the first epoch it sees, whose time includes compilation.

    >>> eta_seconds(5, 10, 1.0)
    1.0
    >>> eta_seconds(3, 10, 4.2, since=(1, 4.0))  # 4 s to compile epoch 1, then 0.1 s each
    0.7
    """
    d0, t0 = since
    if done <= d0:
        return float("nan")
    return round((elapsed - t0) / (done - d0) * max(total - done, 0), 6)


def _eta_text(eta: float) -> str:
    return f"ETA {eta:.1f} s" if math.isfinite(eta) else "ETA ?"


def progress_bar(done: int, total: int, elapsed: float, width: int = 24,
                 eta: float | None = None) -> str:
    """``[#####-----]  5/10 epochs  1.2 s  ETA 1.2 s``.

    ``eta`` in seconds (default: :func:`eta_seconds` from the start; NaN shows ``ETA ?``).

    >>> progress_bar(5, 10, 1.0, width=10)
    '[#####-----]  5/10 epochs  1.0 s  ETA 1.0 s'
    """
    total = max(total, 1)
    filled = min(width, round(width * done / total))
    eta = eta_seconds(done, total, elapsed) if eta is None else eta
    return (f"[{'#' * filled}{'-' * (width - filled)}] {str(done).rjust(len(str(total)))}/{total}"
            f" epochs  {elapsed:.1f} s  {_eta_text(eta)}")


def progress_line(done: int, total: int, elapsed: float, eta: float | None = None) -> str:
    """The plain progress line written to logs and pipes (no bar, no carriage return).

    >>> progress_line(500, 3000, 2.5, eta=10.0)
    'progress:  500/3000 epochs  2.5 s  ETA 10.0 s'
    """
    eta = eta_seconds(done, total, elapsed) if eta is None else eta
    return (f"progress: {str(done).rjust(len(str(total)))}/{total} epochs  {elapsed:.1f} s  "
            f"{_eta_text(eta)}")


def final_metrics(history: History) -> dict[str, dict[str, float]]:
    """The last value of every (metric, split)."""
    return {m: {s: float(v[-1]) for s, v in per.items() if v} for m, per in history.items()}


class Reporter:
    """A ``fit`` callback: a table row every ``every`` epochs (int >= 1), progress in between.

    Progress (``progress=None``, the default): on a terminal
    (``stream.isatty()``) a bar redrawn in place, at most every ``redraw``
    seconds; elsewhere (a log file, a pipe, CI) a plain ``progress:`` line
    whenever ``interval`` seconds have passed since the last line written, so
    a long run never goes silent for long. ``progress=True`` forces the bar,
    ``False`` prints rows only. The ETA is measured from the end of the first
    epoch the reporter sees: that epoch includes the compilation, seconds that
    the other epochs do not spend. The title is written by :meth:`begin` (call
    it just before ``fit`` so it shows while the first epoch compiles) or else
    with the header. Never stops training (returns None).

    Hand-written rather than tqdm or rich, which are not dependencies and do
    not do the hard part: tried with tqdm 4.70 and rich 15 on a pipe, tqdm
    writes its carriage-return redraws into the log as one ever-growing line
    (and bases its first ETA on the compiled epoch), rich draws nothing until
    the end. Either would still need this class around it.
    """

    def __init__(self, epochs: int, stream: IO[str] | None = None, every: int = 1,
                 progress: bool | None = None, title: str | None = None,
                 interval: float = 5.0, redraw: float = 0.1,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.epochs = epochs
        self.stream = sys.stdout if stream is None else stream
        self.every = _every(every, "Reporter")
        isatty = getattr(self.stream, "isatty", lambda: False)
        tty = bool(isatty())
        if progress is None:
            self.mode = "bar" if tty else "lines"
        else:
            self.mode = "bar" if progress else None
        self.title = title
        self.interval = interval
        self.redraw = redraw
        self.clock = clock
        self.start = clock()
        self._title_done = False
        self._header_done = False
        self._bar_len = 0
        self._since: tuple[int, float] | None = None  # (epochs done, elapsed) at the 1st call
        self._last_line = self.start
        self._drawn = -math.inf

    @property
    def progress(self) -> bool:
        """Whether a bar is drawn (on a terminal, or forced)."""
        return self.mode == "bar"

    def begin(self) -> None:
        """Write the title now and start the clock (call it right before ``fit``)."""
        self._write_title()
        self.start = self._last_line = self.clock()
        self.stream.flush()

    def _write_title(self) -> None:
        if not self._title_done:
            if self.title:
                self.stream.write(self.title + "\n")
            self._title_done = True

    def _clear_bar(self) -> None:
        if self._bar_len:
            self.stream.write("\r" + " " * self._bar_len + "\r")
            self._bar_len = 0

    def close(self) -> None:
        """Erase an unfinished bar (after an interruption), so the next line starts clean."""
        self._clear_bar()
        self.stream.flush()

    def __call__(self, epoch: int, history: History) -> None:
        now = self.clock()
        done, elapsed = epoch + 1, now - self.start
        if self._since is None:
            self._since = (done, elapsed)
        eta = eta_seconds(done, self.epochs, elapsed, self._since)
        last = done >= self.epochs
        wrote = False
        if not self._header_done:
            self._write_title()
            self.stream.write(format_header(history) + "\n")
            self._header_done, self._last_line, wrote = True, now, True
        row = done % self.every == 0 or last
        if row:
            self._clear_bar()
            self.stream.write(format_row(history, epoch) + "\n")
            self._last_line, wrote = now, True
        if self.mode == "bar" and (last or row or now - self._drawn >= self.redraw):
            bar = progress_bar(done, self.epochs, elapsed, eta=eta)
            self._clear_bar()
            self.stream.write(bar + ("\n" if last else ""))
            self._bar_len = 0 if last else len(bar)
            self._drawn, wrote = now, True
        elif self.mode == "lines" and not row and now - self._last_line >= self.interval:
            self.stream.write(progress_line(done, self.epochs, elapsed, eta=eta) + "\n")
            self._last_line, wrote = now, True
        if wrote:
            self.stream.flush()


def plot_history(history: History, path: str | Path, title: str = "") -> Path | None:
    """Save one line per (metric, split) against the epoch to ``path``; return the path written.

    The format is the suffix's (``.png``, ``.pdf``, ``.svg``, ... as matplotlib
    supports); a path without a suffix gets ``.png`` appended, and the returned
    path says so. A directory is refused (``ValueError``): name the file.
    Missing parent folders are created. Returns ``None`` when matplotlib is
    not installed. Uses the non-interactive Agg backend and never opens a window.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    text = os.fspath(path)
    path = Path(path)
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise ValueError(f"plot_history: {text} is a directory; give a file path such as "
                         f"{path / 'history.png'}")
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        fmt = path.suffix[1:].lower()
        if fmt not in fig.canvas.get_supported_filetypes():
            raise ValueError(f"plot_history: cannot write a {path.suffix!r} file ({path}); use "
                             f"one of {', '.join(sorted(fig.canvas.get_supported_filetypes()))}")
        for m, s in columns(history):
            values = history[m][s]
            ax.plot(range(1, len(values) + 1), values, label=f"{m} / {s}")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=fmt, dpi=100)
    finally:
        plt.close(fig)
    return path
