"""Benchmark: the EpyNN facade vs EpyNN 1.2.13 vs the functional API.

1. The dummy_time RNN(10) -> Dense(2, softmax) model (683 x 128 x 1 training
   samples, batch 32, MSE, softmax temperature 5, lr 0.01) trained for a few
   epochs by EpyNN 1.2.13, by the facade (``epynn_jax.compat``) and by
   ``epynn_jax.network.fit``. Reported: steady-state seconds per epoch
   (compilation excluded and reported separately) and the speed-ups.
2. Whole-script wall time of each of EpyNN's dummy examples
   (``epynnlive/dummy_*/train.py``, copied to a temporary directory) run by
   EpyNN 1.2.13 and by ``python -m epynn_jax.compat`` (fresh processes, so
   import and compilation are included; EpyNN's dummy_boolean includes its 4 s
   start-up sleep).

Usage::

    PYTHONPATH=. python benchmarks/bench_compat.py [--epochs 5] [--no-scripts] [--json out.json]

Run with ``OPENBLAS_NUM_THREADS=1`` for EpyNN figures comparable to the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPYNN_SHIM = ("import numpy as np, runpy, sys; "
              "np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning; "
              "sys.path.insert(0, '.'); sys.argv = ['train.py']; "
              "runpy.run_path('train.py', run_name='__main__')")


def examples_dir() -> Path:
    spec = importlib.util.find_spec("epynnlive")
    if spec is None:
        raise SystemExit("epynnlive (EpyNN's examples) is not installed")
    return Path(spec.submodule_search_locations[0])


def dummy_time_data():
    """The dummy_time data set exactly as its train.py builds it."""
    sys.path.insert(0, str(examples_dir() / "dummy_time"))
    from prepare_dataset import prepare_dataset  # noqa: E402

    random.seed(1)
    np.random.seed(1)
    return prepare_dataset(N_SAMPLES=1024)


def _hpars():
    return {"learning_rate": 0.01, "schedule": "steady", "decay_k": 0, "cycle_epochs": 0,
            "cycle_descent": 0, "ELU_alpha": 1, "LRELU_alpha": 0.3, "softmax_temperature": 5}


def time_epynn_like(root: str, X, Y, epochs: int) -> tuple[float, float]:
    """(first-epoch seconds, steady seconds per epoch) for EpyNN or the facade."""
    import importlib

    if root == "epynn" and not hasattr(np, "VisibleDeprecationWarning"):
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
    mods = {m: importlib.import_module(f"{root}.{m}.models") for m in
            ("embedding", "rnn", "dense", "network")}
    maths = importlib.import_module(f"{root}.commons.maths")
    emb = mods["embedding"].Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=32,
                                      relative_size=(2, 1, 0))
    model = mods["network"].EpyNN([emb, mods["rnn"].RNN(10), mods["dense"].Dense(2, maths.softmax)],
                                  name="bench")
    with contextlib.redirect_stdout(io.StringIO()):
        model.initialize(loss="MSE", seed=1, se_hPars=_hpars())
        t0 = time.perf_counter()
        model.train(1, init_logs=False)
        first = time.perf_counter() - t0
        if root == "epynn":
            # EpyNN's continued training repeats an epoch: count what it really runs
            n0 = len(model.metrics["accuracy"][0])
        t0 = time.perf_counter()
        model.train(epochs, init_logs=False)
        dt = time.perf_counter() - t0
        ran = len(model.metrics["accuracy"][0]) - (n0 if root == "epynn" else 1)
    return first, dt / ran


def time_functional(X, Y, epochs: int) -> tuple[float, float]:
    import importlib

    import jax

    from epynn_jax import network
    from epynn_jax.data import dataset
    from epynn_jax.layers.dense import Dense
    from epynn_jax.maths.activations import ActivationHPars
    from epynn_jax.maths.schedules import Schedule

    RNN = importlib.import_module("epynn_jax.layers.rnn").RNN

    splits, _ = dataset.embed(X, Y, relative_size=(2, 1, 0), Y_encode=True)
    data = {k: (v.X, v.Y) for k, v in splits.items()}
    hp = ActivationHPars(softmax_temperature=5, epynn_softmax_grad=True)
    net = network.build([RNN(10, hpars=hp), Dense(2, "softmax", hpars=hp)],
                        data["dtrain"][0].shape[1:])
    params = network.init(net, jax.random.key(1))
    kw = dict(loss="MSE", batch_size=32, schedule=Schedule(learning_rate=0.01),
              key=jax.random.key(0))
    stamps = [time.perf_counter()]
    network.fit(net, params, data, epochs=1 + epochs,
                callbacks=[lambda e, h: stamps.append(time.perf_counter())], **kw)
    steps = np.diff(stamps)
    return float(steps[0]), float(np.mean(steps[1:]))


def model_benchmark(epochs: int) -> dict:
    X, Y = dummy_time_data()
    out = {}
    for label, fn in (("EpyNN 1.2.13", lambda: time_epynn_like("epynn", X, Y, epochs)),
                      ("facade", lambda: time_epynn_like("epynn_jax.compat", X, Y, epochs)),
                      ("functional", lambda: time_functional(X, Y, epochs))):
        first, per_epoch = fn()
        out[label] = {"first_epoch_s": first, "s_per_epoch": per_epoch}
        print(f"  {label:<14} first epoch {first:8.3f} s   steady {per_epoch * 1e3:9.2f} ms/epoch",
              flush=True)
    e, f, j = (out[k]["s_per_epoch"] for k in ("EpyNN 1.2.13", "facade", "functional"))
    out["facade_vs_epynn"] = e / f
    out["facade_vs_functional"] = j / f
    print(f"  facade speed-up over EpyNN: {e / f:.1f}x;  facade / functional speed: {j / f:.2f}x")
    return out


def script_benchmark() -> dict:
    src = examples_dir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
           "EPYNN_JAX_QUIET": "1"}
    out = {}
    for name in ("dummy_boolean", "dummy_string", "dummy_time", "dummy_image"):
        row = {}
        for label, cmd in (("EpyNN 1.2.13", [sys.executable, "-c", EPYNN_SHIM]),
                           ("facade", [sys.executable, "-m", "epynn_jax.compat", "train.py"])):
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp) / name
                shutil.copytree(src / name, work, ignore=shutil.ignore_patterns("__pycache__"))
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
                row[label] = time.perf_counter() - t0
                if proc.returncode:
                    row[label] = float("nan")
                    print(proc.stdout[-2000:], proc.stderr[-2000:])
        out[name] = row
        print(f"  {name:<14} EpyNN {row['EpyNN 1.2.13']:7.1f} s   facade {row['facade']:7.1f} s",
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--no-scripts", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"dummy_time RNN(10), batch 32, {args.epochs} timed epochs:")
    results = {"model": model_benchmark(args.epochs)}
    if not args.no_scripts:
        print("whole dummy example scripts (fresh processes):")
        results["scripts"] = script_benchmark()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
