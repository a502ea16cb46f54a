"""``import epynn_jax`` is cheap on top of ``import jax``: nothing heavy until it is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# optax (with its contrib modules and jax.scipy.stats) was most of the import time;
# the facade, the model files and plotting are imported by what uses them.
HEAVY = ("optax", "jax.scipy.stats", "epynn_jax.compat", "epynn_jax.io", "matplotlib", "epynn")

SCRIPT = r"""
import json, sys, time
import jax
before = set(sys.modules)
t0 = time.perf_counter()
import epynn_jax
from epynn_jax import layers, network
seconds = time.perf_counter() - t0
print("RESULT " + json.dumps({"seconds": seconds, "new": sorted(set(sys.modules) - before)}))
"""


def _run() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-2000:]
    return json.loads(line[-1][len("RESULT "):])


def test_import_imports_nothing_heavy():
    new = _run()["new"]
    assert any(m == "epynn_jax.network.epoch" for m in new)  # the probe sees the import
    heavy = [m for m in new if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert not heavy, heavy


def test_import_takes_under_a_fifth_of_a_second():
    """The best of three fresh processes (the machine may be busy): measured 0.02 s with
    compiled bytecode, 0.06 s without, against 0.1-0.28 s when optax was imported."""
    best = min(_run()["seconds"] for _ in range(3))
    assert best < 0.2, best


def test_the_command_starts_without_jax():
    """``epynn-jax`` installs its Ctrl-C handler before JAX is imported (a Ctrl-C during
    that import was lost): the package and its command module import no JAX."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = ("import sys, epynn_jax, epynn_jax.cli; "
            "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
