"""Temporary files of interrupted writes: a killed writer's are removed by a later save, a live
writer's never.

``atomic_write`` writes ``.<name>.XXXXXXXX.tmp`` next to the target and holds an advisory lock
on it while writing. A later save of the same target removes such files that nobody holds
and that have not been written to for ``STALE_TEMP_AGE_S`` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import pytest

from epynn_jax import layers, network
from epynn_jax.io import checkpoint as ckpt
from epynn_jax.io import load_model, save_model

ROOT = Path(__file__).resolve().parents[2]

# Saves a model to argv[1], and stops for good in the middle of writing the archive.
WRITER = textwrap.dedent("""
    import sys, time
    import jax
    import numpy as np
    from epynn_jax import layers, network
    from epynn_jax.io import save_model

    net = network.build([layers.Dense(64)], (256,))
    params = network.init(net, jax.random.key(0))
    real = np.lib.format.write_array

    def stuck(*args, **kwargs):
        real(*args, **kwargs)
        print("writing", flush=True)
        time.sleep(600)

    np.lib.format.write_array = stuck
    save_model(sys.argv[1], net, params)
""")


def _start_writer(target: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "writing":
        proc.kill()
        raise AssertionError(f"writer did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc


def _temps(directory: Path, name: str) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith(f".{name}.")
                  and p.name.endswith(".tmp"))


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture(scope="module")
def small():
    net = network.build([layers.Dense(2)], (3,))
    return net, network.init(net, jax.random.key(0))


def test_a_killed_writers_temp_file_is_removed_by_the_next_save(tmp_path, small):
    target = tmp_path / "last.epynn"
    proc = _start_writer(target)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 in the middle of the write
    proc.wait(timeout=30)
    (left,) = _temps(tmp_path, target.name)
    assert left.stat().st_size > 0 and not target.exists()
    _age(left, ckpt.STALE_TEMP_AGE_S + 5)  # time passes
    net, params = small
    save_model(target, net, params)
    assert _temps(tmp_path, target.name) == []
    assert load_model(target).net == net


def test_a_live_writers_temp_file_is_kept(tmp_path, small):
    target = tmp_path / "last.epynn"
    proc = _start_writer(target)
    try:
        (live,) = _temps(tmp_path, target.name)
        _age(live, ckpt.STALE_TEMP_AGE_S + 5)  # old, but its writer still holds it
        net, params = small
        save_model(target, net, params)
        assert live.exists()
        assert _temps(tmp_path, target.name) == [live]
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_only_old_unheld_temp_files_of_the_same_target_are_removed(tmp_path, small):
    net, params = small
    target = tmp_path / "m.epynn"
    stale = tmp_path / ".m.epynn.abc_1234.tmp"
    young = tmp_path / ".m.epynn.young123.tmp"
    others = [tmp_path / ".other.epynn.abc_1234.tmp",  # another target's
              tmp_path / ".m.epynn.abc_1234.tmp.keep",  # not our pattern
              tmp_path / ".m.epynn.toolongname.tmp",
              tmp_path / "m.epynn.abc_1234.tmp",
              tmp_path / "notes.txt"]
    for p in [stale, young, *others]:
        p.write_bytes(b"x" * 10)
    for p in [stale, *others]:
        _age(p, ckpt.STALE_TEMP_AGE_S + 5)
    os.mkdir(tmp_path / ".m.epynn.dir12345.tmp")  # a directory is never touched
    _age(tmp_path / ".m.epynn.dir12345.tmp", ckpt.STALE_TEMP_AGE_S + 5)
    save_model(target, net, params)
    assert not stale.exists()
    assert young.exists() and all(p.exists() for p in others)
    assert (tmp_path / ".m.epynn.dir12345.tmp").is_dir()


def test_a_temp_file_that_is_a_symlink_is_not_followed(tmp_path, small):
    net, params = small
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / ".m.epynn.link1234.tmp"
    link.symlink_to(victim)
    os.utime(link, (time.time() - 3600,) * 2, follow_symlinks=False)
    save_model(tmp_path / "m.epynn", net, params)
    assert victim.read_text() == "keep me"
