"""The training report: table, progress bar, fit callback, plot."""

from __future__ import annotations

import io

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
