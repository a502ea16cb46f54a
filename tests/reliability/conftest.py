"""Fixtures of the reliability tests: the shared problem and its uninterrupted run."""

from __future__ import annotations

import pytest
import reliability_problem as problem

from epynn_jax import network


@pytest.fixture(scope="session")
def full_run():
    """The uninterrupted reference run of the shared problem."""
    return network.fit(problem.NET, problem.params0(), problem.data(), key=problem.train_key(),
                       **problem.KW)

