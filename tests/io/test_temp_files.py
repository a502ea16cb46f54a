"""Temporary files of interrupted writes: a killed writer's are removed by a later save, a live
writer's never.

``atomic_write`` writes ``.<name>.XXXXXXXX.tmp`` next to the target and holds an advisory lock
on it while writing. A later save of the same target removes such files that nobody holds
and that have not been written to for ``STALE_TEMP_AGE_S`` seconds.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
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


@pytest.mark.parametrize("length", [242, 250, 255])
def test_a_name_up_to_the_file_systems_limit_saves_and_leaves_no_temp_file(tmp_path, small,
                                                                         length):
    net, params = small
    target = tmp_path / ("m" * (length - len(".epynn")) + ".epynn")
    target.write_bytes(b"old")  # the name itself is legal
    save_model(target, net, params)
    assert load_model(target).net == net
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_killed_writers_temp_file_of_a_long_name_is_found_and_only_its_own(tmp_path, small):
    """A long name's temp files are named after its start and a hash of it: the next save
    of that target removes them, a save of a target with the same start does not."""
    net, params = small
    start = "m" * 240
    target, sibling = tmp_path / f"{start}_a.epynn", tmp_path / f"{start}_b.epynn"
    proc = _start_writer(target)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (left,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert left.name.startswith(f".{start[:200]}") and len(os.fsencode(left.name)) <= 255
    _age(left, ckpt.STALE_TEMP_AGE_S + 5)
    save_model(sibling, net, params)
    assert left.exists()
    save_model(target, net, params)
    assert not left.exists() and load_model(target).net == net


@pytest.fixture
def umask():
    """Set the process's umask for one test (``umask(0o027)``), restored after."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664),
                                        (0o077, 0o600)])
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path, small, umask, mask, mode):
    net, params = small
    umask(mask)
    saved = save_model(tmp_path / "m.epynn", net, params)
    with open(tmp_path / "plain", "w"):
        pass
    assert stat.S_IMODE(saved.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o600, 0o664, 0o640])
def test_a_replaced_file_keeps_its_mode(tmp_path, small, umask, mode):
    net, params = small
    umask(0o022)
    target = tmp_path / "m.epynn"
    target.write_bytes(b"old")
    target.chmod(mode)
    save_model(target, net, params)
    assert stat.S_IMODE(target.stat().st_mode) == mode and load_model(target).net == net


def test_a_target_that_is_not_a_regular_file_is_refused_and_a_link_written_through(tmp_path):
    """Replacing a pipe or a device would swap it for a plain file (as root, even
    /dev/null); a symbolic link keeps pointing at the file it names, now new."""
    fifo, folder = tmp_path / "fifo", tmp_path / "folder"
    os.mkfifo(fifo)
    folder.mkdir()
    for target in (fifo, folder):  # (never /dev/null itself: a test run as root)
        with pytest.raises(OSError, match="exists and is not a regular file"):
            ckpt.atomic_write(target, lambda f: f.write(b"new"))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and folder.is_dir()
    real, link = tmp_path / "real.bin", tmp_path / "link.bin"
    real.write_bytes(b"old")
    link.symlink_to(real)
    ckpt.atomic_write(link, lambda f: f.write(b"new"))
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_a_path_that_cannot_be_written_is_named_before_any_temp_file(tmp_path):
    """A missing directory, a file where the directory goes, a path ending in a separator
    (it would have made a file of that name) and a loop of links (it was replaced by a
    file): each refused with an error naming the path, never the temp file."""
    (tmp_path / "file").write_bytes(b"x")
    loop = tmp_path / "loopa"
    loop.symlink_to(tmp_path / "loopb")
    (tmp_path / "loopb").symlink_to(loop)
    for target, error, match in (
            (tmp_path / "nodir" / "m.epynn", FileNotFoundError, "directory .*nodir does not exist"),
            (tmp_path / "file" / "m.epynn", NotADirectoryError, "file is a file, not a directory"),
            (f"{tmp_path}{os.sep}newname{os.sep}", IsADirectoryError, "ends with a path separator"),
            (loop, OSError, "a loop of symbolic links")):
        with pytest.raises(error, match=match) as caught:
            ckpt.atomic_write(target, lambda f: f.write(b"new"))
        assert f"cannot write {target}" in str(caught.value) and ".tmp" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "loopa", "loopb"]
    assert loop.is_symlink() and (tmp_path / "file").read_bytes() == b"x"


# Saves a model over argv[1] under a file-size limit smaller than the model (a full disk, as
# the writer sees it), and prints the error it gets.
LIMITED = textwrap.dedent("""
    import resource, signal, sys
    import jax
    from epynn_jax import layers, network
    from epynn_jax.io import save_model

    net = network.build([layers.Dense(64)], (256,))
    params = network.init(net, jax.random.key(1))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (its default ends the process)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    try:
        save_model(sys.argv[1], net, params)
    except OSError as err:
        print(type(err).__name__, err.errno, err.filename, "|", err)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_write_past_the_file_size_limit_names_the_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "model.epynn"
    net = network.build([layers.Dense(64)], (256,))
    save_model(target, net, network.init(net, jax.random.key(0)))
    before = target.read_bytes()
    assert len(before) > 20_000
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", LIMITED, str(target)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    kind, number, filename, message = (*out.stdout.split(" ", 3)[:3],
                                       out.stdout.split("|", 1)[1].strip())
    assert (kind, int(number), filename) == ("OSError", errno.EFBIG, str(target)), out.stdout
    assert "nothing written to it; a file there before is kept" in message
    assert target.read_bytes() == before  # the old model, whole
    assert _temps(tmp_path, target.name) == []
    load_model(target)
