"""epynn_jax against Flax, Equinox and PyTorch on the suite's six workloads (for a GPU).

Run from the repository root::

    python -m benchmarks.gpu_peers                  # GPU: sizes large and xlarge, <= 8 min
    python -m benchmarks.gpu_peers --quick          # any device: tiny sizes, 2 rounds (a test)
    python -m benchmarks.gpu_peers --impls functional torch --sizes large --json out.json

Rows (implementation x precision policy), every one training the workloads of
``benchmarks.suite.WORKLOADS`` for one EpyNN epoch (shuffle, the ``n_train //
batch`` training batches, then an evaluation of both splits, the metrics fetched):

- ``functional``: ``network.run_epoch`` (as ``suite.py``'s functional column), under
  ``policy='float32'`` (the default policy) and ``policy='bfloat16'`` (mixed
  precision, ``docs/mixed-precision.md``);
- ``facade``: ``epynn_jax.compat`` driven exactly like EpyNN (``model.train``), float32;
- ``flax``, ``equinox``, ``torch``: ``benchmarks/peers.py`` (float32 and their own
  bfloat16 mixed precision); a peer whose package is missing is skipped with a note.

Timing: all rows of one (size, workload) cell run in ONE process, round-robin (the
order reversed every round), each timing a few consecutive epochs (enough for about
50 ms on an accelerator), so that every ratio is paired: "vs best peer" is the
median over rounds of (this row's time / the fastest peer's time, same policy,
same round; the fastest peer: the lowest median). Milliseconds per epoch: the best
and the median timing.

FLOPs per epoch: ``suite.epoch_flops`` (see :func:`epoch_flops`); "% f32 peak" and
"% bf16 peak" divide FLOPs / best epoch time by the float32 and the bfloat16
matmul rate measured in the same run (``suite.task_peak``: one large jitted matmul).

The cells run in worker processes (one worker for as many cells as it finishes; a
crash or a hang costs one cell, the next worker goes on), under a time budget
(``--time-budget``, default 420 s): cells left when it is spent are listed as
skipped. ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import peers, suite

ROWS = (("functional", "float32"), ("functional", "bfloat16"), ("facade", "float32"),
        ("flax", "float32"), ("flax", "bfloat16"), ("equinox", "float32"),
        ("equinox", "bfloat16"), ("torch", "float32"), ("torch", "bfloat16"))
IMPLS = ("functional", "facade", *peers.PEERS)
LABELS = {"functional": "epynn_jax functional", "facade": "epynn_jax facade",
          "flax": "Flax NNX", "equinox": "Equinox", "torch": "PyTorch"}
# Sizes beyond suite.SIZES (which gpu_peers also takes: default, large). Each scales the
# samples (n, n_train), the batch and the layer widths (width, hidden, filters) of
# every workload, and may fix other keys:
# - quick: a smoke test on any device (CPU test): 96 samples, 16-step sequences, 16x16 images
# - xlarge: 64x the samples, 32x the batch (1,024) and 8x the widths (Dense 512 units,
#   recurrent 80 units, 48 filters): 42 batches per epoch (CNN: 31), each product large
#   enough to occupy a GPU better than --size large's batch of 256 and 10 units
EXTRA_SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(fixed=dict(n=96, n_train=64, batch=16, steps=16, side=16)),
    "xlarge": dict(samples=64, batch=32, widths=8),
}
SIZE_CHOICES = (*suite.SIZES, *EXTRA_SIZES)
WIDTH_KEYS = ("width", "hidden", "filters")
TIME_BUDGET = 420.0  # seconds: the whole run (peaks + every cell) ends within about 8 min
TIMING_TARGET_S = 0.05  # on an accelerator, one timing runs this long at least (several epochs)
MAX_CHUNK = 10  # epochs per timing at most
RESERVE_S = 5.0  # a cell is not started with less budget left than this


def sized(cfg: dict, size: str) -> dict:
    """A ``suite.WORKLOADS`` entry scaled to ``size`` (suite's sizes, or quick / xlarge)."""
    if size in suite.SIZES:
        return suite.sized(cfg, size)
    spec = EXTRA_SIZES[size]
    out = dict(cfg)
    s, b, w = spec.get("samples", 1), spec.get("batch", 1), spec.get("widths", 1)
    out.update(n=cfg["n"] * s, n_train=cfg["n_train"] * s, batch=cfg["batch"] * b)
    out.update({k: cfg[k] * w for k in WIDTH_KEYS if k in cfg})
    out.update({k: v for k, v in spec.get("fixed", {}).items() if k in cfg})
    return out


def epoch_flops(cfg: dict) -> int:
    """Matmul/convolution FLOPs of one epoch (``suite.epoch_flops``).

    With F = ``suite.forward_flops(cfg)``, the FLOPs of one sample's forward pass
    (2·m·n per product of an m-vector by an (m, n) matrix, every time step of a
    recurrent layer counted: ``steps · gates · 2 (features·hidden + hidden²)``;
    the convolution as ``2 · out_rows · out_cols · k² · filters``; the output Dense
    ``2 · units · 2``), B = ``n_train // batch`` batches of ``batch`` samples and
    ``n`` samples evaluated::

        epoch FLOPs = 3 · F · B · batch  +  F · n

    3·F per trained sample: the forward and twice its products in the backward
    (the gradient of the weights and of the inputs; the first layer's input
    gradient is counted although nobody computes it, so the fraction of the peak
    errs high by at most a third). Element-wise work (activations, gates, the
    softmax, the loss, SGD) is not counted.
    """
    return suite.epoch_flops(cfg)


# == worker side ===========================================================================


def _data(cfg: dict):
    import numpy as np

    X, Y = suite.make_data(cfg)
    return {k: (x.astype(np.float32), y.astype(np.float32))
            for k, (x, y) in suite._split(cfg, X, Y).items()}


def _functional_runner(cfg: dict, policy: str):
    """``(first, epochs)`` of ``network.run_epoch`` under ``policy`` (both splits evaluated
    and the scores fetched, as ``fit`` does at every epoch)."""
    from epynn_jax import network
    from epynn_jax.network.precision import as_policy

    net, opt, batch, state, splits = suite.functional_setup(cfg)
    net = dataclasses.replace(net, policy=as_policy(policy))
    box = [state]

    def epochs(k: int) -> int:
        for _ in range(k):
            box[0], _, scores = network.run_epoch(net, opt.update, "MSE", ("accuracy", "MSE"),
                                                  batch, box[0], splits["dtrain"], splits)
            network.epoch.fetch(scores)
        return k

    return (lambda: epochs(1)), epochs


def _peer_runner(impl: str, cfg: dict, policy: str):
    state, epoch = peers.make_epoch(impl, cfg, policy, _data(cfg))
    box = [state]

    def epochs(k: int) -> int:
        for _ in range(k):
            box[0], scores = epoch(box[0])
            if not all(math.isfinite(x) for v in scores.values() for x in v):
                raise FloatingPointError(f"{impl} ({policy}): non-finite scores {scores}")
        return k

    epochs.note = lambda: peers.describe(impl, box[0])  # read by run_cell after the rounds
    return (lambda: epochs(1)), epochs


def make_runner(impl: str, cfg: dict, policy: str):
    """``(first, epochs)``: ``first()`` runs the first epoch (tracing and compilation
    included), ``epochs(k)`` runs ``k`` more and returns how many epochs it ran."""
    if impl == "functional":
        return _functional_runner(cfg, policy)
    if impl == "facade":
        if policy != "float32":
            raise ValueError("the facade trains in float32 only")
        return suite.epynn_runner(cfg, "epynn_jax.compat")
    return _peer_runner(impl, cfg, policy)


def _start(impl: str, cfg: dict, policy: str):
    """Build one row's runner and run its first epoch: ``(epochs, first_s)``."""
    first, epochs = make_runner(impl, cfg, policy)
    t0 = time.perf_counter()
    first()
    return epochs, time.perf_counter() - t0


def _start_rows(cell: dict) -> dict[str, Any]:
    """``{row key: (epochs, first_s) or the exception}``, in the cell's row order.

    With ``compile_threads`` > 1 the JAX rows (everything but torch) build and run
    their first epoch in that many threads at once (XLA compiles without holding
    the GIL: on a many-core GPU host the cell's compilations overlap); the torch
    rows follow one by one, so that cuDNN's autotuning has the device alone.
    """
    cfg, threads = cell["cfg"], cell.get("compile_threads", 1)
    jobs = [(f"{impl}/{policy}", impl, policy) for impl, policy in cell["rows"]]
    out: dict[str, Any] = {}
    together = [j for j in jobs if j[1] != "torch"] if threads > 1 else []
    if together:
        with ThreadPoolExecutor(threads) as pool:
            futures = {key: pool.submit(_start, impl, cfg, policy)
                       for key, impl, policy in together}
            for key, future in futures.items():
                try:
                    out[key] = future.result()
                except Exception as err:  # noqa: BLE001 - reported with the row
                    out[key] = err
    for key, impl, policy in jobs:
        if key not in out:
            try:
                out[key] = _start(impl, cfg, policy)
            except Exception as err:  # noqa: BLE001 - reported with the row
                out[key] = err
    return {key: out[key] for key, _, _ in jobs}


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err)[:300]}"


def run_cell(cell: dict, deadline: float) -> dict:
    """Every row of one (size, workload) cell in this process, timed round-robin.

    Each row: its first epoch (``first_call_s``; see :func:`_start_rows` for
    ``compile_threads``), one more to pick its chunk (epochs per timing:
    ``TIMING_TARGET_S`` worth, at most ``MAX_CHUNK``; 1 with ``quick``), then
    rounds: every row runs one chunk, the order reversed every round. At least
    ``min_rounds`` rounds, more until the cell's ``seconds`` or the ``deadline`` is
    reached (at most ``max_rounds``). A row that fails is reported with its error and
    left out of the rounds.
    """
    start = time.perf_counter()
    rows: dict[str, dict] = {}
    runners = {}
    for key, started in _start_rows(cell).items():
        if isinstance(started, BaseException):
            rows[key] = {"error": _error(started)}
            continue
        epochs, first_s = started
        try:
            t0 = time.perf_counter()
            ran = epochs(1)
            warm = (time.perf_counter() - t0) / max(ran, 1)
        except Exception as err:  # noqa: BLE001 - one row's failure is reported, not fatal
            rows[key] = {"error": _error(err)}
            continue
        chunk = 1 if cell["quick"] else max(1, min(MAX_CHUNK, math.ceil(TIMING_TARGET_S / warm)))
        rows[key] = {"first_call_s": first_s, "chunk": chunk, "timings_s": [],
                     "compile_threads": cell.get("compile_threads", 1)}
        runners[key] = epochs
    order = list(runners)
    rounds = 0
    while order and (rounds < cell["min_rounds"] or (
            time.perf_counter() - start < cell["seconds"] and time.time() < deadline
            and rounds < cell["max_rounds"])):
        for key in (order if rounds % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            try:
                ran = runners[key](rows[key]["chunk"])
            except Exception as err:  # noqa: BLE001 - e.g. non-finite scores: drop the row
                rows[key] = {"error": f"round {rounds}: {_error(err)}"}
                continue
            rows[key]["timings_s"].append((time.perf_counter() - t0) / max(ran, 1))
        order = [key for key in order if "error" not in rows[key]]
        rounds += 1
    for key in order:
        t = rows[key]["timings_s"]
        rows[key].update(epoch_s=min(t), epoch_median_s=statistics.median(t), rounds=rounds)
        note = getattr(runners[key], "note", None)
        if note and note():
            rows[key]["note"] = note()
    return {"rows": rows, "cell_s": time.perf_counter() - start}


def task_peaks(task: dict) -> dict:
    """The float32 and bfloat16 matmul rates (``suite.task_peak``), the libraries' versions."""
    out = {}
    for dtype in ("float32", "bfloat16"):
        out[dtype] = suite.task_peak({**task, "dtype": dtype})
    out["versions"] = peers.versions()
    return out


def worker_main(task_json: str) -> int:
    """Run the peaks (if asked) then the cells in order, one ``RESULT`` line each."""
    task = json.loads(task_json)
    if task.get("peak"):
        try:
            res = task_peaks(task["peak"])
        except Exception as err:  # noqa: BLE001 - reported, the cells still run
            res = {"error": f"{type(err).__name__}: {err}"}
        print("RESULT " + json.dumps({"id": "peaks", **res}), flush=True)
    cells = task["cells"]
    for i, cell in enumerate(cells):
        left = task["deadline"] - time.time()
        if left < RESERVE_S:
            res = {"skipped": "time budget spent"}
        else:
            # this cell's share of what is left; compilation comes out of it first
            cell = {**cell, "seconds": min(cell["seconds"], left / (len(cells) - i))}
            res = run_cell(cell, task["deadline"])
        print("RESULT " + json.dumps({"id": cell["id"], **res}), flush=True)
    return 0


# == orchestrator ===========================================================================


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _reader(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def run_workers(task: dict, deadline: float, progress=None) -> dict[str, dict]:
    """Run ``task``'s cells in worker processes until all have a result or the
    deadline passes. A worker that dies or hangs costs the cell it was running
    (reported with the reason); a new worker takes the cells after it.
    ``progress(results)``, if given, is called after every result."""
    results: dict[str, dict] = {}
    pending = list(task["cells"])
    peak = task.get("peak")
    grace = 30.0  # a worker may overrun the deadline this long (one long round) before a kill
    while pending or peak:
        if time.time() > deadline:
            for cell in pending:
                results[cell["id"]] = {"skipped": "time budget spent"}
            break
        sub = {**task, "cells": pending, "peak": peak}
        cmd = [sys.executable, "-m", "benchmarks.gpu_peers", "--worker", json.dumps(sub)]
        env = suite.worker_env()
        proc = subprocess.Popen(cmd, cwd=suite.ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True).start()
        err_lines: list[str] = []
        err_reader = threading.Thread(target=err_lines.extend, args=(proc.stderr,), daemon=True)
        err_reader.start()
        why = None
        while True:
            try:
                line = q.get(timeout=max(deadline + grace - time.time(), 0.1))
            except queue.Empty:
                why = "killed: the time budget ran out during this cell"
                proc.kill()
                break
            if line is None:
                break
            if not line.startswith("RESULT "):
                continue
            res = json.loads(line[len("RESULT "):])
            rid = res.pop("id")
            if rid == "peaks":
                results["peaks"], peak = res, None
            else:
                results[rid] = res
                pending = [c for c in pending if c["id"] != rid]
                _log_cell(rid, res)
            if progress:
                progress(results)
        proc.wait()
        err_reader.join(timeout=5)
        if peak:  # the worker died before the peaks
            results["peaks"] = {"error": _tail(err_lines, proc.returncode)}
            peak = None
        if pending and (why or proc.returncode):
            results[pending[0]["id"]] = {"error": why or _tail(err_lines, proc.returncode)}
            log(f"{pending[0]['id']}: {results[pending[0]['id']]['error']}")
            pending = pending[1:]
    return results


def _tail(lines: list[str], rc: int | None) -> str:
    tail = [x.strip() for x in lines if x.strip()][-3:]
    return f"worker exited {rc}: {' | '.join(tail)}"


def _log_cell(rid: str, res: dict) -> None:
    if "rows" not in res:
        log(f"{rid}: {res.get('skipped') or res.get('error')}")
        return
    parts = [f"{k} {r['epoch_s'] * 1e3:.2f}" if "epoch_s" in r else f"{k} error"
             for k, r in res["rows"].items()]
    log(f"{rid} ({res['cell_s']:.0f} s): " + ", ".join(parts) + " ms/epoch")


def plan(args) -> tuple[list[dict], dict[str, str]]:
    """The cells to run and the notes of the rows left out (missing packages)."""
    have = peers.available()
    notes = {impl: f"skipped: {have[impl]}" for impl in args.impls
             if impl in have and have[impl]}
    rows = [r for r in ROWS if r[0] in args.impls and r[0] not in notes
            and r[1] in args.policies]
    cells = []
    for size in args.sizes:
        for name in args.workloads:
            cfg = sized(suite.WORKLOADS[name], size)
            missing = suite.layers_available(cfg["kind"])
            if missing:
                notes[f"{size}/{name}"] = f"skipped: epynn_jax.layers lacks {', '.join(missing)}"
                continue
            cells.append({"id": f"{size}/{name}", "size": size, "workload": name, "cfg": cfg,
                          "rows": rows, "quick": args.quick,
                          "min_rounds": 2 if args.quick else 3,
                          "max_rounds": 2 if args.quick else 30,
                          "seconds": 0.0 if args.quick else 60.0,
                          "compile_threads": args.compile_threads})
    return cells, notes


# -- rendering ------------------------------------------------------------------------------


def _paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a / b (both timed in the same rounds)."""
    return statistics.median(x / y for x, y in zip(a, b))


def best_peer(rows: dict[str, dict], policy: str) -> str | None:
    """The key of the fastest peer row under ``policy`` (lowest median timing: on a noisy
    machine a single lucky best timing should not pick it), if any ran."""
    timed = [(r["epoch_median_s"], k) for k, r in rows.items()
             if k.split("/")[0] in peers.PEERS and k.endswith("/" + policy) and "epoch_s" in r]
    return min(timed)[1] if timed else None


def _pct(x: float) -> str:
    return f"{x:.1f}" if x >= 1 else (f"{x:.2f}" if x >= 0.01 else f"{x:.3f}")


def render(res: dict) -> list[str]:
    """The markdown report of a run (``res``: what :func:`main` writes with ``--json``)."""
    peaks, meta = res.get("peaks", {}), res.get("meta", {})
    f32, bf16 = peaks.get("float32", {}), peaks.get("bfloat16", {})
    lines = [f"## epynn_jax vs Flax, Equinox, PyTorch — {f32.get('device_kind', '?')} "
             f"({f32.get('platform', '?')})", ""]
    vers = ", ".join(f"{k} {v}" for k, v in peaks.get("versions", {}).items())
    lines.append(f"Run {meta.get('date', '?')} on {meta.get('host', '?')}, JAX "
                 f"{f32.get('jax', '?')}{', ' + vers if vers else ''}.")
    for name, p in (("float32", f32), ("bfloat16", bf16)):
        if "matmul_flops" in p:
            lines.append(f"Measured {name} matmul peak: {p['matmul_flops'] / 1e12:,.3f} "
                         f"TFLOP/s (n={p['matmul_n']}, precision `{p['matmul_precision']}`).")
    if "error" in peaks:
        lines.append(f"Peak measurement failed: {peaks['error']}")
    lines.append("")
    for note in res.get("notes", {}).items():
        lines.append(f"- {note[0]}: {note[1]}")
    if res.get("notes"):
        lines.append("")
    by_size: dict[str, list[dict]] = {}
    for cell in res.get("cells", []):
        by_size.setdefault(cell["size"], []).append(cell)
    for size, cells in by_size.items():
        lines += [f"### size `{size}`", "",
                  "| workload | implementation | policy | ms/epoch (best) | ms/epoch (median) "
                  "| vs best peer | % f32 peak | % bf16 peak | first epoch s |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for cell in cells:
            lines += _cell_rows(cell, f32, bf16)
        lines.append("")
        shapes = [f"{c['workload']} {_shape(c['cfg'])}, {c['epoch_flops'] / 1e6:,.1f} MFLOP"
                  for c in cells]
        lines += ["Per epoch: " + "; ".join(shapes) + ".", ""]
        row_notes = [f"- {c['workload']}, {LABELS[k.split('/')[0]]} {k.split('/')[1]}: "
                     f"{r['note']}" for c in cells
                     for k, r in c.get("result", {}).get("rows", {}).items() if r.get("note")]
        if row_notes:
            lines += [*row_notes, ""]
        threads = max((r.get("compile_threads", 1) for c in cells
                       for r in c.get("result", {}).get("rows", {}).values()), default=1)
        if threads > 1:
            lines += [f"First epochs: the JAX rows of a cell ran theirs {threads} at a time "
                      "(threads; the compilations overlap), so each is its thread's wall "
                      "time; PyTorch's ran alone after them.", ""]
    return lines


def _shape(cfg: dict) -> str:
    parts = [f"{label} {cfg[k]}" for k, label in (("n", "n"), ("n_train", "trained"),
                                                  ("batch", "batch"))
             if k in cfg] + [f"{k} {cfg[k]}" for k in WIDTH_KEYS if k in cfg]
    return f"({', '.join(parts)})"


def _cell_rows(cell: dict, f32: dict, bf16: dict) -> list[str]:
    name, res = cell["workload"], cell.get("result", {})
    if "rows" not in res:
        why = (f"skipped: {res['skipped']}" if "skipped" in res else
               f"error: {res['error'][:200]}" if "error" in res else "not run")
        return [f"| {name} | {why} | | | | | | | |"]
    out = []
    rows = res["rows"]
    for key, r in rows.items():
        impl, policy = key.split("/")
        if "epoch_s" not in r:
            out.append(f"| {name} | {LABELS[impl]} | {policy} | error: "
                       f"{r.get('error', '?')[:120]} | | | | | |")
            continue
        best = best_peer(rows, policy)
        ratio = f"{_paired(r['timings_s'], rows[best]['timings_s']):.2f}" if best else "–"
        rate = cell["epoch_flops"] / r["epoch_s"]
        pf = _pct(100 * rate / f32["matmul_flops"]) if "matmul_flops" in f32 else "–"
        pb = _pct(100 * rate / bf16["matmul_flops"]) if "matmul_flops" in bf16 else "–"
        out.append(f"| {name} | {LABELS[impl]} | {policy} | {r['epoch_s'] * 1e3:.2f} | "
                   f"{r['epoch_median_s'] * 1e3:.2f} | {ratio} | {pf} | {pb} | "
                   f"{r['first_call_s']:.2f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_peers",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, 2 rounds of 1 epoch: a smoke run on any device")
    ap.add_argument("--sizes", nargs="+", choices=SIZE_CHOICES,
                    help="default: large xlarge on a GPU, quick with --quick, else default")
    ap.add_argument("--workloads", nargs="+", choices=list(suite.WORKLOADS),
                    default=list(suite.WORKLOADS))
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    ap.add_argument("--policies", nargs="+", choices=peers.POLICIES, default=list(peers.POLICIES))
    ap.add_argument("--time-budget", type=float, default=TIME_BUDGET,
                    help="seconds for the whole run; cells left then are skipped (default "
                         f"{TIME_BUDGET:.0f})")
    ap.add_argument("--compile-threads", type=int, default=None,
                    help="run the JAX rows' first epochs (their compilation) this many at a "
                         "time (default: 8 on a GPU host, 1 elsewhere)")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    t_start = time.time()
    deadline = t_start + args.time_budget
    gpu = suite._looks_like_gpu()
    if args.compile_threads is None:
        args.compile_threads = min(8, max((os.cpu_count() or 1) // 2, 1)) if gpu else 1
    if not args.sizes:
        args.sizes = ["quick"] if args.quick else (["large", "xlarge"] if gpu else ["default"])
    cells, notes = plan(args)
    for key, note in notes.items():
        log(f"{key}: {note}")
    peak = {"matmul_sizes": [4096, 8192] if gpu else ([256] if args.quick else [512, 1024]),
            "copy_n": 2**26 if gpu else 2**20, "repeat": 10 if gpu else 3}
    task = {"peak": peak, "cells": cells, "deadline": deadline}
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node() or "?", "cpus": os.cpu_count(), "quick": args.quick,
            "sizes": args.sizes, "time_budget_s": args.time_budget}

    def report(results: dict) -> dict:
        for cell in cells:
            cell["result"] = results.get(cell["id"], {"skipped": "not run"})
            cell["epoch_flops"] = epoch_flops(cell["cfg"])
        meta["wall_s"] = time.time() - t_start
        res = {"meta": meta, "peaks": results.get("peaks", {}), "notes": notes, "cells": cells}
        if args.json:  # rewritten after every cell: a run killed from outside keeps its figures
            Path(args.json).write_text(json.dumps(res, indent=1))
        return res

    res = report(run_workers(task, deadline, progress=report))
    print("\n".join(render(res)))
    if args.json:
        log(f"wrote {args.json}")
    log(f"gpu_peers: {meta['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
