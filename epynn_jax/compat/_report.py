"""Printing for the facade: plain-text tables, the epoch table, a progress line, quiet mode.

Nothing here sleeps. Output is silenced by ``set_quiet(True)``, the
environment variable ``EPYNN_JAX_QUIET=1`` or ``EpyNN(..., verbose=False)``.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["set_quiet", "is_quiet", "say", "text_table", "progress_line"]

_QUIET: bool | None = None


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every facade print, process-wide."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet(model=None) -> bool:
    """Whether printing is off for ``model`` (its ``verbose`` setting wins when given)."""
    flag = getattr(model, "_print", None)
    if flag is not None:
        return not flag
    if _QUIET is not None:
        return _QUIET
    return os.environ.get("EPYNN_JAX_QUIET", "").strip().lower() in ("1", "true", "yes", "on")


def say(msg: str = "", model=None, end: str = "\n") -> None:
    """Print unless quiet."""
    if not is_quiet(model):
        sys.stdout.write(msg + end)
        sys.stdout.flush()


def interactive() -> bool:
    """Whether stdout is a terminal (the progress line is only drawn there)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _cells(row) -> list[list[str]]:
    return [str(c).split("\n") for c in row]


def text_table(rows: list, header_rows: int = 1, align: str = "center") -> str:
    """A boxed plain-text table; cells may span several lines (``'\\n'``)."""
    if not rows:
        return ""
    n = max(len(r) for r in rows)
    rows = [list(r) + [""] * (n - len(r)) for r in rows]
    split = [_cells(r) for r in rows]
    widths = [max(len(line) for r in split for line in r[i]) for i in range(n)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(cell_lines, height):
        lines = cell_lines + [""] * (height - len(cell_lines))
        return lines

    out = [rule]
    for k, cells in enumerate(split):
        height = max(len(c) for c in cells)
        cols = [fmt(c, height) for c in cells]
        for j in range(height):
            parts = []
            for i, w in enumerate(widths):
                s = cols[i][j]
                parts.append(s.center(w) if align == "center" else s.ljust(w))
            out.append("| " + " | ".join(parts) + " |")
        if k == header_rows - 1 or k == len(split) - 1:
            out.append(rule)
    return "\n".join(out)


def progress_line(e: int, epochs: int, start_epoch: int, t0: float, acc, cost) -> str:
    """One overwritable line: bar over the epochs of this ``train`` call, metrics, timing."""
    done = e - start_epoch + 1
    total = max(epochs - start_epoch, 1)
    width = 30
    fill = int(width * done / total)
    elapsed = time.time() - t0
    rate = done / (elapsed + 1e-16)
    ttc = (total - done) / (rate + 1e-16)
    acc_s = "n/a" if acc is None else f"{acc:.3f}"
    cost_s = "n/a" if cost is None else f"{cost:.5f}"
    return (f"Epoch {e} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} - "
            f"Accuracy: {acc_s} Cost: {cost_s} - TIME: {elapsed:.2f}s "
            f"RATE: {rate:.2e}e/s TTC: {ttc:.0f}s")
