"""The persistent compilation cache: off on import, on in the command and the script runner.

A library changes no global setting when it is imported; ``epynn-jax`` and
``python -m epynn_jax.compat`` switch the cache on (opt out: ``EPYNN_JAX_NO_CACHE=1``),
and library users call :func:`epynn_jax.config.enable_compilation_cache`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from epynn_jax import config

ROOT = Path(__file__).resolve().parents[2]
# Every JAX setting, before and after importing the package and the facade.
SNAPSHOT = """
import json, jax
def snap():
    return {k: repr(v) for k, v in sorted(jax.config.values.items())}
before = snap()
import epynn_jax, epynn_jax.compat
import epynn_jax.compat.network.models, epynn_jax.compat.embedding.models
after = snap()
print('CHANGED', json.dumps({k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}))
"""
CLI_PROBE = ("import io; from epynn_jax import cli, config; "
             "cli.main(['list'], out=io.StringIO()); print('DIR', config.compilation_cache_dir())")
SCRIPT = "import epynn_jax.config as c; print('DIR', c.compilation_cache_dir())\n"


def _env(**overrides) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EPYNN_JAX_NO_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")
           and not k.startswith("JAX_")}
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run(argv: list[str], **env_overrides) -> str:
    return subprocess.run([sys.executable, *argv], env=_env(**env_overrides), capture_output=True,
                          text=True, timeout=120, check=True).stdout


def _dir(stdout: str) -> str:
    return [line for line in stdout.splitlines() if line.startswith("DIR")][0][4:]


@pytest.fixture
def restore_cache_config():
    keys = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs")
    saved = {k: getattr(jax.config, k) for k in keys}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)
    config._reset_jax_cache()


def test_default_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert config.default_cache_dir() == tmp_path / "epynn_jax" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config.default_cache_dir() == Path.home() / ".cache" / "epynn_jax" / "jax"


def test_import_changes_no_jax_setting(tmp_path):
    out = _run(["-c", SNAPSHOT], XDG_CACHE_HOME=str(tmp_path))
    changed = json.loads(out.split("CHANGED", 1)[1])
    assert changed == {}, f"importing epynn_jax changed JAX settings: {changed}"
    assert not (tmp_path / "epynn_jax").exists(), "importing created a cache directory"


def test_command_turns_cache_on_in_xdg_dir(tmp_path):
    assert _dir(_run(["-c", CLI_PROBE], XDG_CACHE_HOME=str(tmp_path))) == str(
        tmp_path / "epynn_jax" / "jax")


def test_script_runner_turns_cache_on_in_xdg_dir(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    out = _run(["-m", "epynn_jax.compat", str(script)], XDG_CACHE_HOME=str(tmp_path))
    assert _dir(out) == str(tmp_path / "epynn_jax" / "jax")


def test_env_var_opts_out(tmp_path):
    assert _dir(_run(["-c", CLI_PROBE], XDG_CACHE_HOME=str(tmp_path),
                     EPYNN_JAX_NO_CACHE="1")) == "None"
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    assert _dir(_run(["-m", "epynn_jax.compat", str(script)], XDG_CACHE_HOME=str(tmp_path),
                     EPYNN_JAX_NO_CACHE="1")) == "None"


def test_runner_respects_a_directory_chosen_in_jax(tmp_path):
    chosen = tmp_path / "mine"
    out = _run(["-c", CLI_PROBE], XDG_CACHE_HOME=str(tmp_path),
               JAX_COMPILATION_CACHE_DIR=str(chosen))
    assert _dir(out) == str(chosen)


def test_compiled_programs_land_in_the_cache(tmp_path, restore_cache_config):
    where = config.enable_compilation_cache(True, tmp_path, min_compile_time_secs=0.0)
    assert where == str(tmp_path) and config.compilation_cache_dir() == str(tmp_path)
    jax.jit(lambda x: jnp.sin(x) * 3.25 + 0.125)(jnp.arange(7.0)).block_until_ready()
    assert any(tmp_path.iterdir()), "nothing was written to the persistent cache"


def test_switch_off(tmp_path, restore_cache_config):
    config.enable_compilation_cache(True, tmp_path)
    assert config.enable_compilation_cache(False) is None
    assert config.compilation_cache_dir() is None
    jax.jit(lambda x: jnp.cos(x) * 1.75)(jnp.arange(5.0)).block_until_ready()
    assert not any(tmp_path.iterdir())


def test_bad_arguments():
    with pytest.raises(TypeError):
        config.enable_compilation_cache("yes")
    with pytest.raises(ValueError):
        config.enable_compilation_cache(True, min_compile_time_secs=-1)


FREEZE_PROBE = ("import gc, sys; from epynn_jax import cli, config; "
                "assert gc.get_freeze_count() == 0; "
                "config.setup(freeze_gc=sys.argv[1] == 'on'); "
                "print('FROZEN', gc.get_freeze_count())")


@pytest.mark.parametrize("flag", ["on", "off"])
def test_setup_freezes_the_objects_alive_for_the_collector(tmp_path, flag):
    """The programs' setup moves what the imports made to the collector's permanent
    generation (a full pass over it cost the first fit 30-35 ms); freeze_gc=False
    does not."""
    out = _run(["-c", FREEZE_PROBE, flag], XDG_CACHE_HOME=str(tmp_path))
    frozen = int(out.split("FROZEN", 1)[1])
    assert (frozen > 10_000) if flag == "on" else (frozen == 0)


def test_command_freezes_the_collector(tmp_path):
    probe = ("import gc, io; from epynn_jax import cli; cli.main(['list'], out=io.StringIO()); "
             "print('FROZEN', gc.get_freeze_count())")
    assert int(_run(["-c", probe], XDG_CACHE_HOME=str(tmp_path)).split("FROZEN", 1)[1]) > 10_000
