"""``pyplot_metrics(model, path)``: one figure of every metric per data set.

matplotlib is optional (a clear ``ImportError`` says so). Without a display
the Agg backend is used, so it works headless; the figure is saved before any
``show`` and only shown on interactive backends.
"""

from __future__ import annotations

import os

from epynn_jax.compat._report import say

__all__ = ["pyplot_metrics"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("EpyNN.plot needs matplotlib (pip install matplotlib)") from err
    if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND") and os.name != "nt":
        matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    return matplotlib, plt


def pyplot_metrics(model, path=None) -> str | None:
    """Plot ``model.metrics``; save to ``path`` (None: ./plots/<uname>.png; False: no file)."""
    matplotlib, plt = _pyplot()
    fig = plt.figure()
    for s, values in model.metrics.items():
        for k, dset in enumerate(model.embedding.dsets):
            plt.plot(range(len(values[k])), values[k], label=f"{dset.name} {s}")
    plt.legend()
    plt.xlabel("Epoch")
    plt.ylabel("Value")
    plt.title(model.uname)
    out = None
    if path is None:
        os.makedirs(os.path.join(os.getcwd(), "plots"), exist_ok=True)
        out = os.path.join(os.getcwd(), "plots", model.uname + ".png")
    elif path:
        out = os.fspath(path)
        parent = os.path.dirname(out)
        if parent:
            os.makedirs(parent, exist_ok=True)
    if out:
        fig.savefig(out)
        say(f"Make: {out}", model)
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo", "template"):
        plt.show()
    plt.close(fig)
    return out
