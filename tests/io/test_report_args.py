"""io.report refuses arguments it cannot honour, and plot_history returns the file it wrote."""

from __future__ import annotations

import io

import pytest

from epynn_jax.io import report

HISTORY = {"accuracy": {"dtrain": [0.5, 0.75, 1.0]}}


@pytest.mark.parametrize("every,error", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                         ("2", TypeError), (True, TypeError)])
def test_every_must_be_an_int_of_at_least_one(every, error):
    with pytest.raises(error, match="metrics_table: every must be an int >= 1"):
        report.metrics_table(HISTORY, every=every)
    with pytest.raises(error, match="Reporter: every must be an int >= 1"):
        report.Reporter(3, io.StringIO(), every=every)


def test_metrics_table_every_two_keeps_the_last_epoch():
    rows = report.metrics_table(HISTORY, every=2).splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["2", "3"]


@pytest.fixture
def plt():
    return pytest.importorskip("matplotlib.pyplot")


def test_plot_history_appends_png_to_a_path_without_suffix(tmp_path, plt):
    got = report.plot_history(HISTORY, tmp_path / "sub" / "history")
    assert got == tmp_path / "sub" / "history.png"
    assert got.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["history.png"]


def test_plot_history_writes_the_format_of_the_suffix(tmp_path, plt):
    got = report.plot_history(HISTORY, str(tmp_path / "h.svg"))
    assert got == tmp_path / "h.svg" and b"<svg" in got.read_bytes()[:500]
    with pytest.raises(ValueError, match=r"plot_history: cannot write a '\.txt' file"):
        report.plot_history(HISTORY, tmp_path / "h.txt")
    assert not (tmp_path / "h.txt").exists()


def test_plot_history_refuses_a_directory(tmp_path, plt):
    (tmp_path / "plots").mkdir()
    for target in (tmp_path / "plots", f"{tmp_path}/new/"):
        with pytest.raises(ValueError, match="plot_history: .* is a directory; give a file path"):
            report.plot_history(HISTORY, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots"]   # nothing written beside it
    assert not any((tmp_path / "plots").iterdir())
