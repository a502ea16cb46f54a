"""Benchmark: a streamed ``fit`` epoch against the in-memory one, in one interleaved run.

For each workload of the suite (``benchmarks.suite.WORKLOADS``: same model, same
random data, batch and learning rate), three ways to give ``fit`` the same
training set are timed round-robin in one process (the order reversed every
round):

- ``in-memory``: NumPy arrays, put on the device, one compiled call per epoch;
- ``streamed``: the same arrays with ``stream=True`` (read, checked and placed
  chunk by chunk from the host by the prefetch thread);
- ``memmap``: the set saved as ``.npy`` files and opened with ``mmap_mode='r'``
  (streamed by itself).

One timing is one ``fit(epochs=E)`` call continuing from the last parameters
(training only, ``eval_splits=()``), divided by ``E``. The ratios are
throughputs, streamed / in-memory (1.0: as fast; the target is >= 0.9): the
median of the round-by-round ratios, each round's timings sharing the machine's
state. Usage::

    python -m benchmarks.bench_stream [--quick] [--size large] [--workloads Dense CNN LSTM]
                                      [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import suite

VARIANTS = ("in-memory", "streamed", "memmap")


def paired_ratio(base: list[float], other: list[float]) -> float:
    """Throughput of ``other`` relative to ``base`` (time base / time other): the median
    of the round-by-round ratios of two equally long lists of timings."""
    if not base or len(base) != len(other):
        raise ValueError("paired_ratio: two equally long, non-empty lists of timings")
    return statistics.median(b / o for b, o in zip(base, other))


def _runners(cfg: dict, directory: Path, epochs: int) -> dict:
    """``{variant: fit(E) call}``: each continues from its own last parameters and key."""
    import jax
    import numpy as np

    from epynn_jax import Schedule, network

    layers, shape = suite.functional_net(cfg)
    net = network.build(layers, shape)
    X, Y = suite.make_data(cfg)
    k = cfg["n_train"]
    X, Y = X[:k].astype(np.float32), Y[:k].astype(np.float32)
    np.save(directory / "X.npy", X)
    np.save(directory / "Y.npy", Y)
    sources = {"in-memory": ((X, Y), None), "streamed": ((X, Y), True),
               "memmap": ((np.load(directory / "X.npy", mmap_mode="r"),
                           np.load(directory / "Y.npy", mmap_mode="r")), None)}
    kw = dict(loss="MSE", metrics=("accuracy",), batch_size=min(cfg["batch"], k),
              schedule=Schedule(learning_rate=suite.LEARNING_RATE), eval_splits=())
    params = network.init(net, jax.random.key(0))

    def runner(xy, stream):
        box = {"params": params, "key": jax.random.key(1)}

        def run(e):
            result = network.fit(net, box["params"], {"dtrain": xy}, epochs=e, key=box["key"],
                                 stream=stream, **kw)
            box["params"], box["key"] = result.params, result.key
            jax.block_until_ready(result.params)
            return result.epochs

        return run

    return {name: runner(xy, stream) for name, (xy, stream) in sources.items()}


def measure(cfg: dict, epochs: int, rounds: int) -> dict:
    """Every variant's timings (seconds per epoch, one per round) and its first call."""
    with tempfile.TemporaryDirectory() as tmp:
        runners = _runners(cfg, Path(tmp), epochs)
        first = {}
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(1)
            first[name] = time.perf_counter() - t0
        times: dict[str, list[float]] = {name: [] for name in runners}
        for r in range(rounds):
            for name in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
                t0 = time.perf_counter()
                done = runners[name](epochs)
                times[name].append((time.perf_counter() - t0) / done)
    return {"timings_s": times, "first_call_s": first,
            "ratio": {v: paired_ratio(times["in-memory"], times[v]) for v in VARIANTS[1:]}}


def render(results: dict) -> list[str]:
    lines = ["| workload | in-memory ms | streamed ms | memmap ms | streamed / in-memory "
             "(throughput) | memmap / in-memory |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        ms = {v: min(r["timings_s"][v]) * 1e3 for v in VARIANTS}
        lines.append(f"| {name} | {ms['in-memory']:.2f} | {ms['streamed']:.2f} | "
                     f"{ms['memmap']:.2f} | {r['ratio']['streamed']:.2f} | "
                     f"{r['ratio']['memmap']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_stream",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sets, few rounds: a smoke run")
    ap.add_argument("--workloads", nargs="+", choices=list(suite.WORKLOADS),
                    default=["Dense", "CNN", "LSTM"])
    ap.add_argument("--size", choices=sorted(suite.SIZES), default="default",
                    help="the suite's sizes (large: 16x the samples, 8x the batch)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per timing")
    ap.add_argument("--rounds", type=int, default=None, help="timings per variant")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 5)
    rounds = args.rounds or (2 if args.quick else 7)
    results = {}
    for name in args.workloads:
        cfg = suite.script_cfg(name, args.size, args.quick)
        if cfg is None:
            continue
        results[name] = measure(cfg, epochs, rounds)
        print(f"{name}: streamed / in-memory {results[name]['ratio']['streamed']:.2f}, "
              f"memmap / in-memory {results[name]['ratio']['memmap']:.2f}", file=sys.stderr)
    print("\n".join(render(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
