"""The same seed gives bitwise the same parameters, in one process and in another."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import pytest
import reliability_problem as problem
from reliability_problem import KW, NET, same_tree

from epynn_jax import network


@pytest.fixture(scope="module")
def full_run():
    """The uninterrupted reference run of the shared problem."""
    return problem.reference_run()


ROOT = Path(__file__).resolve().parents[2]


def _run(seed: int = 2):
    return network.fit(NET, problem.params0(), problem.data(), key=jax.random.key(seed), **KW)


def test_two_fits_in_one_process_are_identical(full_run):
    again = _run()
    chex.assert_trees_all_equal(again.params, full_run.params, strict=True)
    assert again.history == full_run.history
    assert not same_tree(_run(seed=3).params, full_run.params)  # the seed does matter


def test_a_fit_in_a_subprocess_is_identical(full_run):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)])}
    out = subprocess.run([sys.executable, str(Path(problem.__file__))], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split()[-1] == problem.digest(full_run.params)
