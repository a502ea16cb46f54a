"""``fit(eval_splits=...)``: which splits are evaluated after each epoch, and that
evaluating (or not) never changes what is trained."""

from __future__ import annotations

import numpy as np
import pytest

from epynn_jax import io, layers, network


def _data(m, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 5)).astype(np.float32), np.eye(2)[rng.integers(0, 2, m)]


@pytest.fixture(scope="module")
def setup():
    net = network.build([layers.Dense(7, "tanh"), layers.Dense(2, "softmax")], (5,))
    params = network.init(net, 3)
    data = {"dtrain": _data(40, 0), "dval": _data(16, 1), "dtest": _data(12, 2)}
    return net, params, data


def _fit(setup, **kw):
    net, params, data = setup
    return network.fit(net, params, data, epochs=2, batch_size=8, loss="CCE", key=5, **kw)


def test_default_evaluates_every_split(setup):
    history = _fit(setup).history
    assert set(history["accuracy"]) == {"dtrain", "dval", "dtest"}
    assert all(len(v) == 2 for v in history["CCE"].values())


def test_named_splits_only_and_training_unchanged(setup):
    full, some, none = _fit(setup), _fit(setup, eval_splits=("dval",)), _fit(setup,
                                                                           eval_splits=())
    assert set(some.history["CCE"]) == {"dval"}
    assert some.history["CCE"]["dval"] == full.history["CCE"]["dval"]
    assert none.history == {"accuracy": {}, "CCE": {}}
    assert none.epochs == 2
    for a, b in ((full, some), (full, none)):  # evaluation never touches training
        for pa, pb in zip(a.params, b.params):
            for k in pa:
                np.testing.assert_array_equal(np.asarray(pa[k]), np.asarray(pb[k]))


@pytest.mark.parametrize("bad, error, words", [
    ("dval", TypeError, "eval_splits must be a tuple"),
    (("dval", 3), TypeError, "eval_splits must be a tuple"),
    (("dvalid",), ValueError, "['dvalid'] are not in data"),
    (("dval", "dval"), ValueError, "names a split twice"),
])
def test_bad_eval_splits(setup, bad, error, words):
    with pytest.raises(error, match=None) as info:
        _fit(setup, eval_splits=bad)
    assert words in str(info.value)


def test_checkpoint_best_needs_an_evaluated_split(setup, tmp_path):
    with pytest.raises(ValueError, match="best split 'dtest' is not evaluated"):
        _fit(setup, eval_splits=("dval",),
             checkpoints=io.Checkpoints(tmp_path, best=("accuracy", "dtest", "max")))
    assert not any(tmp_path.iterdir())


def test_unread_splits_are_checked_for_shape_only(setup, monkeypatch):
    """A split that is neither trained on nor evaluated is not converted or placed (fit
    reads none of its values), but a pair whose shapes do not fit still raises."""
    net, params, data = setup
    converted = []
    real = network.checks.as_floats

    def spy(arrays, wheres):
        converted.extend(wheres)
        return real(arrays, wheres)

    monkeypatch.setattr(network.checks, "as_floats", spy)
    nan_val = (np.full_like(data["dval"][0], np.nan), data["dval"][1])
    out = _fit((net, params, {**data, "dval": nan_val}), eval_splits=("dtest",))
    assert converted == ["dtrain X", "dtrain Y", "dtest X", "dtest Y"]
    assert set(out.history["CCE"]) == {"dtest"}
    with pytest.raises(ValueError, match="dval: X has 16 samples but Y has 15"):
        _fit((net, params, {**data, "dval": (data["dval"][0], data["dval"][1][:15])}),
             eval_splits=())
    with pytest.raises(TypeError, match=r"data\['dval'\]: expected a pair"):
        _fit((net, params, {**data, "dval": data["dval"][0]}), eval_splits=())
    # evaluated, the same NaN split is refused before training
    with pytest.raises(ValueError, match="dval X: contains NaN"):
        _fit((net, params, {**data, "dval": nan_val}))


def test_checkpoint_fingerprints_every_split_given(setup, tmp_path):
    """Checkpoints record every split of data, read or not (a resume on other data in any
    split is noticed), also with no split evaluated."""
    out = _fit(setup, eval_splits=(), checkpoints=io.Checkpoints(tmp_path))
    assert out.checkpoints
    ck = io.load_checkpoint(next(iter(out.checkpoints.values())))
    assert set(ck.metadata["data"]) == {"dtrain", "dval", "dtest"}
