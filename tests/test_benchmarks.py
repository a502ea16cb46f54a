"""The benchmark suite's report: ratios and tables from given timings (nothing is timed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import suite

ROOT = Path(__file__).resolve().parents[1]


def _row(ms: float, **extra) -> dict:
    return {"epoch_s": ms / 1e3, "first_call_s": 1.5, "rss_delta_mb": 10.0, **extra}


RESULT = {
    "meta": {"date": "2026-11-28 12:00 UTC", "host": "test", "cpus": 2, "size": "default"},
    "import": {"jax_s": 0.51, "epynn_jax_s": 0.0234, "runs": 3},
    "peak": {"platform": "cpu", "device_kind": "cpu", "jax": "x", "matmul_flops": 100e9,
             "matmul_n": 2048, "matmul_precision": "default", "copy_gbps": 5.0},
    "table": {
        "Dense": {"cfg": {}, "epoch_flops": 10_000_000,
                  "epynn": _row(12.0), "functional": _row(1.0), "autodiff": _row(1.25),
                  "fit": {**_row(1.04), "first_call_s": 2.75},
                  "compat": _row(1.1, chunk=10, train1_s=0.0021), "reference": _row(1.2)},
        "CNN": {"note": "skipped: epynn_jax.layers lacks convolution on this branch"},
    },
}


def _table_row(lines: list[str], name: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_main_table_ratios():
    lines = suite.render_result(RESULT)
    header = next(line for line in lines if line.startswith("| workload | EpyNN"))
    heads = [cell.strip() for cell in header.strip("|").split("|")]
    cells = dict(zip(heads, _table_row(lines, "Dense")))
    assert cells["EpyNN / functional"] == "12.00"
    assert cells["fit"] == "1.04" and cells["fit / functional"] == "1.04"
    assert cells["first call s (functional)"] == "1.50"
    assert cells["first epoch s (fit)"] == "2.75"
    assert cells["autodiff / functional"] == "1.25"
    assert cells["compat / functional"] == "1.10"
    assert cells["functional / pure JAX"] == "0.83"
    assert cells["% of matmul peak"] == "10.0"  # 1e7 FLOP in 1 ms of a 100 GFLOP/s peak
    assert len(_table_row(lines, "CNN")) == len(heads)  # a skipped row keeps the columns


def test_compat_single_call_table():
    lines = suite.render_result(RESULT)
    assert any("`model.train(10)`" in line for line in lines)
    assert _table_row(lines, "Dense")[0] == "Dense"
    rows = [line for line in lines if line.startswith("| Dense | 1.10 | 2.10 |")]
    assert len(rows) == 1


def test_ratios_of_one_interleaved_run_are_paired_round_by_round():
    """A slow round for one column only (the machine's drift) does not decide the ratio."""
    table = {"RNN": {"cfg": {}, "epoch_flops": 1,
                     "functional": _row(1.0, timings_s=[1.0, 2.0, 2.0]),
                     "compat": _row(1.5, timings_s=[1.5, 2.2, 2.2])}}
    lines = suite.render_result({**RESULT, "table": table})
    header = next(line for line in lines if line.startswith("| workload | EpyNN"))
    heads = [cell.strip() for cell in header.strip("|").split("|")]
    cells = dict(zip(heads, _table_row(lines, "RNN")))
    assert cells["compat / functional"] == "1.10"  # best / best would say 1.50


def test_fit_ratio_is_paired_round_by_round_too():
    table = {"Dense": {"cfg": {}, "epoch_flops": 1,
                       "functional": _row(1.0, timings_s=[1.0, 1.0, 3.0]),
                       "fit": _row(1.05, timings_s=[1.05, 1.1, 3.0])}}
    lines = suite.render_result({**RESULT, "table": table})
    header = next(line for line in lines if line.startswith("| workload | EpyNN"))
    heads = [cell.strip() for cell in header.strip("|").split("|")]
    cells = dict(zip(heads, _table_row(lines, "Dense")))
    assert cells["fit / functional"] == "1.05"  # median of 1.05, 1.10, 1.00
    assert cells["first epoch s (fit)"] == "1.50"
    assert cells["compat"] == "–" and cells["compat / functional"] == "–"


def test_import_time_line():
    lines = suite.render_result(RESULT)
    line = next(line for line in lines if line.startswith("`import epynn_jax`"))
    assert "**0.023 s** on top of `import jax` (0.51 s)" in line and "best of 3" in line
    # a result without the measurement (an older file) renders without the line
    old = {k: v for k, v in RESULT.items() if k != "import"}
    assert not any(x.startswith("`import epynn_jax`") for x in suite.render_result(old))


def test_fit_is_a_column_and_a_first_call():
    assert "fit" in suite.IMPLS
    lines = suite.render_result(RESULT)
    first = lines.index(next(x for x in lines if x.startswith("First call")))
    header = lines[first + 2]
    assert "| fit |" in header
    row = next(x for x in lines[first:] if x.startswith("| Dense |"))
    heads = [c.strip() for c in header.strip("|").split("|")]
    assert dict(zip(heads, [c.strip() for c in row.strip("|").split("|")]))["fit"] == "2.75"


# -- benchmarks/bench_stream.py: streamed vs in-memory -----------------------------------


def test_stream_paired_ratio_is_the_median_of_round_ratios():
    from benchmarks import bench_stream
    # rounds: 2/4, 2/1, 3/3 -> 0.5, 2.0, 1.0: median 1.0 (best/best would say 2/1 = 2.0)
    assert bench_stream.paired_ratio([2.0, 2.0, 3.0], [4.0, 1.0, 3.0]) == 1.0
    with pytest.raises(ValueError, match="equally long"):
        bench_stream.paired_ratio([1.0], [1.0, 2.0])


def test_stream_table():
    from benchmarks import bench_stream
    r = {"timings_s": {"in-memory": [0.002, 0.001], "streamed": [0.004, 0.0011],
                       "memmap": [0.003, 0.002]},
         "ratio": {"streamed": 0.7, "memmap": 0.6}}
    lines = bench_stream.render({"Dense": r})
    assert lines[2] == "| Dense | 1.00 | 1.10 | 2.00 | 0.70 | 0.60 |"


def test_stream_benchmark_quick_run(tmp_path):
    out = tmp_path / "stream.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_stream", "--quick",
                           "--workloads", "Dense", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())["Dense"]
    for variant in ("in-memory", "streamed", "memmap"):
        assert len(result["timings_s"][variant]) == 2
        assert all(t > 0 for t in result["timings_s"][variant])
    assert all(r > 0 for r in result["ratio"].values())
    assert "| Dense |" in proc.stdout


# -- benchmarks/bench_latency.py: one predict call against a hand-written jit ----------


def test_latency_ratio_is_the_median_of_round_ratios_of_time():
    from benchmarks import bench_latency
    # rounds: 4/2, 1/2, 3/3 -> 2.0, 0.5, 1.0: median 1.0 (a time ratio: 2.0 is twice as slow)
    assert bench_latency.paired_ratio([2.0, 2.0, 3.0], [4.0, 1.0, 3.0]) == 1.0
    with pytest.raises(ValueError, match="equally long"):
        bench_latency.paired_ratio([], [])


def test_latency_table():
    from benchmarks import bench_latency
    r = {"timings_s": {"hand-written jit": [40e-6, 60e-6], "predict (NumPy X)": [80e-6, 100e-6],
                       "predict (device X)": [50e-6, 70e-6], "facade predict": [1e-4, 2e-4]},
         "ratio": {"hand-written jit": 1.0, "predict (NumPy X)": 1.9,
                   "predict (device X)": 1.2, "facade predict": 2.5}}
    lines = bench_latency.render({1: r})
    assert lines[2] == "| 1 | 50 | 90 | 60 | 150 | 1.90 | 1.20 | 2.50 |"


def test_latency_benchmark_quick_run(tmp_path):
    out = tmp_path / "latency.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_latency", "--quick",
                           "--rows", "3", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())["3"]
    for variant in ("hand-written jit", "predict (NumPy X)", "predict (device X)",
                    "facade predict"):
        assert len(result["timings_s"][variant]) == 2
        assert all(t > 0 for t in result["timings_s"][variant])
        assert result["ratio"][variant] > 0
    assert "| 3 |" in proc.stdout


# -- benchmarks/bench_cpu_kernels.py: XLA's default CPU kernels vs other options ---------


def test_cpu_kernels_options_are_key_value_pairs():
    from benchmarks import bench_cpu_kernels as bk
    assert bk.parse_options(["a=", "b=x=y"]) == {"a": "", "b": "x=y"}
    for bad in ("nokey", "=1"):
        with pytest.raises(ValueError, match="key=value"):
            bk.parse_options([bad])


def test_cpu_kernels_table_shows_medians_and_paired_ratios():
    from benchmarks import bench_cpu_kernels as bk
    r = {"bare": {"timings_s": {"default": [0.003, 0.001, 0.002],
                                "variant": [0.001, 0.004, 0.0015]}, "ratio": 1.25},
         "eval": {"timings_s": {"default": [0.005], "variant": [0.004]}, "ratio": 1.2}}
    lines = bk.render({"MLP": r}, {"xla_flag": ""})
    assert "xla_flag=''" in lines[0]
    assert _table_row(lines, "MLP") == ["MLP", "2.00", "1.50", "1.25", "5.00", "4.00", "1.20"]


def test_cpu_kernels_quick_run_and_an_unknown_option(tmp_path):
    out = tmp_path / "kernels.json"
    cmd = [sys.executable, "-m", "benchmarks.bench_cpu_kernels", "--quick", "--workloads",
           "Dense"]
    proc = subprocess.run([*cmd, "--json", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(out.read_text())
    assert saved["options"] == {"xla_cpu_experimental_ynn_fusion_type": ""}
    for mode in ("bare", "eval"):
        result = saved["results"]["Dense"][mode]
        assert all(len(t) == 2 and min(t) > 0 for t in result["timings_s"].values())
        assert result["ratio"] > 0
    assert "| Dense |" in proc.stdout
    # the variant's options reach XLA: one it does not know is refused, and said so
    proc = subprocess.run([*cmd, "--option", "no_such_xla_option=1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "no_such_xla_option" in proc.stderr


def test_fit_overheads_table_pairs_every_column_with_the_bare_epoch():
    table = {"Dense": {"cfg": {}, "epoch_flops": 1,
                       "bare": _row(1.0, timings_s=[1.0, 1.0, 2.0]),
                       "fit": _row(1.6, timings_s=[1.6, 1.5, 2.0]),
                       "fit_train": _row(1.3, timings_s=[1.3, 1.4, 2.6]),
                       "fit_bare": _row(1.1, timings_s=[1.1, 1.2, 2.0]),
                       "functional": _row(1.2, timings_s=[1.2, 1.2, 2.4]),
                       "reference": _row(1.0, first_call_s=0.5),
                       "first_pairs": {"fit_s": [1.0, 2.0, 1.2], "reference_s": [0.8, 1.0, 1.0],
                                       "ratio": 1.25}},
             "RNN": {"cfg": {}, "epoch_flops": 1, "functional": _row(1.0)}}  # no bare: no row
    lines = suite.render_result({**RESULT, "table": table})
    start = lines.index(next(x for x in lines if x.startswith("What `fit` costs")))
    header = lines[start + 2]
    heads = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(heads, _table_row(lines[start:], "Dense")))
    assert cells["fit / bare"] == "1.50"        # median of 1.6, 1.5, 1.0
    assert cells["fit_train / bare"] == "1.30"  # median of 1.3, 1.4, 1.3
    assert cells["fit_bare / bare"] == "1.10"
    assert cells["functional / bare"] == "1.20"
    # the first epochs: medians of the pairs, and the median of the pair-by-pair ratios
    assert cells["first epoch s (fit)"] == "1.20" and cells["first call s (pure JAX)"] == "1.00"
    assert cells["fit / pure JAX (first)"] == "1.25 (3 pairs)"
    assert not any(x.startswith("| RNN |") for x in lines[start:start + 6])


def test_first_epoch_parts_table_splits_the_median_first_epoch():
    parts = {"fit_trace_s": 0.05, "fit_lower_s": 0.04, "fit_compile_s": 0.5,
             "reference_trace_s": 0.04, "reference_lower_s": 0.05, "reference_compile_s": 0.4}
    table = {"Dense": {"cfg": {}, "epoch_flops": 1, "bare": _row(1.0), "fit": _row(1.5),
                       "first_pairs": {"fit_s": [0.6, 0.7, 0.8], "reference_s": [0.6, 0.5, 0.7],
                                       "ratio": 1.2, "parts": parts}}}
    lines = suite.render_result({**RESULT, "table": table})
    start = lines.index(next(x for x in lines if x.startswith("Where those first epochs go")))
    rows = [x for x in lines[start:start + 6] if x.startswith("| Dense |")]
    fit, ref = ([c.strip() for c in r.strip("|").split("|")] for r in rows)
    assert fit == ["Dense", "fit", "0.050", "0.040", "0.500", "0.110", "0.700"]
    assert ref == ["Dense", "pure JAX", "0.040", "0.050", "0.400", "0.110", "0.600"]


def _cache_runs(keys):
    return [{"label": "first run (empty cache)", **dict.fromkeys(keys, 1.0)},
            *({"label": f"cache warm, run {i}", **dict.fromkeys(keys, x)}
              for i, x in ((2, 0.3), (3, 0.1), (4, 0.2))),
            {"label": "cache off (EPYNN_JAX_NO_CACHE=1)", "error": ["boom"]}]


def _median_row(runs):
    lines = suite.render_result({**RESULT, "compile_cache": {"runs": runs, "cache_files": 3}})
    median = next(x for x in lines if x.startswith("| **cache warm, median** |"))
    return lines, [c.strip() for c in median.strip("|").split("|")][1:]


def test_compile_cache_table_adds_the_median_of_the_warm_runs():
    keys = ("wall_s", "import_s", "fit_s", "jit_s", "trace_s", "lower_s", "compile_s",
            "store_s")
    runs = _cache_runs(keys)
    lines, median = _median_row(runs)
    assert median == ["0.200"] * len(keys)
    # a result file from before the program store: its column is left empty
    old = [{k: v for k, v in r.items() if k != "store_s"} for r in runs]
    assert _median_row(old)[1] == ["0.200"] * (len(keys) - 1) + ["–"]
    start = lines.index("### Persistent compilation cache")
    labels = [x.split("|")[1].strip() for x in lines[start:] if x.startswith("| ")][1:]
    assert labels == ["first run (empty cache)", "cache warm, run 2", "cache warm, run 3",
                      "cache warm, run 4", "**cache warm, median**",
                      "cache off (EPYNN_JAX_NO_CACHE=1)"]


def test_compile_clock_counts_nested_and_overlapping_spans_once():
    clock = suite.CompileClock.__new__(suite.CompileClock)
    clock.since = 10.0
    clock.spans = {"trace": [(11.0, 12.0), (11.2, 11.5)],   # a nested trace
                   "lower": [(12.0, 12.5)],
                   "compile": [(12.4, 13.0), (9.0, 10.5)]}  # overlaps; one began before
    assert clock.seconds("trace") == pytest.approx(1.0)
    assert clock.seconds("compile") == pytest.approx(1.1)
    assert clock.seconds() == pytest.approx(0.5 + 1.0 + 0.5 + 0.5)


def test_compile_clock_hears_jax_compile_events():
    import jax
    import jax.numpy as jnp

    clock = suite.CompileClock()
    try:
        jax.jit(lambda x: jnp.sin(x) * 3 + 1)(jnp.arange(7.0)).block_until_ready()
    finally:
        clock.close()
    parts = [clock.seconds(k) for k in ("trace", "lower", "compile")]
    assert all(x > 0 for x in parts) and clock.seconds() <= sum(parts) + 1e-9


def test_fit_overheads_first_epochs_without_pairs_are_single_processes():
    table = {"Dense": {"cfg": {}, "epoch_flops": 1, "bare": _row(1.0),
                       "fit": {**_row(1.5), "first_call_s": 3.0},
                       "reference": {**_row(1.0), "first_call_s": 2.0}}}
    lines = suite.render_result({**RESULT, "table": table})
    start = lines.index(next(x for x in lines if x.startswith("What `fit` costs")))
    heads = [c.strip() for c in lines[start + 2].strip("|").split("|")]
    cells = dict(zip(heads, _table_row(lines[start:], "Dense")))
    assert cells["fit / bare"] == "1.50" and cells["fit_train / bare"] == "–"
    assert cells["fit / pure JAX (first)"] == "1.50"


def test_the_mlp_workload_is_784_128_10():
    cfg = suite.WORKLOADS["MLP"]
    layers, shape = suite.functional_net(cfg)
    assert shape == (28, 28) and [type(x).__name__ for x in layers] == ["Flatten", "Dense",
                                                                        "Dense"]
    assert (layers[1].units, layers[1].activate, layers[2].units, layers[2].activate) == (
        128, "relu", 10, "softmax")
    X, Y = suite.make_data({**cfg, "n": 6})
    assert X.shape == (6, 28, 28) and Y.shape == (6, 10) and (Y.sum(axis=1) == 1).all()
    # 784 * 128 + 128 * 10 multiply-adds per sample
    assert suite.forward_flops(cfg) == 2 * (784 * 128 + 128 * 10)


def test_peer_table_takes_the_fastest_peer_and_pairs_its_rounds():
    """Flax's best epoch is the smallest: it is the best peer; the paired ratio is the
    median of its round-by-round ratios to functional (not best / best)."""
    f = {**_row(10.0), "timings_s": [0.010, 0.020, 0.012]}
    flax = {**_row(9.0), "timings_s": [0.009, 0.030, 0.015]}   # ratios 0.9, 1.5, 1.25
    eqx = {**_row(11.0), "timings_s": [0.011, 0.011, 0.011]}
    row = {"cfg": {}, "epoch_flops": 1, "functional": f, "flax": flax, "equinox": eqx,
           "torch": {"skipped": "torch not installed"}}
    r = suite.peer_ratios(row)
    assert r["peer"] == "flax"
    assert r["paired"] == pytest.approx(1.25) and r["best"] == pytest.approx(0.9)
    lines = suite.render_result({**RESULT, "table": {"GRU": row}})
    header = next(line for line in lines if line.startswith("| workload | functional | Flax"))
    heads = [cell.strip() for cell in header.strip("|").split("|")]
    cells = dict(zip(heads, _table_row(lines[lines.index(header):], "GRU")))
    assert cells["best peer"] == "flax" and cells["PyTorch"] == "skip"
    assert cells["vs best peer (paired)"] == "1.25"
    assert cells["vs best peer (best epoch)"] == "0.90"
    assert "- torch: skipped (torch not installed)" in lines


def test_no_peer_table_without_peers():
    assert not any(line.startswith("| workload | functional | Flax")
                   for line in suite.render_result(RESULT))
    assert suite.peer_ratios(RESULT["table"]["Dense"]) is None


def test_peer_impls_say_why_they_cannot_run():
    for impl in suite.PEER_IMPLS:
        why = suite.impl_available(impl)
        assert why is None or why.endswith("not installed")
