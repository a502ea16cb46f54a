"""The ``epynn-jax`` command: every subcommand, and its errors (one line, no traceback)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from epynn_jax import cli

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, expected_code: int = 1, match: str = "") -> None:
    assert code == expected_code
    assert err.count("\n") == 1 and err.startswith("epynn-jax"), err
    assert "Traceback" not in err and match in err


def has_checkpoint() -> bool:
    try:
        from epynn_jax.io import checkpoint  # noqa: F401
    except ImportError:
        return False
    return True


needs_checkpoint = pytest.mark.skipif(not has_checkpoint(),
                                      reason="epynn_jax.io.checkpoint is not on this branch yet")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One quick training run shared by the tests below: (exit code, stdout, out folder)."""
    folder = tmp_path_factory.mktemp("train")
    code, out, err = run("train", "dummy_boolean", "--epochs", "30", "--seed", "1",
                         "--out", str(folder))
    assert err == ""
    return code, out, folder


def test_list_names_every_example_and_its_models():
    code, out, _ = run("list")
    assert code == 0
    for name in cli.EXAMPLES:
        assert name in out
    assert "perceptron" in out and "lstm" in out and "cnn" in out


def test_train_prints_the_table_and_writes_the_files(trained):
    code, out, folder = trained
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("epoch"))
    assert "accuracy/dtrain" in lines[header] and "MSE/dval" in lines[header]
    rows = [line.split() for line in lines[header + 1:] if line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(3, 31, 3))  # every epochs // 10 epochs
    final_train_acc = float(rows[-1][1])
    assert final_train_acc >= 0.8  # the perceptron learns the majority rule
    assert "trained in" in out
    pytest.importorskip("matplotlib")
    png = folder / "dummy_boolean_perceptron.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_without_checkpoint_module_still_trains(trained):
    _, out, folder = trained
    if has_checkpoint():
        assert "model saved to" in out
        assert (folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}").is_file()
    else:
        assert "model not saved" in out


@pytest.mark.parametrize("argv,code,match", [
    (["train", "nope"], 1, "unknown example 'nope'"),
    (["train", "dummy_boolean", "--model", "cnn"], 1, "has no model 'cnn'"),
    (["train", "dummy_boolean", "--epochs", "0"], 2, "--epochs"),
    (["train", "dummy_boolean", "--lr", "nan"], 2, "--lr"),
    (["train", "dummy_boolean", "--batch-size", "x"], 2, "--batch-size"),
    (["frobnicate"], 2, "invalid choice"),
    ([], 2, "required"),
    (["info"], 2, "required"),
    (["info", "/nonexistent/model.epynn"], 1, ""),
    (["predict", "/nonexistent/model.epynn", "/nonexistent/x.npy"], 1, ""),
])
def test_bad_arguments_give_one_line_and_nonzero_status(argv, code, match, capsys):
    got, _, err = run(*argv)
    err = err or capsys.readouterr().err  # argparse writes to sys.stderr
    assert_one_line_error(got, err, code, match)


def test_missing_real_data_suggests_synthetic(monkeypatch, tmp_path):
    from epynn_jax.data import examples

    remote = examples.Remote("ptm_protein", (tmp_path / "absent.tar").as_uri(), "ptm.tar")
    monkeypatch.setitem(examples.REMOTES, "ptm_protein", remote)
    code, _, err = run("train", "ptm_protein", "--cache-dir", str(tmp_path), "--quick")
    assert_one_line_error(code, err, 1, "--synthetic")


@needs_checkpoint
def test_info_describes_the_model(trained):
    _, _, folder = trained
    code, out, err = run("info", str(folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}"))
    assert code == 0, err
    assert "Dense" in out and "W (11, 1)" in out and "parameters: 12" in out
    assert "dummy_boolean" in out  # metadata
    assert "final metrics" in out


@needs_checkpoint
def test_predict_prints_and_saves_outputs(trained, tmp_path):
    _, _, folder = trained
    model = str(folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}")
    X = np.zeros((4, 11), np.float32)
    X[:2] = 1.0  # all True -> label 0; all False -> label 1
    np.save(tmp_path / "x.npy", X)
    code, out, err = run("predict", model, str(tmp_path / "x.npy"), "--out",
                         str(tmp_path / "a.npy"))
    assert code == 0, err
    A = np.load(tmp_path / "a.npy")
    assert A.shape == (4, 1) and (A[:2] < 0.5).all() and (A[2:] > 0.5).all()
    code, out, _ = run("predict", model, str(tmp_path / "x.npy"))
    assert code == 0 and out.count("[") >= 4


@needs_checkpoint
def test_predict_errors(trained, tmp_path):
    _, _, folder = trained
    model = str(folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5)))
    (tmp_path / "text.npy").write_text("not numpy")
    np.save(tmp_path / "nan.npy", np.full((2, 11), np.nan))
    for name, match in (("wrong.npy", "expected shape"), ("text.npy", "cannot read input"),
                        ("missing.npy", "no such input"), ("nan.npy", "NaN")):
        code, _, err = run("predict", model, str(tmp_path / name))
        assert_one_line_error(code, err, 1, match)


@needs_checkpoint
def test_info_on_a_corrupt_file(tmp_path):
    bad = tmp_path / f"bad{cli.MODEL_SUFFIX}"
    bad.write_bytes(b"\x00garbage" * 10)
    code, _, err = run("info", str(bad))
    assert_one_line_error(code, err, 1, "cannot read model file")


def test_python_dash_m_is_the_command():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ok = subprocess.run([sys.executable, "-m", "epynn_jax", "--help"], capture_output=True,
                        text=True, env=env, cwd=ROOT, timeout=120)
    assert ok.returncode == 0 and "train" in ok.stdout and "predict" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "epynn_jax", "train", "nope"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "unknown example" in bad.stderr


def test_every_recipe_builds_on_its_data():
    """Each model `train` offers fits its example's data (shape inference only, no training)."""
    from epynn_jax import network
    from epynn_jax.data import examples

    for name, models in cli._examples().items():
        if name == "digits":
            pytest.importorskip("sklearn")
        data, _ = examples.prepare(name, quick=True, synthetic=True)
        X, Y = data["dtrain"]
        for model, recipe in models.items():
            net = network.build(recipe.layers(), X.shape[1:])
            assert net.output_shape == Y.shape[1:], (name, model)


def test_a_diverging_run_is_a_one_line_error():
    try:
        from epynn_jax.errors import NonFiniteError  # noqa: F401
    except ImportError:
        pytest.skip("fit has no divergence check on this branch")
    # lr 1e38: the float32 update overflows to inf. (A large lr alone no longer gives NaN:
    # the BCE of a saturated softmax is clipped to stay finite, maths/losses.py.)
    code, _, err = run("train", "dummy_string", "--quick", "--lr", "1e38", "--epochs", "3",
                       "--no-plot", "--out", "/nonexistent-not-written")
    assert_one_line_error(code, err, 1, "NaN")
