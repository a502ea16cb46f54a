"""What an attack probe of the functional API's host side (fit, predict, evaluate, their
inputs and callbacks) found broken.

Each case failed before with a JAX error from inside the compiled epoch, or was silent:
parameters (or an optimizer state) made with ``jax_enable_x64`` on and given to ``fit``
after it was switched off crashed in the scan's carry; a checkpoint saved with x64 on was
"trained on other data" when resumed with it off; a data dict with a non-str split name
raised JAX's pytree sorting error; a callback answering ``np.False_`` (``return acc <
0.9`` on NumPy numbers) did not stop training; a masked array's masked values were
trained on and predicted from; big-endian parameters (``'>f4'``, float32) were refused
as not float32; and a label vector for a one-unit output was told to be one-hot encoded
"to 1 columns".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from epynn_jax import layers, network, testing
from epynn_jax.io import Checkpoints, load_checkpoint

KW = dict(loss="CCE", batch_size=4, eval_splits=("dval",))


@pytest.fixture(scope="module")
def net():
    return network.build([layers.Dense(4, "relu"), layers.Dense(2, "softmax")], (3,))


@pytest.fixture(scope="module")
def params(net):
    return network.init(net, 0)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 3)).astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    return {"dtrain": (X, Y), "dval": (X[:8], Y[:8])}


def _f32(tree):
    """``tree`` with its float64 arrays as float32 NumPy arrays."""
    return jax.tree.map(lambda a: np.asarray(a, np.float32) if a.dtype == np.float64 else a,
                        tree)


def _same(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_float64_params_and_state_from_an_x64_run_train_after_x64_is_switched_off(net, data):
    # was: TypeError "scan body function carry input and carry output must have equal
    # types" (float64 in, float32 out), from inside the compiled epoch
    with testing.x64():
        r64 = network.fit(net, network.init(net, 0), data, epochs=1, **KW)
    assert r64.params[0]["W"].dtype == np.float64
    out = network.fit(net, r64.params, data, epochs=1, opt_state=r64.opt_state, key=1, **KW)
    want = network.fit(net, _f32(r64.params), data, epochs=1, opt_state=_f32(r64.opt_state),
                       key=1, **KW)
    assert out.params[0]["W"].dtype == np.float32
    assert _same(out.params, want.params)


def test_a_float32_optimizer_state_continues_float64_params_under_x64(net, data):
    # was: the same carry TypeError, mu float32 in and float64 out
    r32 = network.fit(net, network.init(net, 0), data, epochs=1, optimizer=optax.adam(1e-2),
                      **KW)
    with testing.x64():
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), r32.params)
        out = network.fit(net, p64, data, epochs=1, optimizer=optax.adam(1e-2),
                          opt_state=r32.opt_state, **KW)
        assert out.params[0]["W"].dtype == np.float64
        assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(out.params))


def test_a_checkpoint_saved_under_x64_resumes_with_x64_off(net, data, tmp_path):
    # was: ValueError "trained on other data": the data fingerprint hashed float64 samples
    with testing.x64():
        network.fit(net, network.init(net, 0), data, epochs=2, checkpoints=Checkpoints(tmp_path),
                    **KW)
    done = network.fit(net, None, data, epochs=3, resume=load_checkpoint(tmp_path), **KW)
    assert done.epochs == 3 and len(done.history["CCE"]["dval"]) == 3
    assert done.params[0]["W"].dtype == np.float32
    X, Y = data["dtrain"]
    other = {**data, "dtrain": (X + 1, Y)}  # other data is still noticed
    with pytest.raises(ValueError, match="trained on other data"):
        network.fit(net, None, other, epochs=3, resume=load_checkpoint(tmp_path), **KW)


def test_a_split_name_that_is_not_a_string_is_named(net, params, data):
    # was: ValueError "Comparator raised exception while sorting pytree dictionary keys."
    with pytest.raises(TypeError, match=r"fit: data's split names must be strings, got \[1\]"):
        network.fit(net, params, {**data, 1: data["dval"]}, epochs=1, **KW)


@pytest.mark.parametrize("answer", [np.False_, np.array(False), jnp.array(False)],
                         ids=["np.False_", "0-d ndarray", "jax"])
def test_a_callback_answering_a_numpy_or_jax_false_stops(net, params, data, answer):
    # was: trained on (np.False_ is not False): early stopping silently did nothing
    out = network.fit(net, params, data, epochs=3, callbacks=[lambda e, h: answer], **KW)
    assert out.epochs == 1 and len(out.history["CCE"]["dval"]) == 1


def test_a_callback_answering_a_true_or_none_goes_on(net, params, data):
    out = network.fit(net, params, data, epochs=2,
                      callbacks=[lambda e, h: np.True_, lambda e, h: None], **KW)
    assert out.epochs == 2


def test_masked_values_are_refused_not_used(net, params, data):
    # was: np.asarray dropped the mask: the values under it were trained on and predicted
    X, Y = data["dtrain"]
    masked = np.ma.masked_array(X.copy(), mask=np.zeros(X.shape, bool))
    masked[1, 2] = np.ma.masked
    match = r"X: a masked array with 1 masked values"
    with pytest.raises(ValueError, match=match):
        network.predict(net, params, masked)
    with pytest.raises(ValueError, match=match):
        network.predict(net, params, masked, stream=True)
    with pytest.raises(ValueError, match=match):
        network.evaluate(net, params, masked, Y, ("accuracy",))
    with pytest.raises(ValueError, match=match):
        network.evaluate(net, params, masked, Y, ("accuracy",), stream=True)
    with pytest.raises(ValueError, match="dtrain " + match):
        network.fit(net, params, {"dtrain": (masked, Y)}, epochs=1, **{**KW, "eval_splits": ()})
    with pytest.raises(ValueError, match="dtrain " + match):  # streamed from the host
        network.fit(net, params, {"dtrain": (masked, Y)}, epochs=1, stream=True,
                    **{**KW, "eval_splits": ()})
    unmasked = np.ma.masked_array(X.copy())  # nothing masked: its data, as before
    assert np.array_equal(network.predict(net, params, unmasked), network.predict(net, params, X))


def test_big_endian_parameters_are_float32(net, params, data):
    # was: ValueError "must be float32 or float64 (3, 4), got >f4 (3, 4)"
    big = [{k: np.asarray(v).astype(">f4") for k, v in p.items()} for p in params]
    X = data["dval"][0]
    assert np.array_equal(network.predict(net, big, X), network.predict(net, params, X))
    assert _same(network.fit(net, big, data, epochs=1, **KW).params,
                 network.fit(net, params, data, epochs=1, **KW).params)


def test_a_label_vector_for_one_output_unit_is_told_to_reshape(data):
    one = network.build([layers.Dense(1, "sigmoid")], (3,))
    X, Y = data["dtrain"]
    # was: "one-hot encode labels to 1 columns or change the output units"
    with pytest.raises(ValueError, match=r"dtrain Y: labels of shape \(16,\) .* needs shape "
                                         r"\(16, 1\): pass Y.reshape\(-1, 1\)"):
        network.fit(one, network.init(one, 0), {"dtrain": (X, Y[:, 0])}, epochs=1, loss="BCE")


@pytest.mark.parametrize("change", [
    lambda h: h["CCE"]["dval"].append(0.0),          # an epoch more
    lambda h: h.pop("accuracy"),                     # a metric less
    lambda h: h["CCE"].__setitem__("dval", 1.0),     # not a list any more
    lambda h: h["CCE"]["dval"].__setitem__(-1, 0.0),  # the last value
])
def test_a_callback_that_changes_the_history_is_named_and_the_checkpoint_resumes(
        net, params, data, tmp_path, change):
    # was: an appended value saved a checkpoint that refused to resume ("history does not
    # have 2 epochs"), a deleted metric a bare KeyError from inside fit
    def editor(epoch, history):
        if epoch == 1:
            change(history)

    kw = dict(KW, metrics=("accuracy",), key=1)
    with pytest.raises(ValueError, match="callback .*editor changed the history"):
        network.fit(net, params, data, epochs=3, callbacks=[editor],
                    checkpoints=Checkpoints(tmp_path, every=1), **kw)
    resumed = network.fit(net, params, data, epochs=3, resume=load_checkpoint(tmp_path), **kw)
    straight = network.fit(net, params, data, epochs=3, **kw)
    assert resumed.epochs == 3 and _same(resumed.params, straight.params)
    assert resumed.history == straight.history
