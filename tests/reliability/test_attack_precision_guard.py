"""Attacks on mixed precision and the non-finite guard: hostile loss-scaling settings,
an optimizer that hides its loss scaling, parameters beyond float16, and resuming a
checkpoint across float16's loss scaling. Each either works or is refused before tracing
with an error naming the argument; none returns garbage."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from epynn_jax import io, layers, network
from epynn_jax.network import Policy, optim
from epynn_jax.network.optim import LossScaleState

NET = network.build([layers.Dense(3, "relu"), layers.Dense(2, "softmax")], (4,))
HALF = dataclasses.replace(NET, policy=Policy("float16"))
_rng = np.random.default_rng(0)
X = _rng.standard_normal((8, 4)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
DATA = {"dtrain": (X, Y)}
KW = dict(loss="CCE", batch_size=4, metrics=())


def _params():
    return network.init(NET, 0)


# -- loss scaling's arguments -----------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    dict(initial=np.float32(2.0**8)), dict(initial=np.int64(8)),
    dict(growth_interval=np.int64(3)), dict(factor=np.float32(2.0)),
])
def test_loss_scaling_takes_numpy_numbers(kwargs):
    tx = optim.loss_scaling(optax.sgd(0.1), **kwargs)
    state = tx.init(_params())
    assert state.scale.dtype == jnp.float32


@pytest.mark.parametrize("kwargs, words", [
    (dict(factor=math.inf), "factor must be a finite number > 1"),
    (dict(factor=math.nan), "factor must be a finite number > 1"),
    (dict(initial=True), "initial must be a number"),
    (dict(factor=True), "factor must be"),
    (dict(initial="8"), "initial must be a number"),
])
def test_loss_scaling_refuses_bools_and_infinite_factors(kwargs, words):
    # factor=inf took the scale from 2**15 to its floor at the first overflow, after which
    # every non-finite step went through
    with pytest.raises(ValueError, match=words):
        optim.loss_scaling(optax.sgd(0.1), **kwargs)


# -- loss scaling hidden inside another transformation -------------------------------------


@pytest.mark.parametrize("policy", [None, "float16"])
def test_loss_scaling_inside_a_chain_is_refused(policy):
    # fit scales the loss by a LossScaleState at the top of the state only: one inside a
    # chain divided every gradient by 2**15 without the loss having been multiplied
    tx = optax.chain(optax.clip(10.0), optim.loss_scaling(optax.sgd(0.1)))
    with pytest.raises(ValueError, match="fit: optimizer: loss_scaling must wrap the whole"):
        network.fit(NET, _params(), DATA, epochs=1, optimizer=tx, policy=policy, **KW)


# -- parameters beyond float16 ------------------------------------------------------------


def _big_params():
    p = _params()
    return (dict(p[0], W=p[0]["W"] * 1e5), p[1])


@pytest.mark.parametrize("call", ["predict", "evaluate", "fit"])
def test_parameters_beyond_float16_are_refused_under_a_float16_policy(call):
    # cast to float16 they were inf, and predict returned NaN rows without a word
    run = {"predict": lambda p: network.predict(HALF, p, X),
           "evaluate": lambda p: network.evaluate(HALF, p, X, Y, ["CCE"]),
           "fit": lambda p: network.fit(HALF, p, DATA, epochs=1, **KW)}[call]
    with pytest.raises(ValueError, match=rf"{call}: layer 0 \(Dense\) parameter 'W' holds "
                                         r"values up to .* beyond float16"):
        run(_big_params())
    assert np.all(np.isfinite(network.predict(NET, _big_params(), X)))  # float32 takes them


# -- resuming across float16's loss scaling -------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """``{policy: last checkpoint}`` of 1 epoch under the default policy and float16."""
    out = {}
    for policy in (None, "float16"):
        d = tmp_path_factory.mktemp(f"ck_{policy}")
        network.fit(NET, _params(), DATA, epochs=1, policy=policy,
                    checkpoints=io.Checkpoints(d, every=1), **KW)
        out[policy] = io.load_checkpoint(d / "last.epynn")
    return out


@pytest.mark.parametrize("saved, resumed", [(None, "float16"), ("float16", "float32"),
                                            ("float16", "bfloat16")])
def test_a_checkpoint_resumes_across_float16_s_loss_scaling(checkpoints, saved, resumed):
    # the docs say a checkpoint resumes under another policy; across float16 the optimizer
    # state's structure differs by the loss scale, and resuming raised
    ck = checkpoints[saved]
    result = network.fit(NET, None, DATA, epochs=2, resume=ck, policy=resumed, **KW)
    assert isinstance(result.opt_state, LossScaleState) == (resumed == "float16")
    inner = result.opt_state.inner if resumed == "float16" else result.opt_state
    # the SGD's step count (its last leaf) carried over, 2 more steps on (a float16 run may
    # skip its first step while its scale backs off from 2**15)
    # (a float16 state's leaves end with the wrapped state's, then its two counters)
    saved_count = ck.opt_state[-3 if saved == "float16" else -1]
    count, before = int(jax.tree.leaves(inner)[-1]), int(np.asarray(saved_count))
    assert before + (1 if resumed == "float16" else 2) <= count <= before + 2
    assert count > 2  # more than a fresh state's 2 steps could count
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(result.params))


def test_parameters_within_float16_are_read_once(monkeypatch):
    """The range check reads a JAX array once: it is immutable (predict in a loop under a
    float16 policy does not read every parameter back at every call)."""
    from epynn_jax.network import checks

    net = network.build([layers.Dense(3, "softmax")], (4,), policy="float16")
    params = network.init(net, 0)
    reads = []
    real = checks._max_abs
    monkeypatch.setattr(checks, "_max_abs", lambda a: (reads.append(a.shape), real(a))[1])
    checks.check_params_finite(net, params)
    assert sorted(reads) == [(1, 3), (4, 3)]
    checks.check_params_finite(net, params)
    assert len(reads) == 2
