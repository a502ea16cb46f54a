"""A facade run whose numbers blow up: one clear line, the last good weights, no NaN file."""

from __future__ import annotations

import numpy as np
import pytest

from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.library import read_model
from epynn_jax.compat.commons.maths import identity
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.errors import NonFiniteError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 5)) * 1e3
Y = (X[:, 0] > 0).astype(int)
EXPLODE = {"learning_rate": 1e20, "schedule": "steady"}  # the first steps overflow float32


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def model(hp):
    emb = Embedding(X_data=X, Y_data=Y, batch_size=8)
    m = EpyNN([emb, Dense(4, identity), Dense(1, identity)], name="boom")
    m.initialize(loss="MSE", seed=1, se_hPars=hp)
    return m


def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_good_weights(capsys, tmp_path):
    m = model({**EXPLODE})
    before = [{k: v.copy() for k, v in layer.p.items()} for layer in m.layers]
    m.train(3, init_logs=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert "epoch 0, batch " in line and "layer 2 (Dense)" in line, line
    assert m.diverged.step is not None and f"batch {m.diverged.step}," in line
    assert isinstance(m.diverged, NonFiniteError) and m.diverged.epoch == 0
    for layer, p0 in zip(m.layers, before):  # nothing of the failed epoch was kept
        for k in p0:  # (the initial weights, rounded to the float32 they trained in)
            np.testing.assert_array_equal(layer.p[k], p0[k].astype(np.float32))
    assert all(len(v) == 0 for lists in m.metrics.values() for v in lists)
    path = tmp_path / "m.epynn"
    m.write(str(path))  # finite: the last good weights are saved ...
    again = read_model(str(path))
    np.testing.assert_allclose(again.layers[1].p["W"], before[1]["W"], rtol=1e-6)


def test_nan_weights_are_never_written(tmp_path):
    m = model({**EXPLODE})
    m.train(1, init_logs=False, on_nonfinite="ignore")  # EpyNN's behaviour: trains on
    assert not np.all(np.isfinite(m.layers[1].p["W"]))
    path = tmp_path / "m.epynn"
    with pytest.raises(ValueError, match="NaN or inf"):
        m.write(str(path))
    assert not path.exists()


def test_on_nonfinite_raise():
    m = model({**EXPLODE})
    with pytest.raises(NonFiniteError, match=r"EpyNN.train: .* epoch 0, batch \d"):
        m.train(2, init_logs=False, on_nonfinite="raise")
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        m.train(2, init_logs=False, on_nonfinite="sometimes")


def test_a_finite_run_is_untouched(capsys):
    m = model({"learning_rate": 1e-9, "schedule": "steady"})
    m.train(3, init_logs=False)
    assert m.diverged is None and capsys.readouterr().err == ""
    assert all(len(v) == 3 for v in m.metrics["accuracy"][:1])


def test_a_zero_over_zero_metric_is_nan_as_in_epynn_and_training_goes_on(capsys):
    """Regression (fuzz): NPV with no predicted negatives is 0/0; EpyNN prints nan and
    trains on, and so does the facade (only a loss stops training)."""
    # Labels all 0 and outputs near 0: every decision is 0 (positive), none negative.
    emb = Embedding(X_data=X[:, :2] / 1e4, Y_data=np.zeros(40, int), batch_size=8)
    m = EpyNN([emb, Dense(1, identity)], name="ratio")
    m.initialize(loss="MSE", seed=1, metrics=["NPV", "accuracy"],
                 se_hPars={"learning_rate": 0.01, "schedule": "steady"})
    m.train(2, init_logs=False)
    assert m.diverged is None and capsys.readouterr().err == ""
    assert len(m.metrics["MSE"][0]) == 2 and np.isfinite(m.metrics["MSE"][0]).all()
    assert np.isnan(m.metrics["NPV"][0]).all() and m.metrics["accuracy"][0] == [1.0, 1.0]


def test_a_model_with_custom_layers_keeps_the_last_good_weights_too():
    """The segmented path (an eager NumPy custom layer between compiled ones): the epoch
    that made NaN is dropped as in the compiled path, the custom layer's ``p`` included.
    (It kept the NaN weights of that epoch while its line said "the last good epoch".)"""
    from epynn_jax.compat.commons.models import Layer
    from tests.compat.test_custom_layer import make_affine

    emb = Embedding(X_data=X, Y_data=Y, batch_size=8)
    m = EpyNN([emb, Dense(4, identity), make_affine(Layer)(), Dense(1, identity)],
              name="boom")
    m.initialize(loss="MSE", seed=1, se_hPars={**EXPLODE})
    assert m.layers[2]._mode[0] == "eager"
    before = [{k: v.copy() for k, v in layer.p.items()} for layer in m.layers]
    key = m._key
    with np.errstate(all="ignore"):  # (the NumPy layer's own inf * 0 while it diverges)
        m.train(3, init_logs=False)
    assert isinstance(m.diverged, NonFiniteError) and m.diverged.epoch == 0
    assert m._done_epochs == 0 and m._key is key
    for i, (layer, p0) in enumerate(zip(m.layers, before)):
        for k in p0:  # untouched: no epoch was good (the compiled ones never left float64)
            assert layer.p[k].dtype == p0[k].dtype, (i, k)
            np.testing.assert_array_equal(layer.p[k], p0[k], err_msg=f"layer {i} {k}")
