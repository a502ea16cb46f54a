"""float16's skipped steps are reported, and a float64 policy's warning names the user's line.

Under a float16 policy ``fit`` trains behind dynamic loss scaling: a step whose
gradients are not finite is skipped and the scale halves. A run whose every step was
skipped returned its starting parameters without a word; it now warns
(:class:`~epynn_jax.network.optim.SkippedStepsWarning`), and ``FitResult.skipped_steps``
counts the skipped steps of every float16 fit.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import optax
import pytest

from epynn_jax import io, layers, network
from epynn_jax.network import optim
from epynn_jax.network.precision import Policy


def _data(scale: float):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 3)).astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[(X[:, 0] > 0).astype(int)]
    return {"dtrain": ((X * scale).astype(np.float32), Y)}


def _net():
    return network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (3,),
                         policy="float16")


def _fit(data, **kw):
    net = _net()
    params = network.init(net, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = network.fit(net, params, data, **{"epochs": 3, "batch_size": 6, "loss": "CCE",
                                                   "key": 0, **kw})
    return params, result, [w for w in caught if "skipped" in str(w.message)]


def _too_high():
    return optim.loss_scaling(optax.sgd(0.1), initial=2.0**24)


@pytest.mark.parametrize("stream", [False, True])
def test_a_float16_fit_whose_every_step_was_skipped_warns(stream):
    # a loss scale of 2**24 on a short run: the scaled gradients are beyond float16's range
    # at every scale tried (2**24 halved at each step), all 6 steps (3 epochs of 2 batches)
    # were skipped, and the parameters are the starting ones (several epochs per compiled
    # call, or streamed)
    params, result, caught = _fit(_data(1.0), optimizer=_too_high(), stream=stream)
    for a, b in zip(params, result.params):
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    assert result.skipped_steps == 6
    assert len(caught) == 1, [str(w.message) for w in caught]
    w = caught[0]
    assert issubclass(w.category, optim.SkippedStepsWarning)
    assert issubclass(w.category, RuntimeWarning)
    message = str(w.message)
    assert "all 6 of 6" in message and "2**18" in message  # 2**24 halved 6 times
    assert "bfloat16" in message and "scale" in message
    assert w.filename == __file__  # the user's fit call, not a line in the library


def test_skipped_steps_are_counted_without_a_warning_when_some_steps_trained():
    # inputs of 10: the first steps' summed gradients overflow and back the scale off from
    # 2**15, then training goes on
    _, result, caught = _fit(_data(10.0), epochs=4)
    assert 0 < result.skipped_steps < 8
    assert float(result.opt_state.scale) == 2.0**15 / 2**result.skipped_steps
    assert caught == []
    # a fit without loss scaling skips nothing
    plain = network.build([layers.Dense(4, "tanh"), layers.Dense(2, "softmax")], (3,))
    assert network.fit(plain, network.init(plain, 0), _data(1.0), epochs=1, batch_size=6,
                       loss="CCE", key=0).skipped_steps == 0


def test_skipped_steps_count_per_call_across_a_resume(tmp_path):
    # the count is of the steps of this call: a resumed run counts its own
    ck = io.Checkpoints(tmp_path)
    _, first, caught = _fit(_data(1.0), optimizer=_too_high(), epochs=2, checkpoints=ck)
    assert first.skipped_steps == 4 and len(caught) == 1
    _, resumed, caught = _fit(_data(1.0), optimizer=_too_high(), epochs=3,
                              resume=io.load_checkpoint(ck.path("last")))
    assert resumed.skipped_steps == 2 and len(caught) == 1
    assert "all 2 of 2" in str(caught[0].message)


def test_loss_scaling_counts_its_steps_and_skips():
    tx = optim.loss_scaling(optax.sgd(1.0), initial=8.0)
    params = ({"W": jax.numpy.ones(2)},)
    state = tx.init(params)
    assert (int(state.steps), int(state.skipped)) == (0, 0)
    _, state = tx.update(({"W": jax.numpy.ones(2)},), state, params)
    _, state = tx.update(({"W": jax.numpy.asarray([1.0, np.inf])},), state, params)
    assert (int(state.steps), int(state.skipped)) == (2, 1)


def test_a_checkpoint_of_the_three_field_loss_scale_state_still_resumes():
    # checkpoints written before the counters hold (scale, good_steps, inner...)
    tx = optim.loss_scaling(optax.sgd(1.0))
    params = ({"W": jax.numpy.ones(2)},)
    old = [np.float32(256.0), np.int32(7)]
    restored = io.restore_opt_state(tx, params, old)
    assert float(restored.scale) == 256.0 and int(restored.good_steps) == 7
    assert (int(restored.steps), int(restored.skipped)) == (0, 0)


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


def test_float16_trains_a_softmax_classifier_as_float32_does():
    """EpyNN's cross-entropy derivative -Y/A grows without bound as an output becomes
    confidently wrong; cast to float16 (times the loss scale) it overflowed, so most steps
    were skipped and the scale fell to 2**-7 (22 of 120 steps, 0.82 accuracy against
    float32's 0.92). The output layer's backward now runs in float32."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 8)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0)]
    data = {"dtrain": (X[:192], Y[:192])}
    stack = [layers.Dense(16, "relu"), layers.Dense(3, "softmax")]
    kw = dict(epochs=20, batch_size=32, loss="CCE", key=0)
    acc = {}
    for policy in (None, "float16"):
        net = network.build(stack, (8,), policy=policy)
        result = network.fit(net, network.init(net, 0), data, **kw)
        acc[policy] = result.history["accuracy"]["dtrain"][-1]
    assert result.skipped_steps <= 12  # of 120: the scale's first back-offs
    assert acc["float16"] >= acc[None] - 0.03, acc
