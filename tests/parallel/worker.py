"""Subprocess worker for the data-parallel tests (jax must start with the XLA flags set).

Usage: ``python worker.py OUT.npz [--devices N] [--x64] [--process I --processes P --port PORT]``.
Trains one small network (Flatten -> Dense(16, relu) -> Dropout -> Dense(2, softmax))
on fixed data for a few epochs data-parallel over every device (in multi-process
mode: every process's devices). In single-process mode it also trains on one
device, in float32 and float64, inspects the compiled epoch and provokes the
batch-size error. Writes parameters and metadata to OUT (process i of a
multi-process run writes ``OUT.i.npz``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--x64", action="store_true")
    ap.add_argument("--process", type=int, default=None)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    return ap.parse_args()


def data(np):
    rng = np.random.default_rng(0)
    X = rng.random((96, 12, 3))
    Y = np.eye(2)[rng.integers(0, 2, 96)]
    Xv = rng.random((40, 12, 3))
    Yv = np.eye(2)[rng.integers(0, 2, 40)]
    return {"dtrain": (X, Y), "dval": (Xv, Yv)}


class RowLog:
    """An array-like that records the rows each read takes (what a process reads)."""

    def __init__(self, a, np):
        self.a, self.np, self.read = a, np, []
        self.shape, self.dtype = a.shape, a.dtype

    def __getitem__(self, idx):
        if not isinstance(idx, slice):  # training batches (evaluation reads slices)
            self.read.append(self.np.asarray(idx).ravel().tolist())
        return self.a[idx]

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def main() -> int:
    args = parse()
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.devices}")
    os.environ.setdefault("EPYNN_JAX_NO_CACHE", "1")
    import jax

    if args.process is not None:
        jax.distributed.initialize(f"127.0.0.1:{args.port}", num_processes=args.processes,
                                   process_id=args.process, initialization_timeout=60)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import numpy as np

    from epynn_jax import Schedule, layers, network
    from epynn_jax.network import parallel

    def build():
        net = network.build([layers.Flatten(), layers.Dense(16, "relu"), layers.Dropout(0.25),
                             layers.Dense(2, "softmax")], (12, 3))
        return net, network.init(net, jax.random.key(0))

    def leaves(result):
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(result.params)]

    kw = dict(epochs=4, batch_size=args.batch_size, key=jax.random.key(1))
    out = {"devices": jax.device_count(), "local_devices": jax.local_device_count(),
           "processes": jax.process_count()}
    arrays = {}
    net, params = build()
    par = network.fit(net, params, data(np), mesh=jax.devices(), **kw)
    out["sharding"] = str(jax.tree_util.tree_leaves(par.params)[0].sharding.spec)
    out["history_parallel"] = par.history
    pred = network.predict(net, par.params, data(np)["dval"][0])  # replicated params
    out["predict_shape"] = list(np.shape(np.asarray(pred)))
    arrays.update({f"parallel_{i}": x for i, x in enumerate(leaves(par))})
    # streamed from the host: each process reads only its rows of every batch
    rows = RowLog(data(np)["dtrain"][0], np)
    streamed = network.fit(net, params, {"dtrain": (rows, data(np)["dtrain"][1]),
                                         "dval": data(np)["dval"]}, mesh=jax.devices(),
                           stream=network.streaming.Stream(chunk_batches=2), **kw)
    out["stream_rows"] = rows.read
    out["history_stream"] = streamed.history
    arrays.update({f"stream_{i}": x for i, x in enumerate(leaves(streamed))})
    if args.process is None:
        single = network.fit(net, params, data(np), **kw)
        out["history_single"] = single.history
        arrays.update({f"single_{i}": x for i, x in enumerate(leaves(single))})
        # what XLA compiled: per-device batches and a cross-device sum
        mesh = parallel.as_mesh(jax.devices())
        splits = network.checks.check_data(net, data(np), "MSE")
        opt = network.epynn_sgd(Schedule(), 4, 96 // args.batch_size)  # fit's (cached) one
        state = network.TrainState(tuple(params), opt.init(params), jax.random.key(1))
        state, splits = parallel.place(mesh, state, splits, "dtrain")
        hlo = network.run_epoch.lower(net, opt.update, "MSE", ("accuracy", "MSE"),
                                      args.batch_size, state, splits["dtrain"], splits,
                                      mesh=mesh).compile().as_text()
        out["all_reduce"] = "all-reduce" in hlo
        out["per_device_dot"] = f"f32[{args.batch_size // jax.device_count()},16]" in hlo
        out["full_batch_dot"] = f"f32[{args.batch_size},16]" in hlo
        # a batch size the devices cannot split
        try:
            network.fit(net, params, data(np), epochs=1, batch_size=args.batch_size + 2,
                        mesh=jax.devices())
        except ValueError as err:
            out["error"] = str(err)
        # the same comparison in float64
        jax.config.update("jax_enable_x64", True)
        net, params = build()
        par64 = network.fit(net, params, data(np), mesh=jax.devices(), **kw)
        single64 = network.fit(net, params, data(np), **kw)
        arrays.update({f"parallel64_{i}": x for i, x in enumerate(leaves(par64))})
        arrays.update({f"single64_{i}": x for i, x in enumerate(leaves(single64))})
    path = args.out if args.process is None else f"{args.out}.{args.process}.npz"
    np.savez(path, meta=json.dumps(out), **arrays)
    if args.process is not None:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
