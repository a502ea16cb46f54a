"""Benchmark: the latency of one ``predict`` call, against a hand-written ``jax.jit`` forward.

A network already trained is asked for the outputs of a few samples, again and again
(a model behind a service, an interactive loop, EpyNN's ``model.predict`` on new
data). What a call costs beyond the forward itself is the library's: the checks of
the input and parameters, the conversion and placement of the input, the lookup of
the compiled program. Timed round-robin in one process, the order reversed every
round:

- ``hand-written jit``: ``jax.jit`` of the same forward written with ``jax.nn``, on the
  same NumPy input (no check at all: the floor);
- ``predict (NumPy X)``: ``network.predict(net, params, X)``;
- ``predict (device X)``: the same, ``X`` already a JAX array on the device;
- ``facade predict``: ``model.predict(X).A`` of the same layers trained by the facade
  (``epynn_jax.compat``), which returns NumPy arrays as EpyNN does.

Each timing is the mean of ``--calls`` calls, each waited for (its output read back
to the host); the ratios are the medians of the round-by-round ratios to the
hand-written jit (1.0: as fast; 2.0: twice its time). Usage::

    python -m benchmarks.bench_latency [--quick] [--rows 1 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

VARIANTS = ("hand-written jit", "predict (NumPy X)", "predict (device X)", "facade predict")
FEATURES, HIDDEN, CLASSES = 32, 64, 10


def paired_ratio(base: list[float], other: list[float]) -> float:
    """Time of ``other`` relative to ``base``: the median of the round-by-round ratios of
    two equally long lists of timings."""
    if not base or len(base) != len(other):
        raise ValueError("paired_ratio: two equally long, non-empty lists of timings")
    return statistics.median(o / b for b, o in zip(base, other))


def _calls(rows: int) -> dict:
    """``{variant: call}``: each returns the outputs of ``rows`` samples as NumPy."""
    import jax
    import numpy as np

    from epynn_jax import layers, network
    from epynn_jax.compat import set_quiet
    from epynn_jax.compat.commons.maths import relu, softmax
    from epynn_jax.compat.dense.models import Dense
    from epynn_jax.compat.embedding.models import Embedding
    from epynn_jax.compat.network.models import EpyNN

    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(64, FEATURES))
    Y_train = rng.integers(0, CLASSES, 64)
    set_quiet(True)
    model = EpyNN([Embedding(X_data=X_train, Y_data=Y_train, Y_encode=True, batch_size=16),
                   Dense(HIDDEN, relu), Dense(CLASSES, softmax)], name="latency")
    with contextlib.redirect_stdout(io.StringIO()):
        model.initialize(loss="MSE", seed=1)
        model.train(1, init_logs=False)
    net = network.build([layers.Dense(HIDDEN, "relu"), layers.Dense(CLASSES, "softmax")],
                        (FEATURES,))
    params = network.init(net, 0)

    @jax.jit
    def hand(p, X):
        h = jax.nn.relu(X @ p[0]["W"] + p[0]["b"])
        return jax.nn.softmax(h @ p[1]["W"] + p[1]["b"])

    X = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    X_device = jax.device_put(X)
    return {
        "hand-written jit": lambda: np.asarray(hand(params, X)),
        "predict (NumPy X)": lambda: np.asarray(network.predict(net, params, X)),
        "predict (device X)": lambda: np.asarray(network.predict(net, params, X_device)),
        "facade predict": lambda: model.predict(X).A,
    }


def measure(rows: int, calls: int, rounds: int) -> dict:
    """Every variant's timings (seconds per call, one per round)."""
    fns = _calls(rows)
    for fn in fns.values():  # compiled, and the caches warm
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
            fn = fns[name]
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls)
    base = times["hand-written jit"]
    return {"timings_s": times, "ratio": {v: paired_ratio(base, times[v]) for v in VARIANTS}}


def render(results: dict) -> list[str]:
    lines = ["| rows | " + " | ".join(f"{v} us" for v in VARIANTS) + " | "
             + " | ".join(f"{v} / jit" for v in VARIANTS[1:]) + " |",
             "|---:|" + "---:|" * (2 * len(VARIANTS) - 1)]
    for rows, r in results.items():
        us = [statistics.median(r["timings_s"][v]) * 1e6 for v in VARIANTS]
        ratios = [r["ratio"][v] for v in VARIANTS[1:]]
        lines.append(f"| {rows} | " + " | ".join(f"{u:.0f}" for u in us) + " | "
                     + " | ".join(f"{x:.2f}" for x in ratios) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_latency",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few calls and rounds: a smoke run")
    ap.add_argument("--rows", nargs="+", type=int, default=[1, 256],
                    help="samples per predict call")
    ap.add_argument("--calls", type=int, default=None, help="calls per timing")
    ap.add_argument("--rounds", type=int, default=None, help="timings per variant")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    calls = args.calls or (5 if args.quick else 100)
    rounds = args.rounds or (2 if args.quick else 21)
    results = {}
    for rows in args.rows:
        results[rows] = measure(rows, calls, rounds)
        print(f"{rows} rows: " + ", ".join(f"{v} {results[rows]['ratio'][v]:.2f}"
                                           for v in VARIANTS[1:]), file=sys.stderr)
    print("\n".join(render(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
