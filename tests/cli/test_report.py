"""The training report: table, progress bar, fit callback, plot."""

from __future__ import annotations

import io
import math

import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.io import report

HISTORY = {"accuracy": {"dtrain": [0.5, 0.75, 1.0], "dval": [0.25, 0.5, 0.5]},
           "MSE": {"dtrain": [0.3, 0.2, 0.0001], "dval": [0.4, float("nan"), 0.3]}}


def test_table_has_a_column_per_metric_and_split():
    lines = report.metrics_table(HISTORY).splitlines()
    assert lines[0].split() == ["epoch", "accuracy/dtrain", "accuracy/dval", "MSE/dtrain",
                                "MSE/dval"]
    assert lines[1].split() == ["1", "0.5000", "0.2500", "0.3000", "0.4000"]
    assert lines[2].split()[-1] == "nan"
    assert lines[3].split()[3] == "1.00e-04"
    assert all(len(line) == len(lines[0]) for line in lines)  # aligned


def test_table_every_keeps_the_last_epoch():
    rows = report.metrics_table(HISTORY, every=2).splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["2", "3"]


def test_progress_bar():
    assert report.progress_bar(0, 4, 0.0, width=4) == "[----] 0/4 epochs  0.0 s  ETA ?"
    assert report.progress_bar(4, 4, 2.0, width=4).startswith("[####] 4/4")


def test_reporter_as_a_fit_callback_prints_rows_and_bar():
    net = network.build([layers.Dense(1, "sigmoid")], (3,))
    params = network.init(net, jax.random.key(0))
    X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    Y = (X[:, :1] > 0).astype(np.float32)
    stream = io.StringIO()
    rep = report.Reporter(4, stream, every=2, progress=True, title="demo")
    network.fit(net, params, {"dtrain": (X, Y)}, epochs=4, callbacks=[rep])
    text = stream.getvalue()
    assert text.startswith("demo\nepoch")
    rows = [line for line in text.replace("\r", "\n").splitlines() if line[:5].strip().isdigit()]
    assert [r.split()[0] for r in rows] == ["2", "4"]
    assert "[" in text and "4/4 epochs" in text and text.endswith("\n")


def test_final_metrics():
    assert report.final_metrics(HISTORY)["accuracy"] == {"dtrain": 1.0, "dval": 0.5}


def test_plot_history_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = report.plot_history(HISTORY, tmp_path / "sub" / "m.png", "title")
    assert path.read_bytes()[:4] == b"\x89PNG"


class Clock:
    """A fake ``time.perf_counter``: the tests set the time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


HIST = {"accuracy": {"dtrain": [0.5] * 3000}}


def test_eta_leaves_out_the_first_epoch_that_compiled():
    # 3.9 s for the first epoch (compilation), then 0.1 s per epoch: 28 more take 2.8 s
    clock, stream = Clock(), io.StringIO()
    rep = report.Reporter(30, stream, every=100, progress=True, clock=clock)
    clock.now = 3.9
    rep(0, HIST)
    assert " 1/30 epochs  3.9 s  ETA ?" in stream.getvalue()  # no rate measured yet
    clock.now = 4.0
    rep(1, HIST)
    assert stream.getvalue().endswith(" 2/30 epochs  4.0 s  ETA 2.8 s")
    assert report.eta_seconds(2, 30, 4.0, since=(1, 3.9)) == pytest.approx(2.8)
    assert math.isnan(report.eta_seconds(1, 30, 3.9, since=(1, 3.9)))


def test_without_a_terminal_a_plain_line_comes_at_least_every_interval():
    # 3000 epochs of 10 ms after a 4 s compile; rows every 300 epochs (3 s apart)
    # would leave 3 s gaps; with interval=2 no gap between lines exceeds 2 s + 1 epoch
    clock, stream = Clock(), io.StringIO()
    rep = report.Reporter(3000, stream, every=300, title="demo", interval=2.0, clock=clock)
    rep.begin()
    assert stream.getvalue() == "demo\n"  # the title shows before the first epoch
    times = [0.0]
    for epoch in range(3000):
        clock.now = 4.0 + 0.01 * epoch
        before = stream.getvalue().count("\n")
        rep(epoch, HIST)
        if stream.getvalue().count("\n") > before:
            times.append(clock.now)
    text = stream.getvalue()
    assert "\r" not in text and "[" not in text  # no bar, no carriage return in logs
    progress = [line for line in text.splitlines() if line.startswith("progress:")]
    assert progress and len(progress) <= 30 // 2 + 1
    assert progress[0] == "progress:  201/3000 epochs  6.0 s  ETA 28.0 s"
    assert max(b - a for a, b in zip(times[1:], times[2:])) <= 2.0 + 0.01 + 1e-9
    rows = [line for line in text.splitlines() if line.split()[0].isdigit()]
    assert [int(r.split()[0]) for r in rows] == list(range(300, 3001, 300))


def test_progress_false_prints_rows_only():
    clock, stream = Clock(), io.StringIO()
    rep = report.Reporter(100, stream, every=50, progress=False, interval=0.5, clock=clock)
    for epoch in range(100):
        clock.now = epoch
        rep(epoch, HIST)
    assert "progress" not in stream.getvalue() and stream.getvalue().count("\n") == 3


def test_the_bar_is_redrawn_at_most_every_redraw_seconds_and_close_erases_it():
    clock, stream = Clock(), Terminal()
    rep = report.Reporter(1000, stream, every=1000, redraw=0.1, clock=clock)
    assert rep.progress  # a terminal gets the bar
    for epoch in range(999):  # 1 ms epochs: 1 s in all
        clock.now = 0.001 * (epoch + 1)
        rep(epoch, HIST)
    assert 9 <= stream.getvalue().count("/1000 epochs") <= 12
    rep.close()
    bar = stream.getvalue().rsplit("\r", 3)[1]  # ..., last bar drawn, its blank-out, ""
    assert bar.startswith("[") and stream.getvalue().endswith("\r" + " " * len(bar) + "\r")
