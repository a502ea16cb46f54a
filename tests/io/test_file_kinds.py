"""Paths that are not regular files (named pipes, directories) are refused before they are
opened: ``open`` on a named pipe with no writer would wait forever."""

from __future__ import annotations

import os
import signal

import jax
import pytest

from epynn_jax import layers, network
from epynn_jax.compat.commons.library import read_model
from epynn_jax.io import checkpoint, load_checkpoint, load_model, save_model

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")

NET = network.build([layers.Dense(2)], (3,))


@pytest.fixture
def fifo(tmp_path):
    """A named pipe with no writer, and a watchdog: a read that blocks fails the test."""
    path = tmp_path / "model.epynn"
    os.mkfifo(path)

    def hung(signum, frame):
        raise TimeoutError("blocked opening a named pipe")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield path
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("read", [load_model, load_checkpoint, checkpoint.read_format,
                                  read_model],
                         ids=["load_model", "load_checkpoint", "read_format", "facade"])
def test_a_named_pipe_is_refused_without_blocking(fifo, read):
    with pytest.raises(OSError, match=r"model\.epynn is a named pipe \(FIFO\), not a regular "
                                      r"file") as info:
        read(fifo)
    assert not isinstance(info.value, TimeoutError)


def test_a_link_to_a_named_pipe_is_refused_and_a_link_to_a_file_loads(fifo, tmp_path):
    (tmp_path / "to_pipe").symlink_to(fifo)
    with pytest.raises(OSError, match="to_pipe is a named pipe"):
        load_model(tmp_path / "to_pipe")
    real = save_model(tmp_path / "real.epynn", NET, network.init(NET, jax.random.key(0)))
    (tmp_path / "to_file").symlink_to(real)
    assert load_model(tmp_path / "to_file").net == NET


def test_a_directory_is_refused_and_a_missing_file_is_not_found(tmp_path):
    with pytest.raises(OSError, match="is a directory, not a regular file"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.epynn")
