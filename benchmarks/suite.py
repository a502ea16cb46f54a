"""The benchmark suite: EpyNN 1.2.13 against epynn_jax, one process per measurement.

Run it as ``python -m benchmarks`` from the repository root (see
``benchmarks/README.md``). The orchestrating process never initialises JAX:
every measurement runs in a fresh worker subprocess (``python -m
benchmarks.suite --worker TASK``), so that

- ``OPENBLAS_NUM_THREADS=1`` is set before NumPy loads (EpyNN runs single-threaded);
- the first call of each implementation pays its full trace + compile cost
  (``EPYNN_JAX_NO_CACHE=1``: no persistent compilation cache in the workers);
- the peak resident memory (``resource.getrusage``) of one implementation is
  not hidden by another's; on a GPU every worker allocates on demand
  (``XLA_PYTHON_CLIENT_PREALLOCATE=false``).

The epoch times of the table then come from one more worker per workload that
runs every JAX implementation (functional, autodiff, compat, reference) in the
same process, round-robin: their ratios do not depend on what the machine did
between two workers (on a shared 2-core VM that drift reached 15-30 %).

Implementations (columns): ``epynn`` (EpyNN 1.2.13 itself, stdout suppressed),
``functional`` (``network.run_epoch``: the hand-written backward), ``fit``
(``network.fit`` as a user calls it: NumPy data, the non-finite guard on, both
splits evaluated, the history kept), ``autodiff`` (the same epoch with
``network.autodiff_gradients(custom_vjp=False)``), ``compat`` (the stateful
facade ``epynn_jax.compat``, when present) and ``reference`` (a minimal
pure-JAX program written below: what a JAX user would write by hand for the
same model). The report also gives the import time of ``epynn_jax`` on top
of ``jax`` (best of three fresh processes).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib
import importlib.util
import io
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"

IMPLS = ("epynn", "functional", "bare", "fit", "fit_train", "fit_bare", "autodiff", "compat",
         "reference", "flax", "equinox", "torch")
#: the other frameworks (``benchmarks/peers.py``): optional, skipped with the reason when absent
PEER_IMPLS = ("flax", "equinox", "torch")
LEARNING_RATE = 0.01
MIN_SECONDS = 1.0  # time epochs for at least this long (fast workloads get more epochs)
MAX_EPOCHS = 50
COMPAT_CHUNK = 10  # epochs per timed model.train() call of the facade
INTERLEAVED_SECONDS = 5.0  # time each implementation this long in the interleaved run

# One workload = one model on one data set, as in EpyNN's dummy_time and dummy_image
# examples: ``n`` samples split into ``n_train`` (trained on, batch ``batch``) and
# ``n - n_train`` (evaluated every epoch, like EpyNN's dval).
WORKLOADS: dict[str, dict[str, Any]] = {
    "Dense": dict(kind="dense", n=1024, n_train=683, steps=128, features=1, width=64, batch=32),
    "CNN": dict(kind="cnn", n=750, n_train=500, side=28, filters=6, kernel=4, pool=2, batch=32),
    "RNN": dict(kind="rnn", n=1024, n_train=683, steps=128, features=1, hidden=10, batch=32),
    "LSTM": dict(kind="lstm", n=1024, n_train=683, steps=128, features=1, hidden=10, batch=32),
    "GRU": dict(kind="gru", n=1024, n_train=683, steps=128, features=1, hidden=10, batch=32),
    # the classic MLP 784-128-10 on digits-sized random images (28 x 28, 10 classes)
    "MLP": dict(kind="dense", n=1536, n_train=1024, steps=28, features=28, width=128,
                classes=10, batch=32),
}
# the layer modules each workload needs (Convolution/Pooling and the recurrent
# layers land on main from other branches: a workload whose layers are missing is skipped)
NEEDS = {"dense": ("dense", "flatten"), "cnn": ("convolution", "pooling", "flatten", "dense"),
         "rnn": ("rnn", "dense"), "lstm": ("lstm", "dense"), "gru": ("gru", "dense")}
# --size large: 16x the samples and 8x the batch (for an accelerator)
SIZES = {"default": dict(samples=1, batch=1), "large": dict(samples=16, batch=8)}


def sized(cfg: dict, size: str) -> dict:
    """A workload configuration scaled to ``size``."""
    f = SIZES[size]
    return {**cfg, "n": cfg["n"] * f["samples"], "n_train": cfg["n_train"] * f["samples"],
            "batch": cfg["batch"] * f["batch"]}


def script_cfg(name: str, size: str = "default", quick: bool = False) -> dict | None:
    """The single-purpose scripts' workload ``name`` at ``size``; ``quick``: a quarter of
    the set and 16 time steps (a smoke run). None (and a line on stderr) when this
    branch's layers lack what it needs."""
    cfg = sized(WORKLOADS[name], size)
    if quick:
        cfg.update(n=cfg["n"] // 4, n_train=cfg["n_train"] // 4)
        if "steps" in cfg:
            cfg["steps"] = 16
    missing = layers_available(cfg["kind"])
    if missing:
        print(f"{name}: skipped, epynn_jax.layers lacks {missing}", file=sys.stderr)
        return None
    return cfg


# -- analytic FLOPs ------------------------------------------------------------------


def forward_flops(cfg: dict) -> int:
    """Matmul/convolution FLOPs of one sample's forward pass (2*n*u per matmul)."""
    kind = cfg["kind"]
    if kind == "dense":
        return 2 * (cfg["steps"] * cfg["features"] * cfg["width"]
                    + cfg["width"] * cfg.get("classes", 2))
    if kind == "cnn":
        o = (cfg["side"] - cfg["kernel"]) // cfg["kernel"] + 1
        pooled = o // cfg["pool"]
        return (2 * o * o * cfg["kernel"] ** 2 * cfg["filters"]
                + 2 * pooled * pooled * cfg["filters"] * 2)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    h, f = cfg["hidden"], cfg["features"]
    return cfg["steps"] * gates * 2 * (f * h + h * h) + 2 * h * 2


def epoch_flops(cfg: dict) -> int:
    """FLOPs of one epoch: forward + backward (3x forward) on the trained
    batches, plus the forward evaluation of every sample (train and val)."""
    batches = max(cfg["n_train"] // cfg["batch"], 1)
    fwd = forward_flops(cfg)
    return 3 * fwd * batches * min(cfg["batch"], cfg["n_train"]) + fwd * cfg["n"]


def layers_available(kind: str) -> list[str]:
    """The ``epynn_jax.layers`` modules a workload needs that are missing."""
    return [m for m in NEEDS[kind] if importlib.util.find_spec(f"epynn_jax.layers.{m}") is None]


def impl_available(impl: str) -> str | None:
    """``None`` when the implementation can run here, else why not."""
    if impl == "epynn" and importlib.util.find_spec("epynn") is None:
        return "EpyNN 1.2.13 is not installed"
    if impl == "compat" and importlib.util.find_spec("epynn_jax.compat") is None:
        return "epynn_jax.compat is not on this branch yet"
    if impl in PEER_IMPLS:
        from benchmarks import peers

        return peers.available()[impl]
    return None


# == worker side: everything below runs inside a subprocess ==========================


def make_data(cfg: dict):
    """Fixed random data: X (n, steps, features) or (n, side, side, 1); one-hot Y (n, classes),
    2 classes unless the workload says."""
    import numpy as np

    rng = np.random.default_rng(0)
    if cfg["kind"] == "cnn":
        X = rng.random((cfg["n"], cfg["side"], cfg["side"], 1))
    else:
        X = rng.standard_normal((cfg["n"], cfg["steps"], cfg["features"]))
    classes = cfg.get("classes", 2)
    Y = np.eye(classes)[rng.integers(0, classes, cfg["n"])]
    return X, Y


def _split(cfg, X, Y):
    k = cfg["n_train"]
    return {"dtrain": (X[:k], Y[:k]), "dval": (X[k:], Y[k:])}


def functional_net(cfg: dict):
    """The workload's network in the functional API: ``(layers, input sample shape)``."""
    from epynn_jax import layers as L

    kind = cfg["kind"]
    if kind == "dense":
        return ([L.Flatten(), L.Dense(cfg["width"], "relu"),
                 L.Dense(cfg.get("classes", 2), "softmax")],
                (cfg["steps"], cfg["features"]))
    if kind == "cnn":
        k, p = cfg["kernel"], cfg["pool"]
        return ([L.Convolution(cfg["filters"], (k, k)), L.Pooling((p, p)), L.Flatten(),
                 L.Dense(2, "softmax")], (cfg["side"], cfg["side"], 1))
    cls = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    return [getattr(L, cls)(cfg["hidden"]), L.Dense(2, "softmax")], (cfg["steps"], cfg["features"])


def epynn_model(cfg: dict, root: str, X, Y):
    """The workload as an EpyNN model, from ``root`` = ``'epynn'`` or ``'epynn_jax.compat'``."""
    def mod(name):
        return importlib.import_module(f"{root}.{name}.models")

    maths = importlib.import_module(f"{root}.commons.maths")
    kind = cfg["kind"]
    if kind == "dense":
        layers = [mod("flatten").Flatten(), mod("dense").Dense(cfg["width"], maths.relu),
                  mod("dense").Dense(cfg.get("classes", 2), maths.softmax)]
    elif kind == "cnn":
        k, p = cfg["kernel"], cfg["pool"]
        layers = [mod("convolution").Convolution(cfg["filters"], (k, k)),
                  mod("pooling").Pooling((p, p)), mod("flatten").Flatten(),
                  mod("dense").Dense(2, maths.softmax)]
    else:
        cls = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
        layers = [getattr(mod(kind), cls)(cfg["hidden"]), mod("dense").Dense(2, maths.softmax)]
    embedding = mod("embedding").Embedding(
        X_data=X, Y_data=Y, relative_size=(cfg["n_train"], cfg["n"] - cfg["n_train"], 0),
        batch_size=cfg["batch"])
    model = mod("network").EpyNN([embedding, *layers])
    settings = importlib.import_module(f"{root}.settings")
    hpars = {**settings.se_hPars, "learning_rate": LEARNING_RATE}
    return model, hpars


def epynn_runner(cfg: dict, root: str):
    """``(first, epochs)``: EpyNN's (or the facade's) initialize + first epoch, then epochs."""
    import numpy as np

    if root == "epynn" and not hasattr(np, "VisibleDeprecationWarning"):
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
    X, Y = make_data(cfg)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        model, hpars = epynn_model(cfg, root, X, Y)

    def recorded():
        return len(next(iter(model.metrics.values()))[0])

    def first():
        with contextlib.redirect_stdout(io.StringIO()):
            model.initialize(loss="MSE", seed=1, metrics=["accuracy"], se_hPars=hpars)
            model.train(1, init_logs=False)

    def epochs(e):
        before = recorded()
        with contextlib.redirect_stdout(io.StringIO()):
            model.train(e, init_logs=False)
        return recorded() - before  # EpyNN's continuation runs one epoch more

    return first, epochs


def _block(tree):
    import jax

    return jax.block_until_ready(tree)


@functools.cache
def autodiff_epoch_fn():
    """``run_epoch`` with the gradients of ``jax.grad`` through the forward math."""
    import jax
    import jax.numpy as jnp
    import optax

    from epynn_jax import network

    @functools.partial(jax.jit, static_argnames=("net", "optimizer", "loss", "metric_names",
                                                  "batch_size"))
    def autodiff_epoch(net, optimizer, loss, metric_names, batch_size, state, train, splits):
        X, Y = train
        key, shuffle_key = jax.random.split(state.key)
        idx = network.epoch.epoch_batches(shuffle_key, X.shape[0], batch_size)

        def step(state, batch_idx):
            key, sub = jax.random.split(state.key)
            grads = network.autodiff_gradients(net, state.params, X[batch_idx], Y[batch_idx],
                                                loss, sub, True, custom_vjp=False)
            updates, opt_state = optimizer(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            return network.TrainState(params, opt_state, key), jnp.zeros(())

        state, costs = jax.lax.scan(step, state._replace(key=key), idx)
        scores = {name: network.evaluate(net, state.params, *xy, metric_names)
                  for name, xy in splits.items()}
        return state, costs, scores

    return autodiff_epoch


def functional_setup(cfg: dict):
    """Network, state, optimizer and device data for the functional/autodiff columns."""
    import jax

    from epynn_jax import Schedule, network

    layers, shape = functional_net(cfg)
    net = network.build(layers, shape)
    params = network.init(net, jax.random.key(0))
    X, Y = make_data(cfg)
    splits = network.checks.check_data(net, _split(cfg, X, Y), "MSE")
    batch = min(cfg["batch"], cfg["n_train"])
    opt = network.epynn_sgd(Schedule(learning_rate=LEARNING_RATE), 1000,
                             max(cfg["n_train"] // batch, 1))
    state = network.TrainState(params, opt.init(params), jax.random.key(1))
    return net, opt, batch, _block(state), _block(splits)


def jax_runner(cfg: dict, impl: str):
    """``(first, epochs)`` for the functional, bare and autodiff columns (``bare``:
    ``run_epoch`` with no split evaluated, the epoch ``fit``'s overheads are measured
    against)."""

    from epynn_jax import network

    net, opt, batch, state, splits = functional_setup(cfg)
    fn = autodiff_epoch_fn() if impl == "autodiff" else network.run_epoch
    box = [state]
    evaluated = {} if impl == "bare" else splits

    def epoch():
        box[0], costs, scores = fn(net, opt.update, "MSE", ("accuracy", "MSE"), batch, box[0],
                                   splits["dtrain"], evaluated)
        # what fit does at each epoch boundary (with nothing evaluated, the costs: a fetch
        # that waits for the epoch, as fit's fetch of its guard does)
        network.epoch.fetch(scores if evaluated else costs)

    def epochs(e):
        for _ in range(e):
            epoch()
        return e

    return epoch, epochs


def fit_runner(cfg: dict, eval_splits: tuple | None = None):
    """``(first, epochs)`` of ``network.fit`` as a user calls it: NumPy data, the non-finite
    guard on, both splits evaluated every epoch (``eval_splits=None``; ``('dtrain',)`` for
    the ``fit_train`` column, ``()`` for ``fit_bare``: no split evaluated). ``epochs(e)``
    is one ``fit(epochs=e)`` call continuing from the last parameters and key (its
    per-call checks and data placement are paid once per call, as in a script)."""
    import jax

    from epynn_jax import Schedule, network

    layers, shape = functional_net(cfg)
    net = network.build(layers, shape)
    X, Y = make_data(cfg)
    data = _split(cfg, X, Y)
    box = {"params": _block(network.init(net, jax.random.key(0))), "key": jax.random.key(1)}
    kw = dict(loss="MSE", metrics=("accuracy",), batch_size=min(cfg["batch"], cfg["n_train"]),
              schedule=Schedule(learning_rate=LEARNING_RATE))
    if eval_splits is not None:
        kw["eval_splits"] = eval_splits

    def epochs(e):
        result = network.fit(net, box["params"], data, epochs=e, key=box["key"], **kw)
        box["params"], box["key"] = result.params, result.key  # fit has fetched the scores
        return result.epochs

    return (lambda: epochs(1)), epochs


# -- the pure-JAX reference ------------------------------------------------------------


def ref_init(cfg: dict, key):
    """Parameters of the reference model (Xavier-like scaled normals)."""
    import jax
    import jax.numpy as jnp

    keys = iter(jax.random.split(key, 8))

    def w(*shape):
        return jax.random.normal(next(keys), shape) * (2.0 / sum(shape[-2:])) ** 0.5

    kind = cfg["kind"]
    if kind == "dense":
        n = cfg["steps"] * cfg["features"]
        return {"W1": w(n, cfg["width"]), "b1": jnp.zeros(cfg["width"]),
                "W2": w(cfg["width"], cfg.get("classes", 2)),
                "b2": jnp.zeros(cfg.get("classes", 2))}
    if kind == "cnn":
        k, o = cfg["kernel"], (cfg["side"] - cfg["kernel"]) // cfg["kernel"] + 1
        flat = (o // cfg["pool"]) ** 2 * cfg["filters"]
        return {"K": w(k, k, 1, cfg["filters"]), "bk": jnp.zeros(cfg["filters"]),
                "W2": w(flat, 2), "b2": jnp.zeros(2)}
    g = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    h, f = cfg["hidden"], cfg["features"]
    return {"U": w(f, g * h), "V": w(h, g * h), "b": jnp.zeros(g * h),
            "W2": w(h, 2), "b2": jnp.zeros(2)}


def ref_forward(kind: str, p: dict, X):
    """The reference model's output (m, classes): plain jax.numpy/lax, no library code."""
    import jax
    import jax.numpy as jnp

    if kind == "dense":
        A = jax.nn.relu(X.reshape(X.shape[0], -1) @ p["W1"] + p["b1"])
    elif kind == "cnn":
        k = p["K"].shape[0]
        Z = jax.lax.conv_general_dilated(X, p["K"], (k, k), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        A = jax.nn.relu(Z + p["bk"])
        A = jax.lax.reduce_window(A, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        A = A.reshape(A.shape[0], -1)
    else:
        h = p["V"].shape[0]
        xs = jnp.swapaxes(X, 0, 1) @ p["U"] + p["b"]  # input projections of all steps at once

        def cell(carry, xz):
            hp, c = carry
            z = xz + hp @ p["V"] if kind != "gru" else xz
            if kind == "rnn":
                hn = jnp.tanh(z)
                return (hn, c), None
            if kind == "lstm":
                f, i, g, o = jnp.split(z, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None
            zr = xz[:, : 2 * h] + hp @ p["V"][:, : 2 * h]
            u, r = jax.nn.sigmoid(zr[:, :h]), jax.nn.sigmoid(zr[:, h:])
            hh = jnp.tanh(xz[:, 2 * h:] + (r * hp) @ p["V"][:, 2 * h:])
            return (u * hp + (1 - u) * hh, c), None

        zeros = jnp.zeros((X.shape[0], h), X.dtype)
        (A, _), _ = jax.lax.scan(cell, (zeros, zeros), xs)
    return jax.nn.softmax(A @ p["W2"] + p["b2"], axis=-1)


@functools.cache
def ref_epoch_fn():
    """One jitted epoch of the reference: shuffle, scan of SGD steps, evaluate both splits."""
    import jax
    import jax.numpy as jnp

    def loss(kind, p, X, Y):
        return jnp.sum(jnp.mean((Y - ref_forward(kind, p, X)) ** 2, axis=-1))

    @functools.partial(jax.jit, static_argnames=("kind", "batch", "lr"))
    def ref_epoch(kind, batch, lr, p, key, train, val):
        X, Y = train
        key, sub = jax.random.split(key)
        nb = max(X.shape[0] // batch, 1)
        idx = jax.random.permutation(sub, X.shape[0])[: nb * batch].reshape(nb, batch)

        def step(p, i):
            g = jax.grad(loss, argnums=1)(kind, p, X[i], Y[i])
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), None

        p, _ = jax.lax.scan(step, p, idx)
        scores = {}
        for name, (Xs, Ys) in (("dtrain", train), ("dval", val)):
            A = ref_forward(kind, p, Xs)
            scores[name] = (jnp.mean(jnp.argmax(A, -1) == jnp.argmax(Ys, -1)),
                            jnp.mean((Ys - A) ** 2))
        return p, key, scores

    return ref_epoch


def ref_runner(cfg: dict):
    import jax
    import jax.numpy as jnp

    X, Y = make_data(cfg)
    data = {k: (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
            for k, (x, y) in _split(cfg, X, Y).items()}
    box = [_block(ref_init(cfg, jax.random.key(0))), jax.random.key(1)]
    fn, batch = ref_epoch_fn(), min(cfg["batch"], cfg["n_train"])
    _block(data)

    def epoch():
        box[0], box[1], scores = fn(cfg["kind"], batch, LEARNING_RATE, box[0], box[1],
                                    data["dtrain"], data["dval"])
        jax.device_get(scores)

    def epochs(e):
        for _ in range(e):
            epoch()
        return e

    return epoch, epochs


# -- measurement tasks -------------------------------------------------------------------


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _device_peak_mb() -> float | None:
    try:
        import jax

        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - not every backend has memory stats
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def task_epoch(task: dict) -> dict:
    """Time one implementation on one workload: first call, then ``epochs`` timed epochs."""
    cfg, impl, n = task["cfg"], task["impl"], task["epochs"]
    first, epochs = _runner(cfg, impl)
    rss0 = _maxrss_mb()
    t0 = time.perf_counter()
    first()
    first_s = time.perf_counter() - t0
    # the facade and fit are timed as a script trains, COMPAT_CHUNK epochs per train() or
    # fit() call (epoch throughput); a single train(1) call of the facade, with its
    # per-call host work, is reported apart as train1_s
    chunk = COMPAT_CHUNK if impl in ("compat", "fit", "fit_train", "fit_bare") else 1
    times: list[float] = []
    start = time.perf_counter()
    # at least n timings, more (up to MAX_EPOCHS epochs) until MIN_SECONDS have passed
    while len(times) < n or (time.perf_counter() - start < MIN_SECONDS
                             and len(times) * chunk < MAX_EPOCHS):
        t0 = time.perf_counter()
        ran = epochs(chunk)
        times.append((time.perf_counter() - t0) / max(ran, 1))
    epoch_s = min(times)
    extra = {}
    if impl == "compat":
        single = []
        for _ in range(max(n, 5)):
            t0 = time.perf_counter()
            ran = epochs(1)
            single.append((time.perf_counter() - t0) / max(ran, 1))
        extra = {"chunk": chunk, "train1_s": min(single)}
    out = {"first_call_s": first_s, "epoch_s": epoch_s, "epoch_median_s": statistics.median(times),
           "epochs_timed": len(times), "compile_s": max(first_s - epoch_s, 0.0),
           "rss_delta_mb": _maxrss_mb() - rss0, **extra}
    if impl != "epynn":
        out["device_peak_mb"] = _device_peak_mb()
    if task.get("breakdown") and impl == "functional":
        out["breakdown"] = breakdown(cfg, epoch_s)
    if task.get("profile") and impl == "functional":
        import jax

        with jax.profiler.trace(task["profile"]):
            epochs(1)
    return out


def _time(fn, repeat: int) -> float:
    """Best seconds of ``fn()`` (which blocks) over ``repeat`` calls, after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cache_bytes_per_step(net, batch: int) -> int:
    """Bytes of every fc and bc entry of one training step (written once, read at least once)."""
    total = 0
    for layer in net.layers:
        p = layer.param_shapes()
        shapes = [s for k, s in layer.fs(batch).items() if k not in p]
        shapes += list(layer.bs(batch).values())
        total += sum(math.prod(s) for s in shapes) * 4
    return total


def breakdown(cfg: dict, epoch_s: float) -> dict:
    """Where one functional epoch's time goes, by timing its parts separately."""
    import jax
    import jax.numpy as jnp

    from epynn_jax import network

    net, opt, batch, state, splits = functional_setup(cfg)
    nb = max(cfg["n_train"] // batch, 1)
    names = ("accuracy", "MSE")
    X, Y = splits["dtrain"]

    # 1. the bare cost of one dispatch of a compiled function (host -> device -> host)
    tiny = jax.jit(lambda x: x + 1)
    one = jnp.zeros(())
    dispatch = _time(lambda: tiny(one).block_until_ready(), 50)

    # 2. the epoch without evaluation: shuffle + scan of training steps
    def train_only():
        jax.block_until_ready(network.run_epoch(net, opt.update, "MSE", names, batch, state,
                                                 (X, Y), {}))
    scan = _time(train_only, 5)

    # 3. the evaluation of both splits alone (full-set forward passes + metrics)
    evaluate = jax.jit(lambda params: {k: network.evaluate(net, params, *xy, names)
                                       for k, xy in splits.items()})
    ev = _time(lambda: jax.block_until_ready(evaluate(state.params)), 5)

    # 4. the same steps dispatched one by one from Python (one jitted call per batch)
    step = jax.jit(functools.partial(network.train_step, net, opt, "MSE"))
    idx = network.epoch.epoch_batches(jax.random.key(2), X.shape[0], batch)
    batches = [(X[i], Y[i]) for i in idx]
    _block(batches)

    def python_loop():
        s = state
        for xb, yb in batches:
            s, c = step(s, xb, yb)
        jax.block_until_ready(s)
    loop = _time(python_loop, 3)

    # 5. scan overhead: the same trip count and batch gathers with a trivial body
    @jax.jit
    def empty_scan(X, idx):
        def body(c, i):
            return c + jnp.sum(X[i][:, :1]), None
        return jax.lax.scan(body, jnp.zeros((), X.dtype), idx)[0]
    empty = _time(lambda: empty_scan(X, idx).block_until_ready(), 5)

    bytes_step = cache_bytes_per_step(net, batch)
    step_s = scan / nb
    return {
        "batches": nb,
        "dispatch_us": dispatch * 1e6,
        "train_scan_s": scan,
        "eval_s": ev,
        "step_in_scan_us": step_s * 1e6,
        "step_python_loop_us": loop / nb * 1e6,
        "empty_scan_step_us": empty / nb * 1e6,
        "per_time_step_us": (step_s * 1e6 / cfg["steps"]) if cfg["kind"] in ("rnn", "lstm", "gru")
        else None,
        "cache_mb_per_step": bytes_step / 2**20,
        "cache_gbps": bytes_step / step_s / 1e9,
    }


def task_peak(task: dict) -> dict:
    """The device, its float32 matmul rate (large jitted matmul) and its copy bandwidth.

    ``task['dtype']`` (optional, default float32) measures another dtype's matmul rate
    (``benchmarks/gpu_peers.py`` also asks for bfloat16)."""
    import jax
    import jax.numpy as jnp

    dev = jax.devices()[0]
    dtype = jnp.dtype(task.get("dtype", "float32"))
    mm = jax.jit(lambda a, b: a @ b)
    best = None
    for n in task["matmul_sizes"]:  # the best rate over a few sizes and repeats
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        t = _time(lambda a=a, b=b: mm(a, b).block_until_ready(), task["repeat"])
        if best is None or 2 * n**3 / t > 2 * best[0] ** 3 / best[1]:
            best = (n, t)
    n, t = best
    x = jnp.ones((task["copy_n"],), jnp.float32)
    add = jax.jit(lambda x: x * 1.5 + 1.0)
    tc = _time(lambda: add(x).block_until_ready(), task["repeat"])
    return {"platform": dev.platform, "device_kind": dev.device_kind,
            "device_count": jax.device_count(), "jax": jax.__version__,
            "matmul_n": n, "matmul_s": t, "matmul_flops": 2 * n**3 / t,
            "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
            "matmul_dtype": dtype.name,
            "copy_gbps": 2 * 4 * task["copy_n"] / tc / 1e9}


def task_scaling(task: dict) -> dict:
    """Epoch time of one implementation over a list of configurations."""
    out = []
    for cfg in task["cfgs"]:
        sub = {"cfg": cfg, "impl": task["impl"], "epochs": task["epochs"]}
        try:
            r = task_epoch(sub)
            out.append({"x": cfg[task["vary"]], "epoch_s": r["epoch_s"],
                        "first_call_s": r["first_call_s"]})
        except Exception as err:  # noqa: BLE001 - report and go on
            out.append({"x": cfg[task["vary"]], "error": f"{type(err).__name__}: {err}"})
    return {"points": out}


def peer_runner(cfg: dict, impl: str):
    """``(first, epochs)`` of a peer framework (``benchmarks/peers.py``, float32): its
    whole epoch, training and both splits evaluated, as the functional column's."""
    import numpy as np

    from benchmarks import peers

    X, Y = make_data(cfg)
    data = {k: (x.astype(np.float32), y.astype(np.float32))
            for k, (x, y) in _split(cfg, X, Y).items()}
    state, run = peers.make_epoch(impl, cfg, "float32", data)
    box = [state]

    def epoch():
        box[0], _ = run(box[0])  # returns once the scores are on the host

    def epochs(e):
        for _ in range(e):
            epoch()
        return e

    return epoch, epochs


def _runner(cfg: dict, impl: str):
    """``(first, epochs)`` of one implementation (see :func:`task_epoch`)."""
    if impl in PEER_IMPLS:
        return peer_runner(cfg, impl)
    if impl in ("epynn", "compat"):
        return epynn_runner(cfg, "epynn" if impl == "epynn" else "epynn_jax.compat")
    if impl == "reference":
        return ref_runner(cfg)
    if impl == "fit":
        return fit_runner(cfg)
    if impl == "fit_train":
        return fit_runner(cfg, eval_splits=("dtrain",))
    if impl == "fit_bare":
        return fit_runner(cfg, eval_splits=())
    return jax_runner(cfg, impl)


def task_interleaved(task: dict) -> dict:
    """Several implementations in ONE process, timed round-robin (the order reversed every
    round), so that the machine's drifts hit them alike: the table's ratios come from here.

    One timing is ``COMPAT_CHUNK`` consecutive epochs for every implementation (one
    ``train(COMPAT_CHUNK)`` call for the facade), divided by the epochs run: the best
    timing is then a mean over as many epochs for each column. At least ``epochs``
    rounds, more until every implementation has been timed for ``INTERLEAVED_SECONDS``
    (at most ``MAX_EPOCHS`` rounds). Every round's timings are returned
    (``timings_s``), so that ratios can be taken round by round (see :func:`_ratio`).
    """
    cfg, impls, n = task["cfg"], task["impls"], task["epochs"]
    runners = {impl: _runner(cfg, impl) for impl in impls}
    for first, _ in runners.values():
        first()
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    spent = dict.fromkeys(impls, 0.0)
    rounds = 0
    while rounds < n or (min(spent.values()) < INTERLEAVED_SECONDS and rounds < MAX_EPOCHS):
        for impl in (impls if rounds % 2 == 0 else impls[::-1]):
            t0 = time.perf_counter()
            ran = runners[impl][1](COMPAT_CHUNK)
            dt = time.perf_counter() - t0
            spent[impl] += dt
            times[impl].append(dt / max(ran, 1))
        rounds += 1
    return {impl: {"epoch_s": min(t), "epoch_median_s": statistics.median(t), "rounds": rounds,
                   "timings_s": t} for impl, t in times.items()}


class CompileClock:
    """The seconds JAX spends tracing, lowering and compiling (or reading its persistent
    cache) from now on, by its own compile events (``jax.monitoring`` time spans; a trace
    nested in another is counted once)."""

    EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
              "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
              "/jax/core/compile/backend_compile_duration": "compile"}

    def __init__(self) -> None:
        import jax

        self.since = time.time()  # the events' clock
        self.spans: dict[str, list[tuple[float, float]]] = {k: [] for k in self.EVENTS.values()}
        jax.monitoring.register_event_time_span_listener(self._listen)

    def close(self) -> None:
        """Stop listening (the spans heard so far are kept)."""
        import jax

        jax.monitoring.unregister_event_time_span_listener(self._listen)

    def _listen(self, event: str, start: float, end: float, **_) -> None:
        if event in self.EVENTS:
            self.spans[self.EVENTS[event]].append((start, end))

    def seconds(self, kind: str | None = None) -> float:
        """Seconds covered by the spans of ``kind`` ('trace', 'lower', 'compile'; None:
        all three) since this clock started."""
        spans = self.spans[kind] if kind else [x for v in self.spans.values() for x in v]
        total, reach = 0.0, self.since
        for start, end in sorted(spans):
            start = max(start, reach)
            if end > start:
                total, reach = total + end - start, end
        return total


def task_first(task: dict) -> dict:
    """Seconds of one implementation's first epoch call in this fresh process (trace +
    compile + one epoch; its setup, data and parameters, made before), and the part of
    them JAX spent tracing, lowering and compiling (:class:`CompileClock`)."""
    first, _ = _runner(task["cfg"], task["impl"])
    clock = CompileClock()
    t0 = time.perf_counter()
    first()
    return {"first_call_s": time.perf_counter() - t0,
            **{f"{kind}_s": clock.seconds(kind) for kind in ("trace", "lower", "compile")}}


TASKS = {"epoch": task_epoch, "peak": task_peak, "scaling": task_scaling,
         "interleaved": task_interleaved, "first": task_first}


FIRST_PAIR = ("fit", "reference")  # the first epochs compared pair by pair


def worker_main(task_json: str) -> int:
    task = json.loads(task_json)
    try:
        result = TASKS[task["task"]](task)
    except Exception as err:  # noqa: BLE001 - the orchestrator records it
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(err).__name__}: {err}"}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# == orchestrator side ===================================================================


def worker_env(cache: bool = False) -> dict:
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH")] if p)
    if not cache:
        env["EPYNN_JAX_NO_CACHE"] = "1"
    return env


def run_worker(task: dict, timeout: float) -> dict:
    """Run one task in a fresh interpreter; its result, or ``{'error': ...}``."""
    cmd = [sys.executable, "-m", "benchmarks.suite", "--worker", json.dumps(task)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=worker_env(), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"worker exited {proc.returncode}: {' | '.join(tail)}"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure_peak(args) -> dict:
    gpu = _looks_like_gpu()
    task = {"task": "peak",
            "matmul_sizes": [4096, 8192] if gpu else ([1024] if args.quick else [512, 1024, 2048]),
            "copy_n": 2**26 if gpu else 2**23, "repeat": 10}
    peak = run_worker(task, args.timeout)
    if "error" not in peak:
        log(f"device: {peak['device_kind']} ({peak['platform']}, {peak['device_count']} "
            f"device(s), jax {peak['jax']}); float32 matmul {peak['matmul_flops'] / 1e9:.1f} "
            f"GFLOP/s at n={peak['matmul_n']}; copy {peak['copy_gbps']:.1f} GB/s")
    else:
        log(f"peak measurement failed: {peak['error']}")
    return peak


def _looks_like_gpu() -> bool:
    plat = os.environ.get("JAX_PLATFORMS", "")
    if plat:
        return "cuda" in plat or "gpu" in plat
    return any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/nvidiactl"))


def measure_table(args, size: str) -> dict:
    """Every implementation on every workload: the main table."""
    table = {}
    epochs = args.epochs or (2 if args.quick else (3 if size == "large" else 5))
    for name in args.workloads:
        cfg = sized(WORKLOADS[name], size)
        missing = layers_available(cfg["kind"])
        if missing:
            note = f"skipped: epynn_jax.layers lacks {', '.join(missing)} on this branch"
            table[name] = {"note": note}
            log(f"{name}: {note}")
            continue
        row = {"cfg": cfg, "epoch_flops": epoch_flops(cfg)}
        for impl in args.impls:
            why = impl_available(impl)
            if why:
                row[impl] = {"skipped": why}
                continue
            task = {"task": "epoch", "cfg": cfg, "impl": impl, "epochs": epochs,
                    "breakdown": impl == "functional" and not args.no_breakdown,
                    "profile": (str(Path(args.profile) / name) if args.profile else None)}
            r = run_worker(task, args.timeout)
            row[impl] = r
            msg = r.get("error") or (f"{r['epoch_s'] * 1e3:9.2f} ms/epoch, first call "
                                     f"{r['first_call_s']:.2f} s")
            log(f"{name:5s} {impl:10s} {msg}")
        together = [impl for impl in args.impls if impl != "epynn" and "epoch_s" in row[impl]]
        if len(together) > 1:
            r = run_worker({"task": "interleaved", "cfg": cfg, "impls": together,
                            "epochs": epochs}, args.timeout)
            if "error" in r:
                log(f"{name:5s} interleaved: {r['error']}")
            for impl in together:
                if impl in r:  # the process-alone time is kept beside
                    row[impl]["epoch_alone_s"] = row[impl]["epoch_s"]
                    row[impl].update(r[impl], interleaved=True)
            if "error" not in r:
                log(f"{name:5s} interleaved " + ", ".join(
                    f"{impl} {r[impl]['epoch_s'] * 1e3:.2f}" for impl in together) + " ms/epoch")
        if all(impl in together for impl in FIRST_PAIR) and args.first_pairs:
            row["first_pairs"] = measure_first_pairs(args, cfg, name)
        table[name] = row
    return table


def measure_first_pairs(args, cfg: dict, name: str) -> dict:
    """The first epoch of ``fit`` and of the pure-JAX program, each in a fresh process,
    ``args.first_pairs`` times, the two one after the other (the order flipped every
    pair): their ratio is taken pair by pair, as the machine's state moves between
    minutes."""
    out: dict[str, list[float]] = {impl: [] for impl in FIRST_PAIR}
    parts: dict[str, list[float]] = {}  # the medians of their trace, lower, compile times
    for i in range(args.first_pairs):
        for impl in (FIRST_PAIR if i % 2 == 0 else FIRST_PAIR[::-1]):
            r = run_worker({"task": "first", "cfg": cfg, "impl": impl}, args.timeout)
            if "error" in r:
                log(f"{name:5s} first epoch {impl}: {r['error']}")
                return {"error": r["error"]}
            out[impl].append(r["first_call_s"])
            for kind in ("trace", "lower", "compile"):
                parts.setdefault(f"{impl}_{kind}_s", []).append(r[f"{kind}_s"])
    ratios = [a / b for a, b in zip(*out.values())]
    log(f"{name:5s} first epoch fit / pure JAX, {len(ratios)} pairs: "
        + ", ".join(f"{x:.2f}" for x in ratios))
    return {**{f"{impl}_s": v for impl, v in out.items()}, "ratio": statistics.median(ratios),
            "parts": {k: statistics.median(v) for k, v in parts.items()}}


SCALING = {
    # curve: (workload, varied key, values, quick values, fixed overrides)
    "batch": ("Dense", "batch", [32, 64, 128, 256, 512, 1024], [32, 256, 1024],
              {"n": 6144, "n_train": 4096}),
    "batch_rnn": ("RNN", "batch", [32, 64, 128, 256, 512, 1024], [32, 256, 1024],
                  {"n": 6144, "n_train": 4096}),
    "steps": ("RNN", "steps", [32, 64, 128, 256, 512, 1024], [32, 256, 1024], {}),
    "width": ("Dense", "width", [16, 32, 64, 128, 256, 512, 1024], [16, 128, 1024], {}),
}


def measure_scaling(args) -> dict:
    out = {}
    for curve, (name, key, values, quick_values, fixed) in SCALING.items():
        if args.curves and curve not in args.curves:
            continue
        base = {**WORKLOADS[name], **fixed}
        if layers_available(base["kind"]):
            out[curve] = {"note": f"skipped: layers for {name} missing"}
            continue
        cfgs = [{**base, key: v} for v in (quick_values if args.quick else values)]
        curve_out = {"workload": name, "vary": key, "fixed": fixed, "impls": {}}
        for impl in ("functional", "reference"):
            task = {"task": "scaling", "cfgs": cfgs, "impl": impl, "vary": key,
                    "epochs": 1 if args.quick else 3}
            r = run_worker(task, args.timeout * 3)
            curve_out["impls"][impl] = r
            pts = r.get("points", [])
            log(f"scaling {curve:9s} {impl:10s} " + (r.get("error") or ", ".join(
                f"{p['x']}: {p['epoch_s'] * 1e3:.1f} ms" if "epoch_s" in p else f"{p['x']}: err"
                for p in pts)))
        out[curve] = curve_out
    return out


IMPORT_SCRIPT = """
import time
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
import epynn_jax
from epynn_jax import layers, network
print('IMPORT', t1 - t0, time.perf_counter() - t1, flush=True)
"""


def measure_import(args, repeat: int = 3) -> dict:
    """``import jax``, then ``import epynn_jax`` (with ``layers`` and ``network``), in fresh
    processes: the best of ``repeat`` after one run that writes the bytecode (as an
    installed package has it)."""
    env = worker_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    runs = []
    for _ in range(repeat + 1):
        proc = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=args.timeout)
        line = [x for x in proc.stdout.splitlines() if x.startswith("IMPORT")]
        if proc.returncode or not line:
            return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        runs.append(tuple(map(float, line[0].split()[1:])))
    runs = runs[1:]
    out = {"jax_s": min(r[0] for r in runs), "epynn_jax_s": min(r[1] for r in runs),
           "runs": len(runs)}
    log(f"import: jax {out['jax_s']:.3f} s, then epynn_jax {out['epynn_jax_s']:.3f} s "
        f"(best of {len(runs)})")
    return out


CACHE_SCRIPT = """
import time
t0 = time.perf_counter()
import jax, numpy as np
from epynn_jax import config, layers, network
config.setup()  # what the command and the script runner do: the cache on unless opted out
from benchmarks.suite import CompileClock
net = network.build([layers.Flatten(), layers.Dense(64, 'relu'), layers.Dense(2, 'softmax')],
                    (128, 1))
params = network.init(net, jax.random.key(0))
rng = np.random.default_rng(0)
X = rng.standard_normal((1024, 128, 1)); Y = np.eye(2)[rng.integers(0, 2, 1024)]
t1 = time.perf_counter()
clock = CompileClock()
r = network.fit(net, params, {'dtrain': (X[:683], Y[:683]), 'dval': (X[683:], Y[683:])},
                epochs=3, batch_size=32)
p = network.predict(net, r.params, X[:10])
jax.block_until_ready(p)
t2 = time.perf_counter()
parts = [clock.seconds(k) for k in ('trace', 'lower', 'compile')]
from epynn_jax.network import programs
store = programs.stats()['load_seconds']  # programs read from the store (no JAX event)
print('TIMES', t1 - t0, t2 - t1, clock.seconds() + store, *parts, store, flush=True)
"""

#: fresh processes run with the cache warm (their median is reported)
WARM_RUNS = 3


def measure_compile_cache(args) -> dict:
    """First and second run of a small training script in fresh processes (and one uncached)."""
    runs = []
    plan = [("first run (empty cache)", True)]
    plan += [(f"cache warm, run {i + 2}", True) for i in range(WARM_RUNS)]
    plan += [("cache off (EPYNN_JAX_NO_CACHE=1)", False)]
    with tempfile.TemporaryDirectory() as tmp:
        for label, cache in plan:
            env = worker_env(cache=cache)
            env["XDG_CACHE_HOME"] = tmp
            env.pop("JAX_COMPILATION_CACHE_DIR", None)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=args.timeout)
            wall = time.perf_counter() - t0
            line = [x for x in proc.stdout.splitlines() if x.startswith("TIMES")]
            if proc.returncode or not line:
                runs.append({"label": label, "error": proc.stderr.strip().splitlines()[-1:]})
                continue
            imp, fit, jit, trace, lower, compile_, store = map(float, line[0].split()[1:])
            runs.append({"label": label, "wall_s": wall, "import_s": imp, "fit_s": fit,
                         "jit_s": jit, "trace_s": trace, "lower_s": lower,
                         "compile_s": compile_, "store_s": store})
            log(f"compile cache: {label:34s} wall {wall:.2f} s, fit+predict {fit:.2f} s, "
                f"of which tracing, lowering, compiling {jit:.3f} s")
        files = sum(len(f) for _, _, f in os.walk(tmp))
    return {"runs": runs, "cache_files": files}


# -- rendering ------------------------------------------------------------------------------


def _ms(r: dict | None) -> str:
    if not r:
        return "–"
    if "skipped" in r:
        return "skip"
    if "error" in r:
        return "error"
    return f"{r['epoch_s'] * 1e3:.2f}"


def _seconds(r: dict) -> str:
    """A first call's seconds (trace + compile + one epoch), or '–'."""
    return f"{r['first_call_s']:.2f}" if "first_call_s" in r else "–"


def _ratio(a: dict | None, b: dict | None) -> str:
    """Time of ``a`` / time of ``b``: the median of the round-by-round ratios when both
    were timed in the same interleaved run (paired: each round's timings share the
    machine's state), else best / best."""
    if not a or not b or "epoch_s" not in a or "epoch_s" not in b:
        return "–"
    ta, tb = a.get("timings_s"), b.get("timings_s")
    if ta and tb and len(ta) == len(tb):
        return f"{statistics.median(x / y for x, y in zip(ta, tb)):.2f}"
    return f"{a['epoch_s'] / b['epoch_s']:.2f}"


def render_result(res: dict) -> list[str]:
    meta, peak = res.get("meta", {}), res.get("peak", {})
    lines = [f"## {peak.get('device_kind', meta.get('device', '?'))} "
             f"({peak.get('platform', '?')}) — size `{meta.get('size')}`"
             f"{' (quick)' if meta.get('quick') else ''}", ""]
    lines.append(f"Run {meta.get('date', '?')} on {meta.get('host', '?')} "
                 f"({meta.get('cpus', '?')} CPUs), JAX {peak.get('jax', '?')}, "
                 f"{meta.get('epochs_note', '')}.")
    for note in meta.get("partial_runs", []):
        lines.append(f"Measured again in a later run: {note}.")
    if meta.get("load_before"):
        lines.append(f"Load average (1, 5, 15 min) before: "
                     f"{', '.join(f'{x:.1f}' for x in meta['load_before'])}; after: "
                     f"{', '.join(f'{x:.1f}' for x in meta.get('load_after', []))}.")
    imp = res.get("import") or {}
    if "epynn_jax_s" in imp:
        lines.append(f"`import epynn_jax` (with `layers` and `network`): "
                     f"**{imp['epynn_jax_s']:.3f} s** on top of `import jax` "
                     f"({imp['jax_s']:.2f} s); best of {imp.get('runs', '?')} fresh processes.")
    if "matmul_flops" in peak:
        lines.append(f"Measured float32 matmul peak: **{peak['matmul_flops'] / 1e9:,.0f} GFLOP/s** "
                     f"(n={peak['matmul_n']}, precision `{peak['matmul_precision']}`); "
                     f"copy bandwidth {peak['copy_gbps']:,.0f} GB/s.")
    lines.append("")
    table = res.get("table", {})
    if table:
        lines += ["Milliseconds per epoch (best of the timed epochs; lower is better), "
                  "then ratios. The JAX columns (functional, fit, autodiff, compat, pure JAX) "
                  f"are timed in one process, round-robin, {COMPAT_CHUNK} epochs per timing "
                  f"(one `fit(epochs={COMPAT_CHUNK})` or `model.train({COMPAT_CHUNK})` call; "
                  f"best timing / {COMPAT_CHUNK}); their ratios are the median of the "
                  "round-by-round ratios (each round's timings share the machine's state). "
                  "EpyNN runs alone (best epoch; EpyNN / functional is best / best). "
                  "First epoch (fit): a fresh process's first `fit(epochs=1)` call, "
                  "compilation included:",
                  "",
                  "| workload | EpyNN | functional | fit | autodiff | compat | pure JAX | "
                  "EpyNN / functional | fit / functional | autodiff / functional | "
                  "compat / functional | functional / pure JAX | "
                  "first call s (functional) | first epoch s (fit) | "
                  "RSS Δ MB (EpyNN / functional) | device peak MB | % of matmul peak |",
                  "|---|" + "---:|" * 16]
        notes = []
        for name, row in table.items():
            if "note" in row:
                notes.append(f"- {name}: {row['note']}")
                lines.append(f"| {name} |" + " – |" * 16)
                continue
            f = row.get("functional", {})
            e = row.get("epynn", {})
            frac = "–"
            if "epoch_s" in f and "matmul_flops" in peak:
                pct = 100 * row["epoch_flops"] / f["epoch_s"] / peak["matmul_flops"]
                frac = f"{pct:.1f}" if pct >= 1 else f"{pct:.2f}"
            rss = (f"{e.get('rss_delta_mb', float('nan')):.0f} / "
                   f"{f.get('rss_delta_mb', float('nan')):.0f}")
            dev = f.get("device_peak_mb")
            fit = row.get("fit") or {}
            lines.append(
                f"| {name} | {_ms(e)} | {_ms(f)} | {_ms(row.get('fit'))} | "
                f"{_ms(row.get('autodiff'))} | "
                f"{_ms(row.get('compat'))} | {_ms(row.get('reference'))} | {_ratio(e, f)} | "
                f"{_ratio(row.get('fit'), f)} | "
                f"{_ratio(row.get('autodiff'), f)} | {_ratio(row.get('compat'), f)} | "
                f"{_ratio(f, row.get('reference'))} | "
                f"{_seconds(f)} | {_seconds(fit)} | {rss} | "
                f"{'–' if dev is None else f'{dev:.1f}'} | {frac} |")
            for impl in IMPLS:
                r = row.get(impl) or {}
                if "skipped" in r:
                    notes.append(f"- {impl}: skipped ({r['skipped']})")
                elif "error" in r:
                    notes.append(f"- {name} / {impl}: error ({r['error'][:200]})")
        lines += ["", *sorted(set(notes), key=notes.index), ""]
        lines += _render_fit_overheads(table)
        lines += _render_peers(table)
        lines += _render_compat_calls(table)
        lines += _render_first_calls(table)
        lines += _render_breakdown(table)
    if res.get("scaling"):
        lines += _render_scaling(res["scaling"])
    if res.get("compile_cache"):
        cc = res["compile_cache"]
        lines += ["### Persistent compilation cache", "",
                  "A small training script (Dense workload, `fit` 3 epochs + `predict`) run "
                  "as fresh processes: with an empty cache, with the cache warm "
                  f"({WARM_RUNS} runs and their median), with the cache off. Compile-related "
                  "time is the part of `fit` + `predict` that JAX spends tracing, lowering "
                  "and compiling or reading its cache (its own compile events, overlaps "
                  "counted once), plus the reading of programs from epynn_jax's store "
                  "(`network.programs`, found without tracing):", "",
                  "| run | process wall s | import s | fit + predict s | compile-related s "
                  "| trace s | lower s | compile or cache read s | store read s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        keys = ("wall_s", "import_s", "fit_s", "jit_s", "trace_s", "lower_s", "compile_s",
                "store_s")
        warm = [r for r in cc["runs"] if r["label"].startswith("cache warm") and "error" not in r]
        rows = list(cc["runs"])
        if warm:
            rows.insert(len(rows) - 1, {"label": "**cache warm, median**",
                                        **{k: statistics.median(r[k] for r in warm)
                                           for k in keys if all(k in r for r in warm)}})
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['label']} | error | | | | | | | |")
            else:
                lines.append(f"| {r['label']} | " + " | ".join(
                    f"{r[k]:.3f}" if k in r else "–" for k in keys) + " |")
        lines += ["", f"Cache entries written: {cc['cache_files']}.", ""]
    return lines


def peer_ratios(row: dict) -> dict | None:
    """The best peer of one workload's row (the smallest best epoch among the peers timed)
    and functional's speed against it: its time / functional's, as the median of the
    round-by-round ratios (``paired``) and best epoch / best epoch (``best``); above 1,
    functional is faster. None when no peer or no functional epoch was timed."""
    f = row.get("functional") or {}
    timed = [p for p in PEER_IMPLS if "epoch_s" in (row.get(p) or {})]
    if not timed or "epoch_s" not in f:
        return None
    best = min(timed, key=lambda p: row[p]["epoch_s"])
    b = row[best]
    tb, tf = b.get("timings_s"), f.get("timings_s")
    paired = (statistics.median(x / y for x, y in zip(tb, tf)) if tb and tf
              and len(tb) == len(tf) else b["epoch_s"] / f["epoch_s"])
    return {"peer": best, "paired": paired, "best": b["epoch_s"] / f["epoch_s"]}


def _render_peers(table: dict) -> list[str]:
    """The functional epoch against Flax NNX, Equinox and PyTorch (``benchmarks/peers.py``):
    each trains the same model and evaluates both splits every epoch."""
    rows = [(name, row) for name, row in table.items()
            if any("epoch_s" in (row.get(p) or {}) for p in PEER_IMPLS)]
    if not rows:
        return []
    lines = ["The functional epoch against the other frameworks "
             "(`benchmarks/peers.py`: the same model, plain SGD, both splits evaluated "
             "every epoch, float32; the JAX peers compile the whole epoch as one `jax.jit` "
             "function, PyTorch runs its Python loop). Milliseconds per epoch (best timing), "
             "then the best peer's time / functional's: above 1, epynn_jax is faster; paired "
             "is the median of the round-by-round ratios of the interleaved run, best is "
             "best epoch / best epoch:", "",
             "| workload | functional | Flax NNX | Equinox | PyTorch | best peer | "
             "vs best peer (paired) | vs best peer (best epoch) |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for name, row in rows:
        r = peer_ratios(row)
        lines.append(
            f"| {name} | {_ms(row.get('functional'))} | {_ms(row.get('flax'))} | "
            f"{_ms(row.get('equinox'))} | {_ms(row.get('torch'))} | "
            + (f"{r['peer']} | {r['paired']:.2f} | {r['best']:.2f} |" if r else "– | – | – |"))
    return [*lines, ""]


def _render_fit_overheads(table: dict) -> list[str]:
    """What ``fit`` adds to the bare epoch (``run_epoch``, no guard, nothing evaluated),
    paired ratios of the interleaved run, and its first epoch against the pure-JAX
    program's first call (fresh processes, compilation included)."""
    rows = [(name, row) for name, row in table.items() if "epoch_s" in (row.get("bare") or {})]
    if not rows:
        return []
    lines = ["What `fit` costs over the bare epoch (`run_epoch`, guard off, no split "
             "evaluated): `fit` (guard on, both splits evaluated), `fit_train` (the training "
             "split only, `fit(eval_splits=('dtrain',))`), `fit_bare` "
             "(`fit(eval_splits=())`: guard on, nothing evaluated), functional (guard off, "
             "both splits evaluated); paired ratios of the interleaved run. First epoch: a "
             "fresh process's first `fit(epochs=1)` call against the pure-JAX program's "
             "first epoch call, compilation included (with `--first-pairs N`: medians of N "
             "pairs of fresh processes, and the median of the pair-by-pair ratios):", "",
             "| workload | bare ms | fit / bare | fit_train / bare | fit_bare / bare | "
             "functional / bare | first epoch s (fit) | first call s (pure JAX) | "
             "fit / pure JAX (first) |",
             "|---|" + "---:|" * 8]
    for name, row in rows:
        b, fit, ref = row["bare"], row.get("fit") or {}, row.get("reference") or {}
        pairs = row.get("first_pairs") or {}
        if "ratio" in pairs:  # the median over fresh-process pairs, and their medians
            cells = [f"{statistics.median(pairs[f'{impl}_s']):.2f}" for impl in FIRST_PAIR]
            cells.append(f"{pairs['ratio']:.2f} ({len(pairs['fit_s'])} pairs)")
        else:
            cells = [_seconds(fit), _seconds(ref),
                     f"{fit['first_call_s'] / ref['first_call_s']:.2f}"
                     if "first_call_s" in fit and "first_call_s" in ref else "–"]
        lines.append(f"| {name} | {_ms(b)} | {_ratio(fit, b)} | "
                     f"{_ratio(row.get('fit_train'), b)} | {_ratio(row.get('fit_bare'), b)} | "
                     f"{_ratio(row.get('functional'), b)} | "
                     + " | ".join(cells) + " |")
    return [*lines, "", *_render_first_parts(table)]


def _render_first_parts(table: dict) -> list[str]:
    """Where the first epochs of :func:`measure_first_pairs` go: JAX's trace, lowering and
    compile (:class:`CompileClock`), and the rest (running it, Python, imports)."""
    rows = [(name, row["first_pairs"]) for name, row in table.items()
            if "parts" in (row.get("first_pairs") or {})]
    if not rows:
        return []
    lines = ["Where those first epochs go (medians over the pairs, seconds): JAX's own "
             "compile events (tracing, lowering to MLIR, XLA's compile), and the rest of the "
             "call (the epoch itself, Python around it, imports made by the first call):", "",
             "| workload | | trace | lower | compile | rest | first epoch |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, pairs in rows:
        for impl, label in zip(FIRST_PAIR, ("fit", "pure JAX")):
            got = [pairs["parts"][f"{impl}_{kind}_s"] for kind in ("trace", "lower", "compile")]
            total = statistics.median(pairs[f"{impl}_s"])
            lines.append(f"| {name} | {label} | " + " | ".join(f"{x:.3f}" for x in got)
                         + f" | {total - sum(got):.3f} | {total:.3f} |")
    return [*lines, ""]


def _render_compat_calls(table: dict) -> list[str]:
    rows = [(name, row["compat"]) for name, row in table.items()
            if "train1_s" in (row.get("compat") or {})]
    if not rows:
        return []
    chunk = rows[0][1].get("chunk", COMPAT_CHUNK)
    lines = [f"The compat column times `model.train({chunk})` calls (epoch throughput, as a "
             "script trains). One `model.train(1)` call also pays the per-call host work "
             "(schedule, reports, parameters and outputs back to NumPy), ms:", "",
             "| workload | compat epoch in train(" + str(chunk) + ") | one train(1) call |",
             "|---|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['epoch_s'] * 1e3:.2f} | {r['train1_s'] * 1e3:.2f} |")
    return lines + [""]


def _render_first_calls(table: dict) -> list[str]:
    lines = ["First call (trace + compile + one epoch), seconds:", "",
             "| workload | " + " | ".join(IMPLS) + " |", "|---|" + "---:|" * len(IMPLS)]
    for name, row in table.items():
        if "note" in row:
            continue
        cells = []
        for impl in IMPLS:
            r = row.get(impl) or {}
            cells.append(f"{r['first_call_s']:.2f}" if "first_call_s" in r else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _render_breakdown(table: dict) -> list[str]:
    rows = [(n, r["functional"]["breakdown"]) for n, r in table.items()
            if "breakdown" in (r.get("functional") or {})]
    if not rows:
        return []
    lines = ["Where a functional epoch's time goes (see `docs/performance.md`):", "",
             "| workload | batches | train scan ms | eval ms | µs / step in scan | "
             "µs / step, Python loop | µs / empty scan step | µs / dispatch | "
             "µs / time step | fc+bc MB / step | fc+bc GB/s |", "|---|" + "---:|" * 10]
    for name, b in rows:
        ts = b.get("per_time_step_us")
        lines.append(
            f"| {name} | {b['batches']} | {b['train_scan_s'] * 1e3:.2f} | "
            f"{b['eval_s'] * 1e3:.2f} | {b['step_in_scan_us']:.1f} | "
            f"{b['step_python_loop_us']:.1f} | {b['empty_scan_step_us']:.2f} | "
            f"{b['dispatch_us']:.1f} | {'–' if ts is None else f'{ts:.2f}'} | "
            f"{b['cache_mb_per_step']:.3f} | {b['cache_gbps']:.2f} |")
    return [*lines, ""]


def _render_scaling(scaling: dict) -> list[str]:
    lines = ["### Scaling", ""]
    for curve, c in scaling.items():
        if "note" in c:
            lines += [f"- {curve}: {c['note']}", ""]
            continue
        fixed = ", ".join(f"{k}={v}" for k, v in c["fixed"].items())
        extra = "; ".join(x for x in (fixed, c.get("note_runs")) if x)
        lines += [f"{c['workload']}: epoch ms vs `{c['vary']}`" + (f" ({extra})" if extra else ""),
                  "", f"| {c['vary']} | functional ms | pure JAX ms | functional / pure JAX |",
                  "|---:|---:|---:|---:|"]
        pts = {impl: {p["x"]: p for p in r.get("points", [])} for impl, r in c["impls"].items()}
        xs = sorted({x for d in pts.values() for x in d})
        for x in xs:
            f = pts.get("functional", {}).get(x, {})
            r = pts.get("reference", {}).get(x, {})
            lines.append(f"| {x} | {_ms(f) if f else '–'} | {_ms(r) if r else '–'} | "
                         f"{_ratio(f, r)} |")
        lines.append("")
    return lines


def render_doc() -> str:
    files = sorted(RESULTS.glob("*.json"))
    lines = ["# Benchmark results", "",
             "Generated by `python -m benchmarks` (see `benchmarks/README.md`); how to read it: "
             "`docs/performance.md`. One section per device and size.", ""]
    for path in files:
        lines += render_result(json.loads(path.read_text()))
    if not files:
        lines.append("No results yet: run `python -m benchmarks`.")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="fewer epochs and points: a smoke run")
    ap.add_argument("--size", choices=sorted(SIZES), default="default")
    ap.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    ap.add_argument("--epochs", type=int, default=None, help="timed epochs per measurement")
    ap.add_argument("--scaling", action="store_true", help="also the scaling curves")
    ap.add_argument("--curves", nargs="+", choices=list(SCALING),
                    help="with --scaling: only these curves")
    ap.add_argument("--compile-cache", action="store_true",
                    help="also first vs second run of a script with the persistent cache")
    ap.add_argument("--no-table", action="store_true", help="skip the main table")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--first-pairs", type=int, default=3,
                    help="pairs of fresh processes timing fit's and pure JAX's first epoch "
                         "(0: none)")
    ap.add_argument("--profile", help="write a jax.profiler trace of one epoch per workload here")
    ap.add_argument("--tag", help="results file name (default: PLATFORM-SIZE[-quick])")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per worker")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite docs/benchmarks.md from benchmarks/results/*.json")
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.render:
        DOC.write_text(render_doc())
        log(f"wrote {DOC.relative_to(ROOT)}")
        return 0

    peak = measure_peak(args)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node() or "?", "cpus": os.cpu_count(), "size": args.size,
            "quick": args.quick, "python": platform.python_version(),
            "epochs_note": "EpyNN single-threaded (OPENBLAS_NUM_THREADS=1)",
            "load_before": os.getloadavg()}
    tag = args.tag or f"{peak.get('platform', 'unknown')}-{args.size}" + (
        "-quick" if args.quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{tag}.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    old_peak = res.get("peak", {})
    # the machine's peak: keep the best measurement (on a shared machine a low one is noise)
    if old_peak.get("matmul_flops", 0) > peak.get("matmul_flops", 0):
        peak = {**old_peak, "copy_gbps": peak.get("copy_gbps", 0)}
    if "copy_gbps" in old_peak:
        peak["copy_gbps"] = max(old_peak["copy_gbps"], peak.get("copy_gbps", 0))
    res["peak"] = peak
    res.setdefault("meta", meta)
    res["import"] = measure_import(args)
    if not args.no_table:
        table = measure_table(args, args.size)
        some_rows = set(args.workloads) != set(WORKLOADS)
        if (set(args.impls) != set(IMPLS) or some_rows) and res.get("table"):
            # some columns or rows only: merge them into the table measured before
            for name, row in table.items():
                old = res["table"].setdefault(name, row)
                if old is not row and "note" not in row:
                    old.update({k: v for k, v in row.items() if k in args.impls
                                or k not in IMPLS})
            load = meta["load_before"][0]
            what = ", ".join(args.impls) if set(args.impls) != set(IMPLS) else "every column"
            rows = f" of {', '.join(args.workloads)}" if some_rows else ""
            res.setdefault("meta", meta).setdefault("partial_runs", []).append(
                f"{what}{rows} measured {meta['date']} (load {load:.1f})")
        else:
            res["meta"] = meta  # the meta describes the run that measured the table
            res["table"] = table
    if args.scaling:
        new = measure_scaling(args)
        old = res.get("scaling", {})
        # a curve measured before is kept unless this run measured it
        res["scaling"] = {**old, **{k: v for k, v in new.items()
                                    if "note" not in v or k not in old}}
    if args.compile_cache:
        res["compile_cache"] = measure_compile_cache(args)
    if not args.no_table:
        meta["load_after"] = os.getloadavg()
    path.write_text(json.dumps(res, indent=1))
    print("\n".join(render_result(res)))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render_doc())
    log(f"wrote {path.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
