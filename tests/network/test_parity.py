"""Parity with EpyNN 1.2.13 on Dense networks, in float64, within 1e-8 relative.

Both libraries start from the same weights (ours, copied into EpyNN's layers).
We compare forward outputs, every ``g`` entry, and the parameters and metrics
after several epochs of training: full batch through ``network.fit`` (the
shuffle only changes the summation order), and mini-batches through a loop of
``network.train_step`` fed EpyNN's own batches in EpyNN's order.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.maths.activations import ActivationHPars
from epynn_jax.maths.schedules import Schedule, learning_rates
from epynn_jax.testing import relative_error

RTOL = 1e-8
BASE_HPARS = {"learning_rate": 0.1, "schedule": "steady", "decay_k": 0, "cycle_epochs": 0,
              "cycle_descent": 0, "ELU_alpha": 0.5, "LRELU_alpha": 0.1,
              "softmax_temperature": 1}


@pytest.fixture(scope="module")
def E():
    """The EpyNN modules used here."""
    from conftest import load_epynn

    load_epynn()
    from epynn.commons import maths
    from epynn.dense.models import Dense
    from epynn.embedding.models import Embedding
    from epynn.flatten.models import Flatten
    from epynn.network.models import EpyNN

    return dict(maths=maths, Dense=Dense, Embedding=Embedding, Flatten=Flatten, EpyNN=EpyNN)


def _data(m=24, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 3, 2))
    Y = np.eye(k)[rng.integers(0, k, m)]
    return X, Y


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _ours(hidden, out, k, hp):
    """Flatten -> Dense(5, hidden[0]) [-> Dense(4, hidden[1])] -> Dense(k, out)."""
    hidden = (hidden,) if isinstance(hidden, str) else hidden
    hpars = ActivationHPars(ELU_alpha=hp["ELU_alpha"], LRELU_alpha=hp["LRELU_alpha"],
                            softmax_temperature=hp["softmax_temperature"],
                            epynn_softmax_grad=hp["softmax_temperature"] != 1)
    dense = [layers.Dense(u, a, hpars=hpars) for u, a in zip((5, 4), hidden)]
    net = network.build([layers.Flatten(), *dense, layers.Dense(k, out, hpars=hpars)], (3, 2))
    params = network.init(net, jax.random.key(7))
    # Non-zero biases, so that bias gradients and updates are exercised from the start.
    rng = np.random.default_rng(1)
    params = tuple({k_: v + (0.1 * rng.standard_normal(v.shape) if k_ == "b" else 0)
                    for k_, v in p.items()} for p in params)
    return net, params


def _theirs(E, hidden, out, k, X, Y, loss, hp, params, batch_size=None):
    mth = E["maths"]
    hidden = (hidden,) if isinstance(hidden, str) else hidden
    dense = [E["Dense"](u, getattr(mth, a)) for u, a in zip((5, 4), hidden)]
    model = E["EpyNN"]([E["Embedding"](X, Y, batch_size=batch_size, relative_size=(1, 0, 0)),
                        E["Flatten"](), *dense, E["Dense"](k, getattr(mth, out))])
    with _quiet():
        model.initialize(loss=loss, se_hPars=dict(hp), seed=1)
    for layer, p in zip(model.layers[1:], params):
        for name, v in p.items():
            layer.p[name] = np.array(v, dtype=np.float64)
    return model


def _assert_params_equal(model, params):
    for i, (layer, p) in enumerate(zip(model.layers[1:], params)):
        for name, v in p.items():
            err = relative_error(np.asarray(v), layer.p[name])
            assert err < RTOL, f"layer {i + 1} {name}: relative error {err:.2e}"


# (hidden activations, output activation, loss, schedule) for
# Flatten -> Dense(5, h1) -> Dense(4, h2) -> Dense(3, out): every activation as a hidden
# activation, every loss with a valid output, every schedule; softmax, sigmoid, tanh, relu,
# identity and lrelu as outputs (elu as output: test_dense.py's EpyNN Dense comparison).
CASES = [
    (("identity", "relu"), "softmax", "MSE", "steady"),
    (("lrelu", "elu"), "softmax", "CCE", "exp_decay"),
    (("sigmoid", "tanh"), "sigmoid", "BCE", "lin_decay"),
    (("softmax", "relu"), "tanh", "MAE", "exp_decay"),
    (("tanh", "elu"), "relu", "MSLE", "steady"),
    (("relu", "sigmoid"), "identity", "MSE", "lin_decay"),
    (("elu", "tanh"), "lrelu", "MAE", "steady"),
]


@pytest.mark.parametrize("hidden,out,loss,sched", CASES,
                         ids=lambda v: "-".join(v) if isinstance(v, tuple) else v)
def test_forward_gradients_and_full_batch_training(x64, E, hidden, out, loss, sched):
    k, epochs = 3, 4
    X, Y = _data(k=k)
    hp = {**BASE_HPARS, "schedule": sched, "learning_rate": 0.05}
    if sched == "exp_decay":
        hp.update(cycle_epochs=2, cycle_descent=0.3)
    net, params = _ours(hidden, out, k, hp)
    model = _theirs(E, hidden, out, k, X, Y, loss, hp, params)

    # Forward.
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    A, fcs = network.forward(net, params, Xj)
    with _quiet():
        A_e = model.forward(X)
    assert relative_error(A, A_e) < RTOL

    # Every g entry (EpyNN's backward sweep without its update).
    grads, _, _, gs, bcs = network.gradients(net, params, Xj, Yj, loss)
    dA = model.training_loss(Y, A_e, deriv=True)
    with _quiet():
        for layer in reversed(model.layers):
            dA = layer.backward(dA)
            layer.compute_gradients()
    for i, layer in enumerate(model.layers[1:]):
        assert set(gs[i]) == set(layer.g)
        for name, g in gs[i].items():
            theirs = layer.g[name].reshape(g.shape)  # EpyNN's db is (u,), ours (1, u)
            err = relative_error(g, theirs)
            assert err < RTOL, f"layer {i} {name}: relative error {err:.2e}"
        err = relative_error(bcs[i]["dX"], layer.bc["dX"])
        assert err < RTOL, f"layer {i} dX: relative error {err:.2e}"

    # Training: parameters and per-epoch metrics.
    with _quiet():
        model.train(epochs, init_logs=False)
    result = network.fit(net, params, {"dtrain": (X, Y)}, epochs=epochs, loss=loss,
                         batch_size=None, schedule=Schedule.from_hpars(hp),
                         metrics=("accuracy",))
    _assert_params_equal(model, result.params)
    for name in ("accuracy", loss):
        assert relative_error(result.history[name]["dtrain"], model.metrics[name][0]) < RTOL


def test_softmax_temperature_quirk_parity(x64, E):
    """T = 3 with ``epynn_softmax_grad``: EpyNN's T-times gradient reproduced exactly."""
    k, epochs = 2, 3
    X, Y = _data(k=k, seed=3)
    hp = {**BASE_HPARS, "softmax_temperature": 3}
    net, params = _ours("tanh", "softmax", k, hp)
    model = _theirs(E, "tanh", "softmax", k, X, Y, "CCE", hp, params)
    with _quiet():
        model.train(epochs, init_logs=False)
    result = network.fit(net, params, {"dtrain": (X, Y)}, epochs=epochs, loss="CCE",
                         schedule=Schedule.from_hpars(hp))
    _assert_params_equal(model, result.params)


# lin_decay's per-epoch rates are covered by the full-batch cases above.
@pytest.mark.parametrize("sched,extra", [("steady", {}),
                                         ("exp_decay", {"cycle_epochs": 2,
                                                        "cycle_descent": 0.2})])
def test_minibatch_training_with_epynn_batches(x64, E, sched, extra):
    """Batched SGD and per-epoch learning rates: EpyNN's batches, in EpyNN's order."""
    k, epochs, batch_size = 2, 4, 5
    X, Y = _data(m=23, k=k, seed=5)          # 4 batches of 5, 3 samples dropped each epoch
    hp = {**BASE_HPARS, "schedule": sched, **extra}
    net, params = _ours("relu", "softmax", k, hp)
    model = _theirs(E, "relu", "softmax", k, X, Y, "MSE", hp, params, batch_size=batch_size)

    emb = model.embedding
    seen = []
    original = emb.training_batches

    def record(init=False):
        original(init)
        seen.append([(b.X.copy(), b.Y.copy()) for b in emb.batch_dtrain])

    emb.training_batches = record
    with _quiet():
        model.train(epochs, init_logs=False)
    assert len(seen) == epochs and all(len(b) == 4 for b in seen)
    assert all(bx.shape == (5, 3, 2) for bx, _ in seen[0])

    steps = len(seen[0])
    optimizer = network.epynn_sgd(Schedule.from_hpars(hp), epochs, steps)
    state = network.TrainState(params, optimizer.init(params), jax.random.key(0))
    step = jax.jit(network.train_step, static_argnums=(0, 1, 2))
    for batches in seen:
        for bx, by in batches:
            state, _ = step(net, optimizer, "MSE", state, jnp.asarray(bx), jnp.asarray(by))
    _assert_params_equal(model, state.params)
    # Same learning rates per epoch as EpyNN's layers used.
    np.testing.assert_allclose(learning_rates(Schedule.from_hpars(hp), epochs),
                               model.layers[2].lrate, rtol=1e-15)


def test_minibatch_fit_drops_remainder_and_shuffles(x64):
    """fit with batches: N // batch_size steps per epoch, reproducible for a fixed key."""
    X, Y = _data(m=23, k=2, seed=6)
    net, params = _ours("relu", "softmax", 2, BASE_HPARS)
    data = {"dtrain": (X, Y)}
    r1 = network.fit(net, params, data, epochs=2, batch_size=5, key=jax.random.key(3))
    r2 = network.fit(net, params, data, epochs=2, batch_size=5, key=jax.random.key(3))
    r3 = network.fit(net, params, data, epochs=2, batch_size=5, key=jax.random.key(4))
    for a, b in zip(jax.tree_util.tree_leaves(r1.params), jax.tree_util.tree_leaves(r2.params)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(r1.params),
                                                        jax.tree_util.tree_leaves(r3.params)))
    # 4 SGD steps per epoch: the optimizer's step count.
    assert int(r1.opt_state.inner_state.count) == 8
