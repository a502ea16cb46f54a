"""The persistent compilation cache: on by default, in the user cache dir, opt-out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from epynn_jax import config

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import epynn_jax; print('DIR', epynn_jax.config.compilation_cache_dir())"


def _probe(**env_overrides) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EPYNN_JAX_NO_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(env_overrides)
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("DIR")][0][4:]


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


def test_import_turns_cache_on_in_xdg_dir(tmp_path):
    assert _probe(XDG_CACHE_HOME=str(tmp_path)) == str(tmp_path / "epynn_jax" / "jax")


def test_env_var_opts_out(tmp_path):
    assert _probe(XDG_CACHE_HOME=str(tmp_path), EPYNN_JAX_NO_CACHE="1") == "None"


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
