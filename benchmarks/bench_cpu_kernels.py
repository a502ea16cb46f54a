"""Benchmark: the compiled epoch under XLA's default CPU kernels and under other compiler
options, paired in one process.

XLA:CPU (jaxlib 0.10) hands small matrix products and reductions to YNNPACK (the
``__ynn_fusion`` fusions of the compiled HLO) and the rest to its own loops and
Eigen. Which is faster depends on the shapes and the CPU: on the 2-core benchmark
machine (a Xeon with AVX-512 and AMX) the MLP's 784 x 128 product runs a quarter
faster with YNNPACK off, while the small Dense, LSTM and GRU products run up to a
sixth slower (``docs/performance.md``, "CPU matrix kernels"). epynn_jax keeps
XLA's default; a user can change it for a whole process with
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` (set before JAX starts).

For each workload of the suite (``benchmarks.suite.WORKLOADS``) the functional
epoch (``network.run_epoch``) is compiled twice from the same Python function:
with XLA's defaults and with ``--option`` (default: YNNPACK fusions off). Both
run round-robin in one process (the order reversed every round), without
evaluation (``bare``) and with both splits evaluated (``eval``). The ratios are
throughputs, variant / default: the median of the round-by-round ratios (above
1: the variant is faster). Usage::

    python -m benchmarks.bench_cpu_kernels [--quick] [--workloads MLP Dense]
        [--option xla_cpu_experimental_ynn_fusion_type=] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import suite
from benchmarks.bench_stream import paired_ratio

#: what ``--option`` defaults to: no YNNPACK fusion (an empty list of fusion kinds)
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}
MODES = ("bare", "eval")


def parse_options(items: list[str]) -> dict[str, str]:
    """``['key=value', ...]`` as a dict (a value may be empty: ``key=``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option: expected key=value, got {item!r}")
        out[key] = value
    return out


def _epochs(options: dict[str, str]) -> dict:
    """``{'default': run_epoch, 'variant': run_epoch compiled with options}``."""
    import jax

    from epynn_jax.network import epoch

    fn = epoch.run_epoch.__wrapped__  # the same Python function, compiled twice
    static = ("net", "update", "loss", "metric_names", "batch_size", "guard", "mesh",
              "eval_chunk")
    return {"default": epoch.run_epoch,
            "variant": jax.jit(fn, static_argnames=static, compiler_options=options)}


def measure(cfg: dict, options: dict[str, str], epochs: int, rounds: int) -> dict:
    """Both compilations' timings (seconds per epoch, one per round) in each mode."""
    from epynn_jax.network import epoch as epoch_lib

    net, opt, batch, state, splits = suite.functional_setup(cfg)
    fns = _epochs(options)
    out: dict = {}
    for mode in MODES:
        evaluated = splits if mode == "eval" else {}
        states = dict.fromkeys(fns, state)

        def run(name, e, evaluated=evaluated, states=states):
            for _ in range(e):
                states[name], costs, scores = fns[name](
                    net, opt.update, "MSE", ("accuracy", "MSE"), batch, states[name],
                    splits["dtrain"], evaluated)
                epoch_lib.fetch(scores if evaluated else costs)  # waits, as fit does

        for name in fns:
            run(name, 1)  # compiles
        times: dict[str, list[float]] = {name: [] for name in fns}
        order = list(fns)
        for r in range(rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                run(name, epochs)
                times[name].append((time.perf_counter() - t0) / epochs)
        out[mode] = {"timings_s": times,
                     "ratio": paired_ratio(times["default"], times["variant"])}
    return out


def render(results: dict, options: dict[str, str]) -> list[str]:
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
    lines = [f"Compiler options of the variant: {shown}. Milliseconds per epoch (median), "
             "then the variant's throughput / the default's (paired):", "",
             "| workload | bare: default ms | bare: variant ms | bare: ratio | "
             "eval: default ms | eval: variant ms | eval: ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        cells = []
        for mode in MODES:
            t = r[mode]["timings_s"]
            cells += [f"{sorted(t['default'])[len(t['default']) // 2] * 1e3:.2f}",
                      f"{sorted(t['variant'])[len(t['variant']) // 2] * 1e3:.2f}",
                      f"{r[mode]['ratio']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_cpu_kernels",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sets, few rounds: a smoke run")
    ap.add_argument("--workloads", nargs="+", choices=list(suite.WORKLOADS),
                    default=list(suite.WORKLOADS))
    ap.add_argument("--option", action="append", default=None, metavar="KEY=VALUE",
                    help="an XLA compiler option of the variant (repeatable; default: "
                         "xla_cpu_experimental_ynn_fusion_type=, YNNPACK off)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per timing")
    ap.add_argument("--rounds", type=int, default=None, help="timings per compilation")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    try:
        options = parse_options(args.option) if args.option else dict(NO_YNN)
    except ValueError as err:
        ap.error(str(err))
    epochs = args.epochs or (1 if args.quick else 5)
    rounds = args.rounds or (2 if args.quick else 9)
    results = {}
    for name in args.workloads:
        cfg = suite.script_cfg(name, "default", args.quick)
        if cfg is None:
            continue
        try:
            results[name] = measure(cfg, options, epochs, rounds)
        except Exception as err:  # noqa: BLE001 - an option this jaxlib does not know
            if "option" not in str(err).lower():
                raise
            print(f"this jaxlib refuses the options {options}: {err}", file=sys.stderr)
            return 2
        print(f"{name}: variant / default, bare {results[name]['bare']['ratio']:.2f}, "
              f"eval {results[name]['eval']['ratio']:.2f}", file=sys.stderr)
    print("\n".join(render(results, options)))
    if args.json:
        Path(args.json).write_text(json.dumps({"options": options, "results": results},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
