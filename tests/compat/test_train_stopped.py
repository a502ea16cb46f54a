"""``EpyNN.train`` stopped by Ctrl-C or an error keeps what it trained.

EpyNN trains its layers in place, so a stopped ``train`` leaves the weights it
had reached. The facade trains on the device and stored the weights only at the
end: a Ctrl-C after 5 of 10 epochs left the layers with the weights they had
before ``train``, ``model.metrics`` with 5 epochs and the epoch count at 10.
Now the layers, key, epoch count and shuffle agree with the epochs recorded, and
``train()`` goes on from there as if nothing had stopped it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from epynn_jax.compat import set_quiet
from epynn_jax.compat.commons.maths import relu, softmax
from epynn_jax.compat.commons.models import Layer
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.flatten.models import Flatten
from epynn_jax.compat.network import _train
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.compat.settings import se_hPars
from tests.compat.test_custom_layer import make_affine

RNG = np.random.default_rng(2)
X = RNG.normal(size=(30, 3, 2))
Y = (X[:, 0, 0] > 0).astype(int)
NOTES = sys.version_info >= (3, 11)


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def model(custom: bool = False, schedule: str = "exp_decay") -> EpyNN:
    emb = Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=6)
    middle = [make_affine(Layer)()] if custom else []
    m = EpyNN([emb, Flatten(), *middle, Dense(4, relu), Dense(2, softmax)], name="stopped")
    m.initialize(loss="MSE", seed=5, se_hPars={**se_hPars, "learning_rate": 0.05,
                                               "schedule": schedule})
    return m


def weights(m: EpyNN) -> list[dict]:
    return [{k: np.array(v) for k, v in layer.p.items()} for layer in m.layers]


def assert_same_weights(a: EpyNN, b: EpyNN | list[dict]) -> None:
    """The same weights, values and dtypes (``b``: a model, or :func:`weights` of one)."""
    for i, (pa, pb) in enumerate(zip(weights(a), b if isinstance(b, list) else weights(b))):
        assert pa.keys() == pb.keys(), i
        for k in pa:
            assert pa[k].dtype == pb[k].dtype, (i, k)
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=f"layer {i} {k}")


def raise_at(monkeypatch, obj, name: str, call: int, error: BaseException) -> None:
    """``obj.name`` raises ``error`` at its ``call``-th call (1-based), else runs."""
    real, calls = getattr(obj, name), [0]

    def patched(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, patched)


def lengths(m: EpyNN) -> set[int]:
    """The lengths of the metrics' lists of every data set the model holds."""
    return {len(values[i]) for values in m.metrics.values()
            for i in range(len(m.embedding.dsets))}


# where the stop lands in the compiled path: (object, method, call) -> epochs recorded
# (the epoch e + 1 is dispatched before epoch e is read and recorded)
POINTS = {
    "reading epoch 3": (EpyNN, "_record", 4, 3),
    "reporting epoch 3": (EpyNN, "report", 4, 4),
    "dispatching epoch 5": (_train.core, "stored_run_epoch", 6, 4),
    "shuffling for epoch 5": (Embedding, "batch_indices", 6, 4),
}


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("a report failed")],
                         ids=["ctrl-c", "error"])
@pytest.mark.parametrize("point", POINTS)
def test_a_stopped_train_keeps_its_recorded_epochs_and_goes_on_bitwise(monkeypatch, point,
                                                                        error):
    obj, name, call, recorded = POINTS[point]
    full = model()
    full.train(10, init_logs=False)
    m = model()
    with monkeypatch.context() as patch:
        raise_at(patch, obj, name, call, error)
        with pytest.raises(type(error)) as info:
            m.train(10, init_logs=False)
    assert m._done_epochs == recorded and m.e == recorded - 1
    assert lengths(m) == {recorded}
    if NOTES:
        assert f"stopped after epoch {recorded - 1}" in "".join(info.value.__notes__)
    # with a steady rate, the weights of `recorded` epochs are those of train(recorded)
    steady = model(schedule="steady")
    steady_alone = model(schedule="steady")
    steady_alone.train(recorded, init_logs=False)
    with monkeypatch.context() as patch:
        raise_at(patch, obj, name, call, error)
        with pytest.raises(type(error)):
            steady.train(10, init_logs=False)
    assert_same_weights(steady, steady_alone)
    np.testing.assert_array_equal(steady.embedding.dtrain.A, steady_alone.embedding.dtrain.A)
    # and train() goes on: the same weights, history and rates as one uninterrupted call
    m.train(10 - recorded, init_logs=False)
    assert_same_weights(m, full)
    assert m.metrics == full.metrics and m._done_epochs == 10


def test_a_stop_before_any_epoch_is_recorded_leaves_the_model_as_it_was(monkeypatch):
    m = model()
    m.train(2, init_logs=False)
    before = weights(m)
    with monkeypatch.context() as patch:
        raise_at(patch, EpyNN, "_record", 1, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt) as info:
            m.train(5, init_logs=False)
    assert m._done_epochs == 2 and lengths(m) == {2}
    assert_same_weights(m, before)
    if NOTES:
        assert "before an epoch of this call was kept" in "".join(info.value.__notes__)
    m.train(5, init_logs=False)  # the order it drew and did not train is drawn again
    full = model()
    full.train(2, init_logs=False)
    full.train(5, init_logs=False)
    assert_same_weights(m, full)


def test_the_shuffle_goes_back_for_every_generator(monkeypatch):
    """The Embedding's generator may be a Generator (the model's), a RandomState or the
    global one (``np_rng = None``): each is put back to before the untrained draw."""
    for rng in (lambda: np.random.RandomState(4), lambda: None):
        full, m = model(schedule="steady"), model(schedule="steady")
        full.embedding.np_rng, m.embedding.np_rng = rng(), rng()
        if m.embedding.np_rng is None:
            np.random.seed(8)
        full.train(6, init_logs=False)
        if m.embedding.np_rng is None:
            np.random.seed(8)
        with monkeypatch.context() as patch:
            raise_at(patch, EpyNN, "_record", 3, KeyboardInterrupt())
            with pytest.raises(KeyboardInterrupt):
                m.train(6, init_logs=False)
        m.train(4, init_logs=False)
        assert_same_weights(m, full)


def test_a_custom_layer_model_keeps_the_batch_it_stopped_at(monkeypatch):
    """Custom NumPy layers update themselves batch by batch, as in EpyNN: a stop mid-epoch
    keeps every layer at the same batch (the compiled ones went back to their weights
    from before ``train``), and the epochs recorded are counted."""
    m = model(custom=True)
    start = weights(m)
    custom = m.layers[2]
    with monkeypatch.context() as patch:
        # the 8th backward: the 2nd batch of epoch 2 (3 batches of 6 of the 20 samples
        # of dtrain per epoch)
        raise_at(patch, type(custom), "backward", 8, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt) as info:
            m.train(4, init_logs=False)
    assert m._done_epochs == 2 and lengths(m) == {2} and m.e == 1
    if NOTES:
        assert "stopped in epoch 2" in "".join(info.value.__notes__)
    for i in (2, 3, 4):  # the custom layer and the two compiled Dense layers moved
        assert any(not np.array_equal(start[i][k], m.layers[i].p[k]) for k in start[i]), i
    # a stop at the end of an epoch keeps every layer at the weights of that epoch
    a, b = model(custom=True, schedule="steady"), model(custom=True, schedule="steady")
    a.train(3, init_logs=False)
    with monkeypatch.context() as patch:
        raise_at(patch, EpyNN, "report", 3, RuntimeError("stop"))  # after epoch 2 recorded
        with pytest.raises(RuntimeError):
            b.train(4, init_logs=False)
    assert b._done_epochs == 3 and lengths(b) == {3}
    assert_same_weights(a, b)


def test_weights_that_cannot_be_read_back_are_dropped_with_their_epochs(monkeypatch):
    """A device that fails reading back the weights after the error: the model goes back
    to the state before the call (weights, epoch count AND the epochs in metrics) and
    the error says why, never half of each."""
    m = model()
    m.train(2, init_logs=False)
    before, key = weights(m), m._key
    with monkeypatch.context() as patch:
        raise_at(patch, EpyNN, "_record", 4, KeyboardInterrupt())
        patch.setattr(EpyNN, "_store_params", lambda self, params: 1 / 0)
        with pytest.raises(KeyboardInterrupt) as info:
            m.train(5, init_logs=False)
    assert m._done_epochs == 2 and lengths(m) == {2} and m._key is key
    assert_same_weights(m, before)
    if NOTES:
        notes = "".join(info.value.__notes__)
        assert "could not be read back (ZeroDivisionError" in notes
        assert "before an epoch of this call was kept" in notes
    m.train(5, init_logs=False)  # as if the call had never run: its shuffles drawn again
    full = model()
    full.train(2, init_logs=False)
    full.train(5, init_logs=False)
    assert_same_weights(m, full)
