"""Benchmark: CNN training epochs, EpyNN 1.2.13 vs epynn_jax (both conv formulations)
vs a minimal pure-JAX reference.

Usage::

    PYTHONPATH=. python benchmarks/bench_image.py                 # CPU-sized (default)
    PYTHONPATH=. python benchmarks/bench_image.py --size large    # bigger data, for a GPU
    PYTHONPATH=. python benchmarks/bench_image.py --skip-epynn --epochs 20

Models (MSE loss, plain SGD, batch 32 unless --batch; the remainder batch is dropped as
EpyNN does):

- ``dummy_image``: Convolution(6, (4, 4)) [stride 4] -> Pooling((2, 2)) -> Flatten ->
  Dense(2, softmax) on (500, 28, 28, 1) images (x10 with --size large);
- ``mnist_s1``: Convolution(16, (3, 3), strides=1) -> Pooling((2, 2)) -> Flatten ->
  Dense(10, softmax) on (2000, 28, 28, 1) (x10 with --size large).

Variants, each in its own process (so peak memory is its own):

- ``epynn``: EpyNN's own ``model.train`` (``OPENBLAS_NUM_THREADS=1``, stdout
  suppressed). Its epoch also evaluates the training set (EpyNN always does), so
  ``epynn-loop`` times its batch loop alone (forward, loss', backward+update);
- ``jax-lax`` / ``jax-patches``: epynn_jax layers with the hand-written backward, one
  jitted epoch = ``lax.scan`` over the batches of forward -> loss' -> backward ->
  compute_gradients -> SGD;
- ``jax-fit``: ``network.run_epoch``, the compiled epoch of ``network.fit`` (shuffle,
  scan of train steps through optax SGD, then evaluation of the training set as
  EpyNN's epoch does), conv formulation ``'auto'``; compare it with ``epynn``;
- ``reference``: the same network written directly in JAX (``lax.conv``,
  ``reduce_window`` max, dense, softmax), ``jax.grad`` of the summed loss, the
  epoch one ``lax.scan``.

Reported: the best (min) and median seconds per epoch over the timed epochs (the ratios
use the best, which is robust to other load on a shared machine), samples per second, the
first (compiling) epoch's extra time, and peak memory (max RSS of the process; on GPU also
the device's peak bytes in use).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "dummy_image": {"n": 500, "classes": 2, "conv": (6, (4, 4), None), "lr": 1e-3},
    "mnist_s1": {"n": 2000, "classes": 10, "conv": (16, (3, 3), 1), "lr": 1e-3},
}
VARIANTS = ("epynn", "epynn-loop", "jax-fit", "jax-lax", "jax-patches", "reference")


def make_data(case: str, size: str, seed: int = 0):
    """Images with 16 grey tones scaled to [0, 1] (like dummy_image), one-hot labels."""
    import numpy as np

    spec = CASES[case]
    n = spec["n"] * (10 if size == "large" else 1)
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 16, (n, 28, 28, 1)).astype(np.float32) / 15
    Y = np.eye(spec["classes"], dtype=np.float32)[rng.integers(0, spec["classes"], n)]
    return X, Y


def peak_rss_mib() -> float:
    """Max resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- EpyNN ------------------------------------------------------------------------------


def run_epynn(case: str, X, Y, batch: int, epochs: int, loop_only: bool) -> dict:
    import numpy as np

    if not hasattr(np, "VisibleDeprecationWarning"):
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
    from epynn.commons.maths import softmax
    from epynn.convolution.models import Convolution
    from epynn.dense.models import Dense
    from epynn.embedding.models import Embedding
    from epynn.flatten.models import Flatten
    from epynn.network.models import EpyNN
    from epynn.pooling.models import Pooling
    from epynn.settings import se_hPars

    spec = CASES[case]
    u, fs, st = spec["conv"]
    st = fs if st is None else (st, st)  # EpyNN ignores an int stride: pass a tuple
    hp = dict(se_hPars, learning_rate=spec["lr"])
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        emb = Embedding(X_data=X.astype(np.float64), Y_data=Y, relative_size=(1, 0, 0),
                        batch_size=batch)
        layers = [emb, Convolution(u, fs, st), Pooling((2, 2)), Flatten(),
                  Dense(spec["classes"], softmax)]
        model = EpyNN(layers=layers, name="bench")
        model.initialize(loss="MSE", seed=1, se_hPars=hp, end="\r")
        if loop_only:
            model.epochs = epochs
            model.train(epochs=1, init_logs=False)  # sets up lrate schedules
            times = []
            for _ in range(epochs):
                emb.training_batches()
                t = time.perf_counter()
                for b in emb.batch_dtrain:
                    A = model.forward(b.X)
                    model.backward(model.training_loss(b.Y, A, deriv=True))
                times.append(time.perf_counter() - t)
        else:
            times = []
            for _ in range(epochs):  # each call runs one epoch (batches + evaluation)
                t = time.perf_counter()
                model.train(epochs=1, init_logs=False)
                times.append(time.perf_counter() - t)
    return {"epoch_s": min(times), "median_s": statistics.median(times), "compile_s": None}


# -- epynn_jax ----------------------------------------------------------------------------


def _jax_layers(case: str, impl: str):
    from epynn_jax.layers import Convolution, Dense, Flatten, Pooling

    spec = CASES[case]
    u, fs, st = spec["conv"]
    return (Convolution(u, fs, st, impl=impl), Pooling((2, 2)), Flatten(),
            Dense(spec["classes"], "softmax"))


def _build(layers, shape):
    built = []
    for layer in layers:
        layer = layer.compute_shapes(shape)
        shape = layer.output_shape
        built.append(layer)
    return tuple(built)


def epynn_jax_epoch(layers, lr: float):
    """Jitted epoch: lax.scan over batches of the hand-written forward/backward + SGD."""
    import jax

    from epynn_jax.layers.base import gradients_to_params
    from epynn_jax.maths import losses

    def step(params, batch):
        X, Y = batch
        A, fcs = X, []
        for layer, p in zip(layers, params, strict=True):
            A, fc = layer.forward(p, A, None, True)
            fcs.append(fc)
        dA = losses.loss_deriv("MSE", Y, A)
        new = [None] * len(layers)
        for i in reversed(range(len(layers))):
            dA, bc = layers[i].backward(params[i], fcs[i], dA)
            g = gradients_to_params(params[i], layers[i].compute_gradients(params[i], fcs[i], bc))
            new[i] = {k: v - lr * g[k] for k, v in params[i].items()}
        return tuple(new), losses.loss("MSE", Y, A).mean()

    @jax.jit
    def epoch(params, Xb, Yb):
        return jax.lax.scan(step, params, (Xb, Yb))

    return epoch


def reference_epoch(lr: float, strides):
    """A minimal pure-JAX CNN (same maths), gradients by jax.grad of the summed loss."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def forward(params, X):
        pc, _, _, pd = params
        Z = lax.conv_general_dilated(X, pc["W"], strides, "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + pc["b"]
        A = jnp.maximum(Z, 0)
        A = lax.reduce_window(A, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        A = A.reshape(A.shape[0], -1)
        return jax.nn.softmax(A @ pd["W"] + pd["b"], axis=-1)

    def loss(params, X, Y):
        A = forward(params, X)
        return jnp.sum(jnp.mean((Y - A) ** 2, axis=-1)), A

    def step(params, batch):
        (value, A), g = jax.value_and_grad(loss, has_aux=True)(params, *batch)
        return jax.tree.map(lambda p, d: p - lr * d, params, g), value / A.shape[0]

    @jax.jit
    def epoch(params, Xb, Yb):
        return lax.scan(step, params, (Xb, Yb))

    return epoch


def fit_epoch(layers, lr: float, batch: int, X):
    """network.fit's compiled epoch (shuffle, optax SGD steps, evaluation of dtrain)."""
    import jax

    from epynn_jax import network
    from epynn_jax.maths.schedules import Schedule

    net = network.build([dataclasses.replace(ly, input_shape=None) for ly in layers],
                        X.shape[1:])
    opt = network.epynn_sgd(Schedule(learning_rate=lr), 1, X.shape[0] // batch)
    metric_names = ("accuracy", "MSE")
    box = {}

    def epoch(params, X, Y):
        if "state" not in box:
            box["state"] = network.TrainState(params, opt.init(params), jax.random.key(0))
        box["state"], costs, scores = network.run_epoch(
            net, opt.update, "MSE", metric_names, batch, box["state"], (X, Y), {"dtrain": (X, Y)})
        return box["state"].params, costs

    return epoch


def run_jax(case: str, variant: str, X, Y, batch: int, epochs: int) -> dict:
    import jax
    import jax.numpy as jnp

    spec = CASES[case]
    impl = {"jax-lax": "lax", "jax-patches": "patches"}.get(variant, "auto")
    layers = _build(_jax_layers(case, impl), X.shape[1:])
    params = tuple(layer.initialize_parameters(jax.random.key(i)) for i, layer in
                   enumerate(layers))
    nb = X.shape[0] // batch
    if variant == "reference":
        epoch = reference_epoch(spec["lr"], layers[0].strides)
    elif variant == "jax-fit":
        epoch = fit_epoch(layers, spec["lr"], batch, X)
    else:
        epoch = epynn_jax_epoch(layers, spec["lr"])
    if variant == "jax-fit":  # the whole set; run_epoch shuffles and batches it
        Xb, Yb = jnp.asarray(X), jnp.asarray(Y)
    else:
        Xb = jnp.asarray(X[:nb * batch].reshape(nb, batch, *X.shape[1:]))
        Yb = jnp.asarray(Y[:nb * batch].reshape(nb, batch, *Y.shape[1:]))
    t = time.perf_counter()
    params, costs = epoch(params, Xb, Yb)
    jax.block_until_ready((params, costs))
    first = time.perf_counter() - t
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        params, costs = epoch(params, Xb, Yb)
        jax.block_until_ready((params, costs))
        times.append(time.perf_counter() - t)
    best = min(times)
    out = {"epoch_s": best, "median_s": statistics.median(times), "compile_s": first - best,
           "final_cost": float(costs[-1])}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
    return out


# -- driver -------------------------------------------------------------------------------


def worker(args) -> None:
    X, Y = make_data(args.case, args.size)
    if args.variant.startswith("epynn"):
        res = run_epynn(args.case, X, Y, args.batch, args.epynn_epochs,
                        args.variant == "epynn-loop")
    else:
        res = run_jax(args.case, args.variant, X, Y, args.batch, args.epochs)
    res.update(case=args.case, variant=args.variant, n=X.shape[0], rss_mib=peak_rss_mib())
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=("small", "large"), default="small")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=10, help="timed JAX epochs")
    ap.add_argument("--epynn-epochs", type=int, default=3, help="timed EpyNN epochs")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--skip-epynn", action="store_true")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        return worker(args)

    import jax

    print(f"jax {jax.__version__}, devices: {jax.devices()}, backend: {jax.default_backend()}")
    print(f"size {args.size}, batch {args.batch}, cpu count {os.cpu_count()}\n")
    variants = [v for v in args.variants.split(",")
                if not (args.skip_epynn and v.startswith("epynn"))]
    rows = []
    for case in args.cases.split(","):
        for variant in variants:
            env = dict(os.environ)
            if variant.startswith("epynn"):
                env["OPENBLAS_NUM_THREADS"] = "1"
            cmd = [sys.executable, __file__, "--case", case, "--variant", variant,
                   "--size", args.size, "--batch", str(args.batch), "--epochs",
                   str(args.epochs), "--epynn-epochs", str(args.epynn_epochs)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(f"{case} {variant}: FAILED\n{proc.stderr[-2000:]}")
                continue
            rows.append(json.loads(lines[-1][7:]))
            print(_row(rows[-1]), flush=True)
    print()
    print(_table(rows))


def _row(r: dict) -> str:
    return f"  done {r['case']:<12} {r['variant']:<12} {r['epoch_s'] * 1e3:9.2f} ms/epoch"


def _table(rows: list[dict]) -> str:
    head = (f"{'case':<12} {'variant':<12} {'n':>6} {'best ms':>9} {'median ms':>10} "
            f"{'samples/s':>10} {'vs epynn':>9} {'vs loop':>8} {'vs ref':>7} "
            f"{'compile s':>9} {'RSS MiB':>8} {'dev MiB':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        same = {x["variant"]: x for x in rows if x["case"] == r["case"]}

        def ratio(name, r=r, same=same):
            return (f"{same[name]['epoch_s'] / r['epoch_s']:.2f}x" if name in same else "-")

        comp = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        dev = f"{r['device_peak_mib']:.0f}" if "device_peak_mib" in r else "-"
        lines.append(
            f"{r['case']:<12} {r['variant']:<12} {r['n']:>6} {r['epoch_s'] * 1e3:>9.2f} "
            f"{r['median_s'] * 1e3:>10.2f} {r['n'] / r['epoch_s']:>10.0f} "
            f"{ratio('epynn'):>9} {ratio('epynn-loop'):>8} {ratio('reference'):>7} "
            f"{comp:>9} {r['rss_mib']:>8.0f} {dev:>8}")
    lines.append("vs X = X's best epoch time / this one's (higher is faster). Compare jax-fit "
                 "(batches + evaluation)\nwith epynn, the jax-* rows (batches only) with "
                 "epynn-loop and reference (target >= 0.95x).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
