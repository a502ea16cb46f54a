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
   start-up sleep): the facade cold (no persistent compilation cache) and warm
   (second run with JAX's persistent compilation cache, which the runner
   enables by default).

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


def build_epynn_like(root: str, X, Y):
    """The dummy_time RNN model of EpyNN (``root='epynn'``) or of the facade, initialized."""
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
    return model


def train_epynn_like(model, epochs: int) -> float:
    """Seconds per epoch of ``model.train(epochs)`` (counting the epochs really run)."""
    n0 = len(model.metrics["accuracy"][0])
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        model.train(epochs, init_logs=False)
        dt = time.perf_counter() - t0
    return dt / (len(model.metrics["accuracy"][0]) - n0)


def functional_runner(X, Y):
    """A function ``run(epochs) -> seconds per epoch`` training the same model with ``fit``."""
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
    state = {"params": network.init(net, jax.random.key(1))}
    kw = dict(loss="MSE", batch_size=32, schedule=Schedule(learning_rate=0.01),
              key=jax.random.key(0))

    def run(epochs: int) -> float:
        t0 = time.perf_counter()
        res = network.fit(net, state["params"], data, epochs=epochs, **kw)
        jax.block_until_ready(res.params)
        state["params"] = res.params
        return (time.perf_counter() - t0) / epochs

    return run


def model_benchmark(epochs: int, rounds: int = 3) -> dict:
    """Per-epoch times; facade and functional alternate (``rounds`` times) to share the load."""
    X, Y = dummy_time_data()
    epynn_model = build_epynn_like("epynn", X, Y)
    epynn_s = train_epynn_like(epynn_model, epochs)
    facade = build_epynn_like("epynn_jax.compat", X, Y)
    t0 = time.perf_counter()
    train_epynn_like(facade, 1)
    facade_first = time.perf_counter() - t0
    run = functional_runner(X, Y)
    t0 = time.perf_counter()
    run(epochs)
    functional_first = time.perf_counter() - t0
    f_times, j_times = [], []
    for _ in range(rounds):
        f_times.append(train_epynn_like(facade, epochs))
        j_times.append(run(epochs))
    f, j = float(np.median(f_times)), float(np.median(j_times))
    out = {"EpyNN 1.2.13": {"s_per_epoch": epynn_s},
           "facade": {"s_per_epoch": f, "all": f_times, "first_call_s": facade_first},
           "functional": {"s_per_epoch": j, "all": j_times, "first_call_s": functional_first},
           "facade_vs_epynn": epynn_s / f, "facade_vs_functional": j / f}
    for label in ("EpyNN 1.2.13", "facade", "functional"):
        print(f"  {label:<14} {out[label]['s_per_epoch'] * 1e3:9.2f} ms/epoch (median)", flush=True)
    print(f"  compile + first call: facade {facade_first:.1f} s, functional "
          f"{functional_first:.1f} s")
    print(f"  facade speed-up over EpyNN: {epynn_s / f:.1f}x;  facade / functional speed: "
          f"{j / f:.2f}x")
    return out


def _run_script(src: Path, name: str, cmd: list[str], env: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / name
        shutil.copytree(src / name, work, ignore=shutil.ignore_patterns("__pycache__"))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            return float("nan")
        return time.perf_counter() - t0


def script_benchmark(epynn: bool = True) -> dict:
    """Wall time of each example: EpyNN (unless ``epynn=False``); the facade cold (no
    compilation cache), warm with JAX's cache alone (``EPYNN_JAX_NO_PROGRAM_STORE=1``) and
    warm with the store of compiled programs too (the runner's default)."""
    src = examples_dir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "EPYNN_JAX_QUIET": "1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    facade = [sys.executable, "-m", "epynn_jax.compat", "train.py"]
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        warm_env = {**env, "JAX_COMPILATION_CACHE_DIR": cache}
        for name in ("dummy_boolean", "dummy_string", "dummy_time", "dummy_image"):
            row = {"EpyNN 1.2.13": (_run_script(src, name, [sys.executable, "-c", EPYNN_SHIM],
                                                env) if epynn else float("nan")),
                   "facade cold": _run_script(src, name, facade,
                                              {**env, "EPYNN_JAX_NO_CACHE": "1"})}
            _run_script(src, name, facade, warm_env)  # fills the cache and the store
            jax_only = _run_script(src, name, facade,
                                   {**warm_env, "EPYNN_JAX_NO_PROGRAM_STORE": "1"})
            row["facade warm, JAX's cache"] = jax_only
            row["facade warm"] = _run_script(src, name, facade, warm_env)
            out[name] = row
            print(f"  {name:<14} EpyNN {row['EpyNN 1.2.13']:7.1f} s   facade cold "
                  f"{row['facade cold']:7.1f} s   warm, JAX's cache {jax_only:7.1f} s   "
                  f"warm with the store {row['facade warm']:7.1f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--no-scripts", action="store_true")
    ap.add_argument("--no-epynn-scripts", action="store_true",
                    help="run the example scripts with the facade only (EpyNN's dummy_time "
                         "takes minutes)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"dummy_time RNN(10), batch 32, {args.epochs} timed epochs:")
    results = {"model": model_benchmark(args.epochs)}
    if not args.no_scripts:
        print("whole dummy example scripts (fresh processes):")
        results["scripts"] = script_benchmark(epynn=not args.no_epynn_scripts)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
