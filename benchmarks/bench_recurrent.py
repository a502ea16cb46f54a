"""Training speed of the recurrent layers: EpyNN 1.2.13 vs epynn_jax vs a pure-JAX reference.

Run as ``python benchmarks/bench_recurrent.py`` (``--help`` for options). Not a test.

For each cell in RNN(10), LSTM(10), GRU(10), followed by Dense(2, softmax), on
random inputs (N, 128, 1) with one-hot 2-class labels, split 2:1 as EpyNN does
(683 training and 341 validation samples), batch 32 (21 batches, remainder
dropped), loss MSE (summed over samples), plain SGD (lr 0.1), every epoch
followed by accuracy and MSE on both sets:

(a) EpyNN 1.2.13: its own ``EpyNN`` model with an ``Embedding``, trained one
    epoch at a time with ``init_logs=False`` and stdout suppressed;
(b) epynn_jax: ``network.fit`` (one compiled call per epoch, hand-written BPTT);
(c) a minimal pure-JAX reference written here: ``jax.grad`` of the summed loss,
    the whole epoch (shuffle, scan over batches, evaluation) one jitted call.

(b) and (c) run interleaved, epoch by epoch, so that both see the same load;
warm-up epochs are excluded. Throughput is reported for the best epoch (the
least disturbed by other processes) and, in brackets, the median one. Compile
time (trace, lower and compile of one epoch) is reported apart. The RNN is
clipped to a global norm of 0.25 in all three (EpyNN's default). Then the
compile time of (b) at 128 vs 1,024 steps. EpyNN runs with
``OPENBLAS_NUM_THREADS=1`` (set before NumPy loads).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from epynn_jax import network  # noqa: E402
from epynn_jax.layers import GRU, LSTM, RNN, Dense  # noqa: E402

CELLS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
UNITS, LR, BATCH = 10, 0.1, 32


def make_data(n: int = 1024, steps: int = 128, seed: int = 0):
    """Random X (n, steps, 1) and one-hot Y (n, 2), split 2:1 in order (EpyNN's rule)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, steps, 1))
    Y = np.eye(2)[rng.integers(0, 2, n)]
    n_train = round(2 / 3 * n)
    return X, Y, {"dtrain": (X[:n_train], Y[:n_train]), "dval": (X[n_train:], Y[n_train:])}


# -- (a) EpyNN ------------------------------------------------------------------------


def bench_epynn(cell: str, X, Y, epochs: int) -> float:
    """Seconds of each EpyNN epoch (training and its per-epoch evaluation)."""
    if not hasattr(np, "VisibleDeprecationWarning"):  # EpyNN 1.2.13 on NumPy 2
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
    from epynn.commons.maths import softmax
    from epynn.dense.models import Dense as EDense
    from epynn.embedding.models import Embedding
    from epynn.gru.models import GRU as EGRU
    from epynn.lstm.models import LSTM as ELSTM
    from epynn.network.models import EpyNN
    from epynn.rnn.models import RNN as ERNN

    ecell = {"RNN": ERNN, "LSTM": ELSTM, "GRU": EGRU}[cell]
    hpars = {"learning_rate": LR, "schedule": "steady", "softmax_temperature": 1,
             "LRELU_alpha": 0.3, "ELU_alpha": 1, "decay_k": 0, "cycle_epochs": 0,
             "cycle_descent": 0}
    times = []
    with contextlib.redirect_stdout(io.StringIO()):  # EpyNN always prints
        emb = Embedding(X_data=X, Y_data=Y, relative_size=(2, 1, 0), batch_size=BATCH)
        model = EpyNN(layers=[emb, ecell(UNITS), EDense(2, softmax)], name=f"bench_{cell}")
        model.initialize(loss="MSE", seed=1, se_hPars=hpars, metrics=["accuracy"], end="\r")
        for _ in range(epochs):
            t = time.perf_counter()
            model.train(epochs=1, init_logs=False)
            times.append(time.perf_counter() - t)
    return times


# -- (b) epynn_jax ----------------------------------------------------------------------


def ours_setup(cell: str, steps: int = 128):
    net = network.build([CELLS[cell](UNITS), Dense(2, "softmax")], (steps, 1))
    return net, network.init(net, jax.random.key(1)), optax.sgd(LR)


def compile_ours(cell: str, data: dict, steps: int = 128) -> float:
    """Seconds to trace, lower and compile the epoch that ``network.fit`` runs."""
    net, params, opt = ours_setup(cell, steps)
    splits = network.checks.check_data(net, data, "MSE")
    state = network.TrainState(tuple(params), opt.init(params), jax.random.key(2))
    t = time.perf_counter()
    network.run_epoch.lower(net, opt.update, "MSE", ("accuracy", "MSE"), BATCH, state,
                             splits["dtrain"], splits).compile()
    return time.perf_counter() - t


# -- (c) the pure-JAX reference ---------------------------------------------------------


def ref_init(cell: str, key, e: int = 1, u: int = UNITS) -> dict:
    """Gate-stacked parameters: W (e, k u), V (u, k u), b (1, k u); Dense Wd, bd."""
    k = {"RNN": 1, "LSTM": 4, "GRU": 3}[cell]
    kW, kV, kd = jax.random.split(key, 3)
    return {"W": jax.random.normal(kW, (e, k * u)) * 0.3,
            "V": jax.random.normal(kV, (u, k * u)) * 0.3,
            "b": jnp.zeros((1, k * u)),
            "Wd": jax.random.normal(kd, (u, 2)) * 0.3, "bd": jnp.zeros((1, 2))}


def ref_last_state(cell: str, p: dict, X):
    """The cell's last hidden state, written the plain way (one scan over time)."""
    u = p["V"].shape[0]
    XW = jnp.einsum("mse,ek->smk", X, p["W"]) + p["b"]
    h0 = jnp.zeros((X.shape[0], u))

    if cell == "RNN":
        def step(h, xw):
            h = jnp.tanh(xw + h @ p["V"])
            return h, None
        h, _ = jax.lax.scan(step, h0, XW)
    elif cell == "LSTM":
        def step(hc, xw):
            h, c = hc
            f, i, g, o = jnp.split(xw + h @ p["V"], 4, axis=-1)
            c = c * jax.nn.sigmoid(f) + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None
        (h, _), _ = jax.lax.scan(step, (h0, h0), XW)
    else:
        def step(h, xw):
            zr = xw[:, :2 * u] + h @ p["V"][:, :2 * u]
            z, r = jax.nn.sigmoid(zr[:, :u]), jax.nn.sigmoid(zr[:, u:])
            hh = jnp.tanh(xw[:, 2 * u:] + (r * h) @ p["V"][:, 2 * u:])
            return z * h + (1 - z) * hh, None
        h, _ = jax.lax.scan(step, h0, XW)
    return h


def ref_forward(cell, p, X):
    return jax.nn.softmax(ref_last_state(cell, p, X) @ p["Wd"] + p["bd"], axis=-1)


def ref_loss(cell, p, X, Y):
    """Summed per-sample MSE (EpyNN's objective)."""
    return jnp.sum(jnp.mean((Y - ref_forward(cell, p, X)) ** 2, axis=1))


def ref_clip(g: dict, keys=("W", "V", "b")) -> dict:
    """EpyNN's clipping of the recurrent layer's gradients to a global norm of 0.25."""
    total = jnp.sqrt(sum(jnp.sum((g[k] + 1e-16) ** 2) for k in keys))
    coef = 0.25 / (total + 1e-16)
    return {k: jnp.where(coef < 1, v * coef, v) if k in keys else v for k, v in g.items()}


def make_ref_epoch(cell: str):
    @jax.jit
    def epoch(p, key, Xt, Yt, Xv, Yv):
        n_batches = Xt.shape[0] // BATCH
        idx = jax.random.permutation(key, Xt.shape[0])[: n_batches * BATCH]
        idx = idx.reshape(n_batches, BATCH)

        def step(p, b):
            g = jax.grad(lambda p: ref_loss(cell, p, Xt[b], Yt[b]))(p)
            g = ref_clip(g) if cell == "RNN" else g
            return jax.tree.map(lambda a, d: a - LR * d, p, g), None

        p, _ = jax.lax.scan(step, p, idx)
        scores = {}
        for name, (X, Y) in {"dtrain": (Xt, Yt), "dval": (Xv, Yv)}.items():
            A = ref_forward(cell, p, X)
            scores[name] = (jnp.mean(jnp.argmax(A, 1) == jnp.argmax(Y, 1)),
                            jnp.mean(jnp.mean((Y - A) ** 2, axis=1)))
        return p, scores

    return epoch


def compile_reference(cell: str, data: dict) -> float:
    """Seconds to trace, lower and compile the reference epoch."""
    p = ref_init(cell, jax.random.key(1))
    arrays = [jnp.asarray(a, jnp.float32) for xy in data.values() for a in xy]
    t = time.perf_counter()
    make_ref_epoch(cell).lower(p, jax.random.key(2), *arrays).compile()
    return time.perf_counter() - t


def bench_jax(cell: str, data: dict, epochs: int):
    """Seconds per epoch of (b) ``network.fit`` and (c) the reference, interleaved.

    Each of fit's epochs is followed (in a fit callback) by one reference epoch,
    so both see the same machine load. Warm-up epochs are excluded. Returns
    ``(ours_times, reference_times)``, lists of seconds.
    """
    net, params, opt = ours_setup(cell)
    epoch = make_ref_epoch(cell)
    p = ref_init(cell, jax.random.key(1))
    arrays = [jnp.asarray(a, jnp.float32) for xy in data.values() for a in xy]
    keys = iter(jax.random.split(jax.random.key(3), epochs + 2))
    ours_t, ref_t, last = [], [], []

    def ref_epoch():
        nonlocal p
        t = time.perf_counter()
        p, scores = epoch(p, next(keys), *arrays)
        jax.device_get(scores)
        return time.perf_counter() - t

    def interleave(i, history):
        if last:
            ours_t.append(time.perf_counter() - last[-1])
        ref_t.append(ref_epoch())
        last.append(time.perf_counter())

    def fit(n, callbacks=()):
        return network.fit(net, params, data, epochs=n, loss="MSE", batch_size=BATCH,
                           optimizer=opt, key=jax.random.key(2), callbacks=callbacks)

    fit(1)  # warm-up (compiles)
    ref_epoch()
    fit(epochs + 1, callbacks=[interleave])
    return ours_t, ref_t[1:]


# -- main ---------------------------------------------------------------------------------


def rate(times) -> tuple[float, float]:
    """(best, median) epochs per second."""
    return 1 / min(times), 1 / statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12, help="timed epochs for (b) and (c)")
    ap.add_argument("--epynn-epochs", type=int, default=3, help="timed epochs for EpyNN")
    ap.add_argument("--cells", default="RNN,LSTM,GRU")
    ap.add_argument("--skip-epynn", action="store_true")
    ap.add_argument("--skip-steps", action="store_true", help="skip the 1,024-step compile test")
    args = ap.parse_args(argv)
    cells = args.cells.split(",")

    X, Y, data = make_data()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; data dtrain "
          f"{data['dtrain'][0].shape}, dval {data['dval'][0].shape}; batch {BATCH}; "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print("epochs/s: best epoch (median epoch in brackets); compile: trace + lower + compile")
    header = (f"{'cell':<6}{'(a) EpyNN':>16}{'(b) epynn_jax':>18}{'(c) pure JAX':>18}"
              f"{'b/a':>13}{'b/c':>14}{'compile b':>11}{'compile c':>11}")
    print(header)
    print("-" * len(header))
    for cell in cells:
        e = (float("nan"),) * 2 if args.skip_epynn else rate(
            bench_epynn(cell, X, Y, args.epynn_epochs))
        ours_t, ref_t = bench_jax(cell, data, args.epochs)
        b, c = rate(ours_t), rate(ref_t)
        cb, cc = compile_ours(cell, data), compile_reference(cell, data)
        print(f"{cell:<6}{e[0]:>7.2f} ({e[1]:>6.2f}){b[0]:>9.1f} ({b[1]:>6.1f})"
              f"{c[0]:>9.1f} ({c[1]:>6.1f}){b[0] / e[0]:>6.1f}x ({b[1] / e[1]:>4.1f}x)"
              f"{b[0] / c[0]:>6.2f}x ({b[1] / c[1]:>4.2f}x){cb:>10.2f}s{cc:>10.2f}s", flush=True)

    if not args.skip_steps:
        print("\nepynn_jax: compile time of fit's epoch vs steps (trace + lower + compile)")
        print(f"{'cell':<6}{'128 steps':>11}{'1024 steps':>12}{'ratio':>8}")
        for cell in cells:
            c = [compile_ours(cell, make_data(n=96, steps=steps)[2], steps)
                 for steps in (128, 1024)]
            print(f"{cell:<6}{c[0]:>10.2f}s{c[1]:>11.2f}s{c[1] / c[0]:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
