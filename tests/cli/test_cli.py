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


def test_train_saves_the_model(trained):
    _, out, folder = trained
    assert "model saved to" in out
    assert (folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}").is_file()


@pytest.mark.parametrize("argv,code,match", [
    (["train", "nope"], 1, "unknown example 'nope'"),
    (["train", "dummy_boolean", "--model", "cnn"], 1, "has no model 'cnn'"),
    (["train", "dummy_boolean", "--epochs", "0"], 2, "--epochs"),
    (["train", "dummy_boolean", "--lr", "nan"], 2, "--lr"),
    (["train", "dummy_boolean", "--batch-size", "x"], 2, "--batch-size"),
    (["train", "dummy_boolean", "--batch-size", "0"], 2, "argument --batch-size"),
    (["train", "dummy_boolean", "--epochs", "-3"], 2, "argument --epochs"),
    (["train", "dummy_boolean", "--epochs", "1e3"], 2, "argument --epochs"),
    (["train", "dummy_boolean", "--lr", "-0.1"], 2, "argument --lr"),
    (["train", "dummy_boolean", "--lr", "inf"], 2, "argument --lr"),
    (["train", "dummy_boolean", "--seed", "-1"], 2, "argument --seed"),
    (["train", "dummy_boolean", "--seed", "1.5"], 2, "argument --seed"),
    (["train", "dummy_boolean", "--seed", str(2**32)], 2, "argument --seed"),
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


def test_info_describes_the_model(trained):
    _, _, folder = trained
    code, out, err = run("info", str(folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}"))
    assert code == 0, err
    assert "Dense" in out and "W (11, 1)" in out and "parameters: 12" in out
    assert "dummy_boolean" in out  # metadata
    assert "final metrics" in out


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


def test_predict_errors(trained, tmp_path):
    _, _, folder = trained
    model = str(folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5)))
    (tmp_path / "text.npy").write_text("not numpy")
    np.save(tmp_path / "nan.npy", np.full((2, 11), np.nan))
    with open(tmp_path / "arrays.npy", "wb") as f:  # a .npz archive under a .npy name
        np.savez(f, x=np.zeros((2, 11)))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object))
    (tmp_path / "folder.npy").mkdir()
    for name, match in (("wrong.npy", "expected shape"),
                        ("text.npy", "text.npy is not a .npy file"),
                        ("arrays.npy", "is not a .npy file (it is a zip archive"),
                        ("objects.npy", "holds Python objects"),
                        ("folder.npy", "folder.npy is a directory, not a .npy file"),
                        ("missing.npy", "no such input"), ("nan.npy", "NaN")):
        code, _, err = run("predict", model, str(tmp_path / name))
        assert_one_line_error(code, err, 1, match)
        assert "allow_pickle" not in err and "pickled data" not in err, err


def test_predict_out_writes_exactly_the_given_path_and_says_so(trained, tmp_path):
    """``--out outs`` writes ``outs`` (numpy.save would write ``outs.npy``) and reports it."""
    _, _, folder = trained
    model = str(folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}")
    np.save(tmp_path / "x.npy", np.ones((3, 11), np.float32))
    target = tmp_path / "sub" / "outs"
    code, out, err = run("predict", model, str(tmp_path / "x.npy"), "--out", str(target))
    assert code == 0, err
    assert out == f"outputs (3, 1) saved to {target}\n"
    assert target.is_file() and not target.with_suffix(".npy").exists()
    assert np.load(target).shape == (3, 1)
    assert sorted(p.name for p in target.parent.iterdir()) == ["outs"]  # no temp file left
    code, _, err = run("predict", model, str(tmp_path / "x.npy"), "--out", str(tmp_path))
    assert_one_line_error(code, err, 1, "is a directory")


def test_a_directory_given_as_model_file_is_named_a_directory(tmp_path):
    for command in (["info", str(tmp_path)], ["predict", str(tmp_path), "x.npy"]):
        code, _, err = run(*command)
        assert_one_line_error(code, err, 1, f"{tmp_path} is a directory, not a model file")


def test_gitignore_covers_what_the_command_and_the_docs_write():
    lines = (ROOT / ".gitignore").read_text().splitlines()
    assert "epynn-jax-out/" in lines  # train's default --out
    assert "site/" in lines  # mkdocs build


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


def test_a_diverging_run_is_a_one_line_error_in_the_commands_words(tmp_path):
    from epynn_jax.errors import NonFiniteError  # noqa: F401 - fit's divergence check

    out = tmp_path / "never"
    # lr 1e38: the float32 update overflows to inf. (A large lr alone no longer gives NaN:
    # the BCE of a saturated softmax is clipped to stay finite, maths/losses.py.)
    code, _, err = run("train", "dummy_string", "--quick", "--lr", "1e38", "--epochs", "3",
                       "--batch-size", "16", "--no-plot", "--out", str(out))
    assert_one_line_error(code, err, 1, "training diverged")
    assert "NaN" in err and "in epoch 1" in err  # 1-based, as in the table
    assert "--lr 1e+37" in err and "this run: --lr 1e+38" in err and "--batch-size" in err
    assert "err.params" not in err and "debug=True" not in err  # Python advice is no use here
    assert not out.exists()  # nothing written, not even an empty folder


def test_an_out_folder_that_is_a_file_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    code, out, err = run("train", "dummy_boolean", "--out", str(tmp_path / "file"))
    assert_one_line_error(code, err, 1, "--out")
    assert "epoch" not in out


def test_predict_maps_a_large_input_and_streams_it(trained, tmp_path, monkeypatch):
    from epynn_jax import network

    _, _, folder = trained
    model = str(folder / f"dummy_boolean_perceptron{cli.MODEL_SUFFIX}")
    X = np.zeros((40, 11), np.float32)
    X[:20] = 1.0
    np.save(tmp_path / "x.npy", np.asfortranarray(X))  # a Fortran-ordered file maps too
    code, _, err = run("predict", model, str(tmp_path / "x.npy"), "--out",
                       str(tmp_path / "read.npy"))
    assert code == 0, err
    given = []
    real = network.predict
    monkeypatch.setattr(network, "predict", lambda net, p, X, **k: (
        given.append(type(X)), real(net, p, X, **k))[1])
    monkeypatch.setattr(cli, "MAP_INPUT_BYTES", 1000)  # the input's 1,760 bytes are "large"
    code, _, err = run("predict", model, str(tmp_path / "x.npy"), "--out",
                       str(tmp_path / "mapped.npy"))
    assert code == 0, err
    assert given == [np.memmap]  # mapped, so predict streamed it
    np.testing.assert_allclose(np.load(tmp_path / "mapped.npy"), np.load(tmp_path / "read.npy"),
                               rtol=1e-6)
