"""Ctrl-C during ``epynn-jax train``: a checkpoint, the command that resumes it, the same end.

The first test sends a real SIGINT to a real ``epynn-jax train`` process. So
that the signal surely lands mid-run on a loaded machine, that process's
reporter sleeps 5 ms an epoch (a test hook in the driver below, nothing in
the command itself); the run then resumes in this process, at full speed, and
must end bitwise where an uninterrupted run ends.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from epynn_jax import cli
from epynn_jax.errors import TrainingInterrupted
from epynn_jax.io import checkpoint, report

ROOT = Path(__file__).resolve().parents[2]

DRIVER = """
import sys, time
from epynn_jax import cli
from epynn_jax.io import report

call = report.Reporter.__call__

def slow(self, epoch, history):  # 5 ms an epoch: the signal lands mid-run
    time.sleep(0.005)
    return call(self, epoch, history)

report.Reporter.__call__ = slow
cli.run()  # the program: main, then exit (os._exit after an interrupt)
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def sigint_not_ignored():
    """A shell may start background jobs with SIGINT ignored, and a child inherits that:
    handle it here while the child starts (the child then gets the default)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def start(argv: list[str], cwd: Path, driver: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-c", driver] if driver else [sys.executable, "-m", "epynn_jax"]
    with sigint_not_ignored():
        return subprocess.Popen([*command, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def interrupt_after_header(proc: subprocess.Popen, wait: float,
                           sig: int = signal.SIGINT) -> tuple[str, str]:
    """Wait for the table header (the first epoch is done), then ``sig``; (stdout, stderr)."""
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.lstrip().startswith("epoch"):
                break
        time.sleep(wait)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return "".join(seen) + out, err


def load_params(path: Path) -> tuple[list[np.ndarray], dict]:
    model = checkpoint.load_model(path)
    return [np.asarray(v) for p in model.params for _, v in sorted(p.items())], model.history


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a child process")
def test_ctrl_c_saves_a_checkpoint_and_the_printed_command_resumes_to_the_same_model(
        tmp_path, monkeypatch):
    epochs, out = 2000, tmp_path / "out"
    argv = ["train", "dummy_boolean", "--epochs", str(epochs), "--seed", "3", "--no-plot",
            "--out", str(out)]
    proc = start(argv, tmp_path, DRIVER)
    stdout, stderr = interrupt_after_header(proc, 0.5)
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr
    said, command_line = stderr.splitlines()
    assert said.startswith("epynn-jax train: interrupted after ")
    done = int(said.split("interrupted after ")[1].split()[0])
    assert 1 <= done < epochs and f"of {epochs} epochs" in said
    ck_path = out / "dummy_boolean_perceptron.checkpoint" / "last.epynn"
    assert f"checkpoint saved to {ck_path}" in said
    ck = checkpoint.load_checkpoint(ck_path)
    assert ck.epoch == done and len(ck.history["accuracy"]["dtrain"]) == done
    assert not (out / "dummy_boolean_perceptron.epynn").exists()  # the run is not finished

    command = shlex.split(command_line)
    assert command[:3] == ["epynn-jax", "train", "dummy_boolean"]
    assert command[-2:] == ["--resume", str(ck_path)]
    trained, call = [], report.Reporter.__call__
    with monkeypatch.context() as m:  # record the epochs the resumed run trains
        m.setattr(report.Reporter, "__call__",
                  lambda self, epoch, history: trained.append(epoch) or call(self, epoch, history))
        code, resumed_out, err = run(*command[1:])
    assert code == 0, err
    assert trained == list(range(done, epochs))  # only the epochs the interrupted run lacked
    assert f"resumed at epoch {done}" in resumed_out
    assert f"(epochs {done + 1} to {epochs})" in resumed_out
    assert not ck_path.parent.exists()  # the finished run's checkpoint is removed

    code, plain_out, err = run(*argv[:-1], str(tmp_path / "plain"))
    assert code == 0, err
    resumed, resumed_history = load_params(out / "dummy_boolean_perceptron.epynn")
    plain, plain_history = load_params(tmp_path / "plain" / "dummy_boolean_perceptron.epynn")
    assert all(np.array_equal(a, b) for a, b in zip(resumed, plain, strict=True))
    assert resumed_history == plain_history and len(plain_history["MSE"]["dval"]) == epochs

    def final(text: str) -> str:
        return next(line for line in text.splitlines() if "; final " in line).split("; final ")[1]

    assert final(resumed_out) == final(plain_out)


def test_an_error_mid_run_saves_a_checkpoint_and_prints_the_resume_command(tmp_path,
                                                                          monkeypatch):
    """An error after some epochs (here the reporter's: a full disk under its log, say)
    ends the command with the error, and, as Ctrl-C does, a checkpoint and the command that
    resumes it; the resumed run ends where an uninterrupted one does."""
    call = report.Reporter.__call__

    def full_at_5(self, epoch, history):
        call(self, epoch, history)
        if epoch + 1 == 5:
            raise OSError(28, "No space left on device")

    argv = ["train", "dummy_boolean", "--epochs", "12", "--lr", "0.05", "--no-plot"]
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(report.Reporter, "__call__", full_at_5)
        code, _, err = run(*argv, "--out", str(out))
    assert code == 1
    said, where, command_line = err.splitlines()
    assert said == "epynn-jax train: error: OSError: [Errno 28] No space left on device"
    ck_path = out / "dummy_boolean_perceptron.checkpoint" / "last.epynn"
    assert where == f"after 5 of 12 epochs; checkpoint saved to {ck_path}. Resume with:"
    assert checkpoint.load_checkpoint(ck_path).epoch == 5
    code, _, err = run(*shlex.split(command_line)[1:])
    assert code == 0, err
    code, _, err = run(*argv, "--out", str(tmp_path / "plain"))
    assert code == 0, err
    resumed, _ = load_params(out / "dummy_boolean_perceptron.epynn")
    plain, _ = load_params(tmp_path / "plain" / "dummy_boolean_perceptron.epynn")
    assert all(np.array_equal(a, b) for a, b in zip(resumed, plain, strict=True))


def test_an_error_before_an_epoch_is_done_is_one_line_and_leaves_no_folder(tmp_path,
                                                                          monkeypatch):
    def failing(net, params, data, *, directory, resume, **options):
        raise OSError(28, "No space left on device")  # (fit gives it no fit_result)

    monkeypatch.setattr(cli, "_fit_checkpointed", failing)
    code, _, err = run("train", "dummy_boolean", "--out", str(tmp_path / "out"))
    assert code == 1
    assert err == "epynn-jax train: error: OSError: [Errno 28] No space left on device\n"
    assert not (tmp_path / "out").exists()


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    """An in-process run of dummy_boolean stopped by Ctrl-C after its 5th epoch."""
    call = report.Reporter.__call__

    def ctrl_c_at_5(self, epoch, history):
        call(self, epoch, history)
        if epoch + 1 == 5:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(report.Reporter, "__call__", ctrl_c_at_5)
        code, _, err = run("train", "dummy_boolean", "--epochs", "40", "--lr", "0.05",
                           "--out", str(out), "--no-plot")
    assert code == 130, err
    return out, err, out / "dummy_boolean_perceptron.checkpoint" / "last.epynn"


def test_the_resume_command_repeats_every_option(interrupted_run):
    out, err, ck_path = interrupted_run
    assert err.splitlines()[0] == (f"epynn-jax train: interrupted after 5 of 40 epochs; "
                                   f"checkpoint saved to {ck_path}. Resume with:")
    args = cli.build_parser().parse_args(shlex.split(err.splitlines()[1])[1:])
    assert (args.example, args.model, args.epochs, args.seed, args.lr, args.out, args.no_plot,
            args.resume) == ("dummy_boolean", "perceptron", 40, 0, 0.05, str(out), True,
                             str(ck_path))


@pytest.mark.parametrize("change,named", [
    (["--epochs", "30"], "--epochs 40"),
    (["--lr", "0.1"], "--lr 0.05"),
    (["--batch-size", "8"], "--batch-size 33"),  # full batch: the 33 training samples
])
def test_resuming_with_other_options_is_refused_naming_them(interrupted_run, change, named):
    out, _, ck_path = interrupted_run
    options = {"--epochs": "40", "--lr": "0.05", **dict([change])}
    code, stdout, err = run("train", "dummy_boolean", *[x for kv in options.items() for x in kv],
                            "--out", str(out), "--resume", str(ck_path))
    assert code == 1 and err.count("\n") == 1, err
    assert f"continues a run with {named}" in err and "epoch" not in stdout
    assert ck_path.is_file()  # a refused resume keeps the checkpoint


def test_resume_takes_the_checkpoint_folder_too(interrupted_run):
    out, _, ck_path = interrupted_run
    code, stdout, err = run("train", "dummy_boolean", "--epochs", "40", "--lr", "0.05",
                            "--out", str(out), "--no-plot", "--resume", str(ck_path.parent))
    assert code == 0, err
    assert "resumed at epoch 5" in stdout and (out / "dummy_boolean_perceptron.epynn").is_file()


def test_resume_refuses_what_is_not_a_checkpoint_of_this_model(interrupted_run, tmp_path):
    _, _, ck_path = interrupted_run
    (tmp_path / "empty").mkdir()
    model = tmp_path / "model.epynn"
    ck = checkpoint.load_checkpoint(ck_path)
    checkpoint.save_model(model, ck.net, ck.params)
    for target, match in ((tmp_path / "absent.epynn", "no such checkpoint file"),
                          (tmp_path / "empty", "a directory without a last.epynn checkpoint"),
                          (model, "a model file, not a checkpoint")):
        code, _, err = run("train", "dummy_boolean", "--out", str(tmp_path),
                           "--resume", str(target))
        assert code == 1 and err.count("\n") == 1 and match in err, err
        assert err.startswith(f"epynn-jax train: error: --resume {target}")
    code, _, err = run("train", "dummy_string", "--quick", "--out", str(tmp_path), "--resume",
                       str(ck_path))
    assert code == 1 and "is a checkpoint of another model (Dense)" in err, err


def test_ctrl_c_before_the_first_epoch_ends_says_there_is_nothing_to_resume(tmp_path,
                                                                              monkeypatch):
    def stopped(net, params, data, *, directory, resume, **options):
        directory.mkdir()
        (directory / "last.epynn").write_bytes(b"initial state")  # what fit saves at epoch 0
        raise TrainingInterrupted("stop", result=types.SimpleNamespace(epochs=0),
                                  checkpoint=directory / "last.epynn")

    monkeypatch.setattr(cli, "_fit_checkpointed", stopped)
    code, _, err = run("train", "dummy_boolean", "--out", str(tmp_path / "out"))
    assert code == 130
    assert err == ("epynn-jax train: interrupted before the first epoch finished; "
                   "nothing to resume\n")
    assert not (tmp_path / "out" / "dummy_boolean_perceptron.checkpoint").exists()


@pytest.mark.skipif(os.name != "posix", reason="sends SIGTERM to a child process")
def test_sigterm_stops_train_like_ctrl_c_with_status_143(tmp_path):
    out = tmp_path / "out"
    proc = start(["train", "dummy_boolean", "--epochs", "2000", "--no-plot", "--out", str(out)],
                 tmp_path, DRIVER)
    stdout, stderr = interrupt_after_header(proc, 0.3, signal.SIGTERM)
    assert proc.returncode == 143, (proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr and stderr.startswith("epynn-jax train: interrupted after ")
    ck = checkpoint.load_checkpoint(out / "dummy_boolean_perceptron.checkpoint" / "last.epynn")
    assert ck.epoch >= 1


def test_an_interrupt_something_swallowed_stops_at_the_next_epoch(tmp_path, monkeypatch,
                                                                  capsys):
    """Python ignores an exception raised in a garbage-collection callback (JAX has one):
    a Ctrl-C landing there is recorded, and training stops after the epoch it fell in."""
    call = report.Reporter.__call__

    def swallowing(self, epoch, history):
        if epoch == 2:
            try:  # as a gc callback would: Python reports it to sys.unraisablehook
                cli._on_signal(signal.SIGINT, None)
            except KeyboardInterrupt as e:
                sys.unraisablehook(types.SimpleNamespace(
                    exc_type=type(e), exc_value=e, exc_traceback=e.__traceback__,
                    err_msg="Exception ignored in", object=None))
        return call(self, epoch, history)

    monkeypatch.setattr(report.Reporter, "__call__", swallowing)
    code, _, err = run("train", "dummy_boolean", "--epochs", "50", "--no-plot",
                       "--out", str(tmp_path))
    assert code == 130 and err.startswith("epynn-jax train: interrupted after 3 of 50 epochs"), err
    assert "Exception ignored" not in capsys.readouterr().err  # the recorded one is not printed


@pytest.mark.parametrize("status", [0, 1, 130, 143])
def test_the_program_ends_at_once_after_an_interrupt(monkeypatch, status):
    """``run`` (the program) exits with main's status; after an interrupt by ``os._exit``,
    output flushed: JAX's teardown after a compilation cut short by Ctrl-C crashed the
    interpreter (SIGSEGV at exit, 7 of 20 trials) after the command's one line."""
    ended = []

    class Ended(BaseException):
        pass

    def _exit(code):
        ended.append(code)
        raise Ended

    monkeypatch.setattr(cli, "main", lambda: status)
    monkeypatch.setattr(cli.os, "_exit", _exit)
    if status in (130, 143):
        with pytest.raises(Ended):
            cli.run()
        assert ended == [status]
    else:
        with pytest.raises(SystemExit) as exit_:
            cli.run()
        assert exit_.value.code == status and ended == []
