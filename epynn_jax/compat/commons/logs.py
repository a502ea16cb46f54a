"""Logging helpers kept from EpyNN's ``commons.logs`` (plain text, silenceable).

``process_logs(msg, level)`` prints one message; ``pretty_json`` formats a
dict; ``set_highlighted_excepthook`` is accepted and does nothing (the facade
never replaces ``sys.excepthook``); ``start_counter`` does not sleep.
"""

from __future__ import annotations

import json

from epynn_jax.compat._report import say, set_quiet, text_table

__all__ = ["process_logs", "pretty_json", "set_highlighted_excepthook", "start_counter",
           "set_quiet", "text_table"]


def process_logs(msg: str, level: int = 0) -> None:
    """Print ``msg`` (``level`` picked a colour in EpyNN; ignored here)."""
    say(str(msg))


def pretty_json(network) -> str:
    """Indented JSON text of ``network`` (non-JSON values shown with ``str``)."""
    return json.dumps(network, indent=4, default=str)


def set_highlighted_excepthook() -> None:
    """No-op: the facade leaves ``sys.excepthook`` alone."""


def start_counter(timeout: int = 3) -> None:
    """No-op: the facade does not sleep before training."""
