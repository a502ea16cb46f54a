"""Ctrl-C ends an example script with one short line on stderr and status 130, no traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def sigint_not_ignored():
    """A shell may start background jobs with SIGINT ignored, and a child inherits that:
    handle it here while the child starts (the child then gets the default)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a child process")
def test_ctrl_c_during_training_prints_one_line_not_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # far more epochs than the test waits for: the signal always lands mid-run
    with sigint_not_ignored():
        proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "dummy_boolean.py"),
                                 "--epochs", "10000000"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        for line in proc.stdout:
            if line.lstrip().startswith("epoch"):  # the first epoch is done
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("dummy_boolean: interrupted during perceptron, after ")
    assert err.rstrip().endswith("of 10000000 epochs; nothing saved")
