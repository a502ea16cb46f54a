"""The benchmark suite's report: ratios and tables from given timings (nothing is timed here)."""

from __future__ import annotations

from benchmarks import suite


def _row(ms: float, **extra) -> dict:
    return {"epoch_s": ms / 1e3, "first_call_s": 1.5, "rss_delta_mb": 10.0, **extra}


RESULT = {
    "meta": {"date": "2026-11-28 12:00 UTC", "host": "test", "cpus": 2, "size": "default"},
    "peak": {"platform": "cpu", "device_kind": "cpu", "jax": "x", "matmul_flops": 100e9,
             "matmul_n": 2048, "matmul_precision": "default", "copy_gbps": 5.0},
    "table": {
        "Dense": {"cfg": {}, "epoch_flops": 10_000_000,
                  "epynn": _row(12.0), "functional": _row(1.0), "autodiff": _row(1.25),
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
