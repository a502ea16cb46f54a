"""Which convolution formulation is faster: 'patches' (im2col + matmul) or 'lax'?

Times one jitted hand-written training step (forward, backward, gradients) of a
single Convolution layer for both formulations over input channel counts, on
whatever device JAX uses, and prints the ratio. The rule in
``Convolution.resolved_impl`` ('auto') is chosen from this table.

Usage::

    PYTHONPATH=. python benchmarks/bench_conv_impl.py [--batch 256] [--size 28]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from epynn_jax.layers import Convolution


def step_fn(layer):
    def step(p, X):
        A, fc = layer.forward(p, X, None, True)
        dX, bc = layer.backward(p, fc, jnp.ones_like(A))
        g = layer.compute_gradients(p, fc, bc)
        return dX, g
    return jax.jit(step)


def best_time(fn, *args, reps: int = 20) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", default="1,3,8,16,32,64,128")
    args = ap.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    print(f"{'c':>5}{'u':>5}{'filter':>8}{'stride':>7}{'patches ms':>12}{'lax ms':>10}"
          f"{'lax/patches':>13}")
    for c in map(int, args.channels.split(",")):
        for (f, s) in ((3, 1), (4, 4)):
            u = max(16, c)
            X = jax.random.normal(jax.random.key(0), (args.batch, args.size, args.size, c))
            times = {}
            for impl in ("patches", "lax"):
                layer = Convolution(u, f, s, impl=impl).compute_shapes(X.shape[1:])
                p = layer.initialize_parameters(jax.random.key(1))
                times[impl] = best_time(step_fn(layer), p, X)
            print(f"{c:>5}{u:>5}{f'{f}x{f}':>8}{s:>7}{times['patches'] * 1e3:>12.3f}"
                  f"{times['lax'] * 1e3:>10.3f}{times['lax'] / times['patches']:>13.2f}")


if __name__ == "__main__":
    main()
