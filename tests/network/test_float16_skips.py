"""A float64 policy's warning names the user's line, not one in the library."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

from epynn_jax import io, layers, network
from epynn_jax.network.precision import Policy

# -- a float64 policy's warning points at the user's line -------------------------------


def _float64_warnings(make):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
    return [w for w in caught if "64-bit mode is off" in str(w.message)]


@pytest.mark.parametrize("how", ["Policy", "build", "fit"])
def test_the_float64_warning_names_the_user_s_line(how):
    if jax.config.jax_enable_x64:
        pytest.skip("64-bit mode is on: float64 is float64, nothing to warn")
    net = network.build([layers.Dense(2)], (3,))
    data = {"dtrain": (np.ones((4, 3), np.float32), np.ones((4, 2), np.float32))}
    makers = {
        "Policy": lambda: Policy(compute_dtype="float64"),
        "build": lambda: network.build([layers.Dense(2)], (3,), policy="float64"),
        "fit": lambda: network.fit(net, network.init(net, 0), data, epochs=1, loss="MSE",
                                   policy="float64"),
    }
    caught = _float64_warnings(makers[how])
    assert caught and all(w.filename == __file__ for w in caught), \
        [(w.filename, w.lineno) for w in caught]


def test_the_float64_warning_of_load_model_names_the_user_s_line(tmp_path):
    if jax.config.jax_enable_x64:
        pytest.skip("64-bit mode is on: float64 is float64, nothing to warn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = network.build([layers.Dense(2)], (3,), policy="float64")
    io.save_model(tmp_path / "m", net, network.init(net, 0))
    caught = _float64_warnings(lambda: io.load_model(tmp_path / "m"))
    assert caught and all(w.filename == __file__ for w in caught), \
        [(w.filename, w.lineno) for w in caught]
