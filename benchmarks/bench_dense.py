"""Epoch throughput of Dense networks: epynn_jax vs EpyNN 1.2.13 vs a minimal pure-JAX reference.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_dense.py [--epochs 20] [--epynn-epochs 5] [--quick]

Cases (float32 in JAX, EpyNN's own float64):

(a) dummy_time-like: X (683, 128, 1) train + (341, 128, 1) val, Flatten -> Dense(64, relu) ->
    Dense(2, softmax), MSE, batch 32;
(b) MNIST-sized: 784 features, 10,000 train + 2,000 val samples, Dense(128, relu) ->
    Dense(10, softmax), CCE, batch 100.

Each epoch does the same work in all three: shuffle, SGD over N // batch batches (the
remainder dropped), then a full forward pass with accuracy and loss on dtrain and dval.

- epynn_jax: ``network.run_epoch`` called exactly as ``network.fit`` calls it by default
  (``guard=True``: the non-finite check of each step; one compiled call per epoch, then the
  scores and the guard fetched to the host), and as ``fit(..., check_finite=False)`` calls it.
- EpyNN: its own model, ``model.train(epochs, init_logs=False)`` with stdout suppressed; the
  time of each epoch (batches + its evaluation + report) is taken between successive calls
  of ``model.report``.
- reference: the same network written directly in JAX (``jax.grad`` of the summed loss, the
  whole epoch one ``lax.scan``, the same evaluation), to show the cost of our abstractions.

``OPENBLAS_NUM_THREADS=1`` (and the MKL/OMP equivalents) is set in this process before NumPy
is imported, so EpyNN's NumPy runs single-threaded as on a shared 2-core box; JAX's CPU
backend keeps its own threading. First-call (compile) time is reported apart; the per-epoch
figure is the median over the measured epochs, in wall time and in process CPU time (the
latter is steadier on a loaded shared machine; for JAX it sums all of XLA's threads).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from epynn_jax import layers, network  # noqa: E402
from epynn_jax.maths.schedules import Schedule  # noqa: E402

CASES = {
    "a": dict(title="(a) Flatten-Dense(64,relu)-Dense(2,softmax), 683x(128,1), batch 32",
              n_train=683, n_val=341, sample=(128, 1), hidden=64, k=2, batch=32, loss="MSE",
              lr=0.005),
    "b": dict(title="(b) Dense(128,relu)-Dense(10,softmax), 10000x784, batch 100",
              n_train=10000, n_val=2000, sample=(784,), hidden=128, k=10, batch=100,
              loss="CCE", lr=0.001),
}


def make_data(c, seed=0):
    rng = np.random.default_rng(seed)
    n = c["n_train"] + c["n_val"]
    X = rng.standard_normal((n, *c["sample"])).astype(np.float32)
    y = rng.integers(0, c["k"], n)
    X[np.arange(n), ..., 0] += y[:, None] * 0.5 if len(c["sample"]) > 1 else 0
    Y = np.eye(c["k"], dtype=np.float32)[y]
    return X, Y


def _block(tree):
    return jax.tree_util.tree_map(lambda x: x.block_until_ready(), tree)


# -- epynn_jax --------------------------------------------------------------------------------


def setup_ours(c, X, Y, epochs, guard=True):
    """fit's set-up; returns a function running one epoch exactly as fit does.

    ``guard=True`` is fit's default (``check_finite=True``); ``False`` is
    ``fit(..., check_finite=False)``.
    """
    n = c["n_train"]
    first = [layers.Flatten()] if len(c["sample"]) > 1 else []
    net = network.build([*first, layers.Dense(c["hidden"], "relu"),
                         layers.Dense(c["k"], "softmax")], c["sample"])
    params = network.init(net, jax.random.key(0))
    splits = network.checks.check_data(net, {"dtrain": (X[:n], Y[:n]), "dval": (X[n:], Y[n:])},
                                 c["loss"])
    metric_names = ("accuracy", c["loss"])
    optimizer = network.epynn_sgd(Schedule(c["lr"]), epochs, n // c["batch"])
    state = [network.TrainState(params, optimizer.init(params), jax.random.key(1))]

    def epoch():
        # fit's default check_finite=True runs the guarded epoch and fetches the guard.
        out = network.run_epoch(net, optimizer.update, c["loss"], metric_names, c["batch"],
                                state[0], splits["dtrain"], splits, guard=guard)
        state[0], scores = out[0], jax.device_get(out[2:])
        _block(state[0].params)
        return scores

    return epoch


# -- pure-JAX reference -------------------------------------------------------------------------


def setup_reference(c, X, Y):
    """The same network, loss, SGD and evaluation written directly in JAX."""
    n, bs, loss, lr = c["n_train"], c["batch"], c["loss"], c["lr"]
    data = (jnp.asarray(X[:n]).reshape(n, -1), jnp.asarray(Y[:n]),
            jnp.asarray(X[n:]).reshape(len(X) - n, -1), jnp.asarray(Y[n:]))
    k1, k2 = jax.random.split(jax.random.key(0))
    d, h, k = data[0].shape[1], c["hidden"], c["k"]
    params = {"W1": jax.random.normal(k1, (d, h)) * jnp.sqrt(2 / (d + h)), "b1": jnp.zeros(h),
              "W2": jax.random.normal(k2, (h, k)) * jnp.sqrt(2 / (h + k)), "b2": jnp.zeros(k)}

    def predict(p, x):
        return jax.nn.softmax(jax.nn.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"])

    def per_sample(p, x, y):
        a = predict(p, x)
        if loss == "MSE":
            return jnp.mean((y - a) ** 2, axis=1)
        return -jnp.sum(y * jnp.log(a + 1e-16), axis=1)

    grad = jax.grad(lambda p, x, y: jnp.sum(per_sample(p, x, y)))

    def scores(p, x, y):
        acc = jnp.mean(jnp.argmax(predict(p, x), 1) == jnp.argmax(y, 1))
        return acc, jnp.mean(per_sample(p, x, y))

    @jax.jit
    def run(p, key, Xtr, Ytr, Xva, Yva):  # data as arguments, not closure constants
        key, sub = jax.random.split(key)
        nb = n // bs
        idx = jax.random.permutation(sub, n)[: nb * bs].reshape(nb, bs)

        def step(p, i):
            g = grad(p, Xtr[i], Ytr[i])
            return jax.tree_util.tree_map(lambda w, gw: w - lr * gw, p, g), None

        p, _ = jax.lax.scan(step, p, idx)
        return p, key, (scores(p, Xtr, Ytr), scores(p, Xva, Yva))

    state = [params, jax.random.key(1)]

    def epoch():
        state[0], state[1], s = run(*state, *data)
        s = jax.device_get(s)
        _block(state[0])
        return s

    return epoch


def bench_jax(c, X, Y, epochs):
    """First call of each apart, then ours and the reference alternately, epoch by epoch.

    Alternating makes both see the same machine load. Returns first-call times and the
    per-epoch times of each.
    """
    fns = (setup_ours(c, X, Y, epochs + 1), setup_reference(c, X, Y),
           setup_ours(c, X, Y, epochs + 1, guard=False))
    first = []
    for fn in fns:
        t = time.perf_counter()
        fn()
        first.append(time.perf_counter() - t)
    wall, cpu = ([], [], []), ([], [], [])
    for _ in range(epochs):
        for i, fn in enumerate(fns):
            t, p = time.perf_counter(), time.process_time()
            fn()
            wall[i].append(time.perf_counter() - t)
            cpu[i].append(time.process_time() - p)
    return first, wall, cpu


# -- EpyNN -----------------------------------------------------------------------------------------


def bench_epynn(c, X, Y, epochs):
    if not hasattr(np, "VisibleDeprecationWarning"):  # EpyNN 1.2.13 on NumPy 2
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
    try:
        from epynn.commons.maths import relu, softmax
        from epynn.dense.models import Dense
        from epynn.embedding.models import Embedding
        from epynn.flatten.models import Flatten
        from epynn.network.models import EpyNN
    except ImportError:
        return None
    n = c["n_train"]
    rel = (n, len(X) - n, 0)
    emb = Embedding(X.astype(np.float64), Y.astype(np.float64), relative_size=rel,
                    batch_size=c["batch"])
    first = [Flatten()] if len(c["sample"]) > 1 else []
    model = EpyNN([emb, *first, Dense(c["hidden"], relu), Dense(c["k"], softmax)])
    hp = {"learning_rate": c["lr"], "schedule": "steady", "decay_k": 0, "cycle_epochs": 0,
          "cycle_descent": 0, "ELU_alpha": 1, "LRELU_alpha": 0.3, "softmax_temperature": 1}
    stamps = []
    report = model.report
    model.report = lambda: (report(), stamps.append((time.perf_counter(), time.process_time())))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.initialize(loss=c["loss"], se_hPars=hp, metrics=["accuracy"], seed=1)
        start = (time.perf_counter(), time.process_time())
        model.train(epochs, init_logs=False)
    assert len(model.embedding.batch_dtrain) == n // c["batch"]
    marks = np.array([start, *stamps])
    wall, cpu = np.diff(marks[:, 0]), np.diff(marks[:, 1])
    return float(np.median(wall)), float(np.median(cpu)), float(np.min(wall))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20, help="measured JAX epochs (median)")
    ap.add_argument("--epynn-epochs", type=int, default=5, help="measured EpyNN epochs")
    ap.add_argument("--cases", default="ab")
    ap.add_argument("--no-epynn", action="store_true")
    ap.add_argument("--quick", action="store_true", help="5 JAX epochs, 2 EpyNN epochs")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.epynn_epochs = 5, 2

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    rows = []
    for name in args.cases:
        c = CASES[name]
        X, Y = make_data(c)
        first, wall, cpu = bench_jax(c, X, Y, args.epochs)
        ep = None if args.no_epynn else bench_epynn(c, X, Y, args.epynn_epochs)
        rows.append((c["title"], ep, wall, cpu, first))

    med = statistics.median
    print(f"\n{'':<64}{'EpyNN':>9}{'epynn_jax':>11}{'reference':>11}{'x EpyNN':>9}"
          f"{'ref/ours':>10}")
    for title, ep, wall, cpu, first in rows:
        print(title)
        for label, times, k in (("  wall ms/epoch (median)", wall, 0), ("  CPU ms/epoch (median)",
                                                                         cpu, 1)):
            o, r = med(times[0]), med(times[1])
            e = ep[k] if ep is not None else None
            e_ms = f"{e * 1e3:9.1f}" if e is not None else f"{'-':>9}"
            speed = f"{e / o:9.1f}" if e is not None else f"{'-':>9}"
            print(f"{label:<64}{e_ms}{o * 1e3:11.2f}{r * 1e3:11.2f}{speed}{r / o:10.2f}")
        o, r = min(wall[0]), min(wall[1])
        e_ms = f"{ep[2] * 1e3:9.1f}" if ep is not None else f"{'-':>9}"
        speed = f"{ep[2] / o:9.1f}" if ep is not None else f"{'-':>9}"
        print(f"{'  wall ms/epoch (fastest epoch)':<64}{e_ms}{o * 1e3:11.2f}{r * 1e3:11.2f}"
              f"{speed}{r / o:10.2f}")
        print(f"{'  first call s (trace + compile + one epoch)':<64}{'':>9}{first[0]:11.2f}"
              f"{first[1]:11.2f}")
        for label, times in (("wall", wall), ("CPU", cpu)):
            o, r = med(times[2]), med(times[1])
            e = ep[0 if label == "wall" else 1] if ep is not None else None
            speed = f"{e / o:9.1f}" if e is not None else f"{'-':>9}"
            print(f"{'  fit(check_finite=False): ' + label + ' ms/epoch (median)':<64}{'':>9}"
                  f"{o * 1e3:11.2f}{'':>11}{speed}{r / o:10.2f}")
    print("\nx EpyNN = EpyNN / epynn_jax (want >= 10 for (a), >= 3 for (b)); ref/ours = "
          "reference / epynn_jax (want >= 0.95).\nCPU = process CPU time (all threads): "
          "on a shared, loaded machine it is steadier than wall time.")

if __name__ == "__main__":
    main()
