"""Shared command-line handling and training loop of the example scripts.

Every example script is ``python examples/NAME.py [--quick] [--model M] [--epochs N]
[--seed S] [--out DIR]``; the download examples add ``--synthetic``,
``--cache-dir``, ``--url`` and ``--sha256``. ``main(argv)`` of each script
returns ``{model: {metric: {split: final value}}}``; run as a script, Ctrl-C
ends it with one line on stderr and status 130 (nothing is saved: the scripts
keep no checkpoints; ``epynn-jax train`` does, and resumes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import jax

from epynn_jax import network
from epynn_jax.data import examples
from epynn_jax.errors import TrainingInterrupted
from epynn_jax.io import report
from epynn_jax.maths.schedules import Schedule


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an int from 0 to {2**32 - 1}, got {text!r}")
    return value


def run(main: Callable[[Sequence[str]], object]) -> None:
    """Run an example script's ``main`` on ``sys.argv``: Ctrl-C prints one line, not a traceback."""
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt as stop:
        detail = f" {stop}" if str(stop) else ""
        print(f"{Path(sys.argv[0]).stem}: interrupted{detail}", file=sys.stderr)
        raise SystemExit(130) from None


def parse_args(doc: str, models: Sequence[str], argv: Sequence[str] | None,
               download: bool = False) -> argparse.Namespace:
    """Parse the common options of an example script."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small data and few epochs (what the tests run)")
    parser.add_argument("--model", choices=list(models), action="append",
                        help="train only this model (repeatable; default: all)")
    parser.add_argument("--epochs", type=_positive_int, help="override every model's epochs")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of data, init and shuffles")
    parser.add_argument("--out", help="folder for the metric plots (optional)")
    parser.add_argument("--quiet", action="store_true", help="print only the final metrics")
    if download:
        parser.add_argument("--synthetic", action="store_true",
                            help="train on a synthetic stand-in of the same shape")
        parser.add_argument("--cache-dir", help="download cache (default: $EPYNN_JAX_DATA "
                            "or ~/.cache/epynn_jax)")
        parser.add_argument("--url", help="download from this URL instead (file:// works)")
        parser.add_argument("--sha256", help="expected SHA-256 of the archive")
    args = parser.parse_args(argv)
    args.models = args.model or list(models)
    return args


def load(example: str, args: argparse.Namespace) -> dict[str, tuple]:
    """The train/validation splits of ``example``; exits with status 2 if the data is missing."""
    try:
        data, _ = examples.prepare(
            example, seed=args.seed, quick=args.quick,
            synthetic=getattr(args, "synthetic", False), cache=getattr(args, "cache_dir", None),
            url=getattr(args, "url", None), sha256=getattr(args, "sha256", None))
    except (examples.DataUnavailable, examples.DataError) as err:
        print(f"{example}: the real data is not available: {err}", file=sys.stderr)
        if example in examples.REMOTES:
            print(f"{example}: run with --synthetic to train on a synthetic stand-in of the "
                  "same shape", file=sys.stderr)
        raise SystemExit(2) from None
    return data


def train(name: str, make_layers: Callable[[], list], data: dict, args: argparse.Namespace, *,
          loss: str, lr: float, epochs: int, quick_epochs: int, batch_size: int | None = None,
          metrics: Sequence[str] = ("accuracy",)) -> dict[str, dict[str, float]]:
    """Build, initialize and fit one model; print its table; return its final metrics."""
    epochs = args.epochs or (quick_epochs if args.quick else epochs)
    net = network.build(make_layers(), data["dtrain"][0].shape[1:])
    key_init, key_fit = jax.random.split(jax.random.key(args.seed))
    params = network.init(net, key_init)
    arch = " -> ".join(layer.name for layer in net.layers)
    callbacks = [] if args.quiet else [report.Reporter(
        epochs, every=max(epochs // 10, 1), title=f"\n== {name}: {arch} ({loss}, lr {lr:g})")]
    for reporter in callbacks:
        reporter.begin()  # the title shows while the first epoch compiles
    try:
        result = network.fit(net, params, data, epochs=epochs, loss=loss, metrics=metrics,
                             batch_size=batch_size, schedule=Schedule(learning_rate=lr),
                             key=key_fit, callbacks=callbacks)
    except TrainingInterrupted as stop:
        for reporter in callbacks:
            reporter.close()
        raise KeyboardInterrupt(f"during {name}, after {stop.result.epochs} of {epochs} epochs; "
                                "nothing saved") from None
    final = report.final_metrics(result.history)
    print(f"{name}: " + ", ".join(f"{m} {s} {v:.3f}" for m, per in final.items()
                                  for s, v in per.items()))
    if args.out:
        report.plot_history(result.history, Path(args.out) / f"{name}.png", name)
    return final
