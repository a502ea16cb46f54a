"""Shared fixtures: a scoped float64 switch and the EpyNN 1.2.13 oracle."""

from __future__ import annotations

import numpy as np
import pytest

from epynn_jax.testing import x64 as _x64


@pytest.fixture
def x64():
    """Run the test with ``jax_enable_x64`` on (float64 everywhere), then switch it off."""
    with _x64(True):
        yield


def load_epynn():
    """Import EpyNN 1.2.13 (the test oracle) with its one NumPy 2 incompatibility aliased.

    Skips the test when EpyNN is not installed.
    """
    if not hasattr(np, "VisibleDeprecationWarning"):
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
    return pytest.importorskip("epynn")


@pytest.fixture
def epynn():
    """The EpyNN package (skips when absent)."""
    return load_epynn()
