"""The command on hostile files: named pipes, .npy headers that lie, checkpoints whose
metadata has the wrong types. One line on stderr, never a traceback or a hang."""

from __future__ import annotations

import io
import json
import os
import signal
import zipfile

import jax
import numpy as np
import pytest

from epynn_jax import cli, layers, network
from epynn_jax.io import save_checkpoint, save_model

NET = network.build([layers.Dense(1, "sigmoid")], (11,))


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, match: str) -> None:
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("epynn-jax"), err
    assert "Traceback" not in err and match in err, err


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.epynn"
    return save_model(path, NET, network.init(NET, jax.random.key(0)))


@pytest.fixture
def watchdog():
    """A command that blocks (opening a named pipe) fails the test instead of hanging it."""
    def hung(signum, frame):
        raise TimeoutError("the command blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_predict_out_onto_the_model_or_the_input_is_refused_before_writing(model, tmp_path):
    """``--out`` naming the model file or the input (by a link, or another spelling of the
    path) would replace the file the command reads."""
    shared, model = model, tmp_path / "m.epynn"  # a copy: a regression spoils no other test
    model.write_bytes(shared.read_bytes())
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 11), np.float32))
    before = model.read_bytes(), x.read_bytes()
    link = tmp_path / "link.epynn"
    link.symlink_to(model)
    for out, role in ((model, "model file"), (link, "model file"), (x, "input"),
                      (tmp_path / "." / "x.npy", "input")):
        code, _, err = run("predict", model, x, "--out", out)
        assert_one_line_error(code, err, f"--out {out} is the {role}")
    assert (model.read_bytes(), x.read_bytes()) == before
    code, _, err = run("predict", model, x, "--out", tmp_path / "a.npy")
    assert code == 0, err
    folder = f"{tmp_path}/new/"  # a new folder's name (an existing folder: test_cli)
    code, _, err = run("predict", model, x, "--out", folder)
    assert_one_line_error(code, err, f"--out {folder} is a folder: give the path of")
    assert not (tmp_path / "new").exists()  # was written as a file named 'new'


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_named_pipes_as_model_input_or_checkpoint_are_refused(model, tmp_path, watchdog):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for argv in (["info", fifo], ["predict", fifo, "x.npy"], ["predict", model, fifo],
                 ["train", "dummy_boolean", "--quick", "--out", tmp_path, "--resume", fifo]):
        code, _, err = run(*argv)
        assert_one_line_error(code, err, f"{fifo} is a named pipe (FIFO), not a regular file")


def _npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("shape, data", [((10**11, 11), 64), ((3, 11), 3 * 11 * 4 - 1)],
                         ids=["terabytes", "one-byte-short"])
def test_a_npy_header_declaring_more_data_than_the_file_holds(model, tmp_path, shape, data):
    path = tmp_path / "x.npy"
    path.write_bytes(_npy_header(shape) + bytes(data))
    code, _, err = run("predict", model, path)
    assert_one_line_error(code, err, f"its .npy header declares an array {shape} of float32 "
                                     f"({np.prod(shape, dtype=object) * 4} bytes), but the "
                                     f"file holds {data} bytes")


def test_a_npy_file_of_exactly_its_declared_size_is_predicted(model, tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(_npy_header((3, 11)) + np.ones((3, 11), np.float32).tobytes())
    code, out, err = run("predict", model, path)
    assert code == 0 and err == "" and out.count("[") == 4, (out, err)  # 3 rows of 1 output


def _set_metadata(path, metadata: dict) -> None:
    """Rewrite the metadata of the model file at ``path`` (its arrays as they are)."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    doc = json.loads(members["model.json"])
    doc["metadata"] = metadata
    members["model.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.mark.parametrize("metadata", [{"schedule": "steady"}, {"schedule": {"rate": 1}},
                                      {"epochs": "2"}, {"batch_size": True}, {"data": 5},
                                      {"metrics": [1]}],
                         ids=["schedule-str", "schedule-fields", "epochs-str", "batch-bool",
                              "data-int", "metrics-int"])
def test_resume_from_a_checkpoint_with_metadata_of_the_wrong_type(tmp_path, metadata):
    params = network.init(NET, jax.random.key(0))
    path = save_checkpoint(tmp_path / "last.epynn", NET, params, opt_state=(),
                           key=jax.random.key(0), epoch=1)
    _set_metadata(path, metadata)  # (save_checkpoint refuses to write it)
    code, _, err = run("train", "dummy_boolean", "--quick", "--epochs", "2", "--no-plot",
                       "--out", tmp_path, "--resume", path)
    field = next(iter(metadata))
    assert_one_line_error(code, err, f"cannot read the checkpoint: {path}: checkpoint: "
                                     f"metadata {field!r} ")
