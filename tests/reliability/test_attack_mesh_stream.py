"""What an attack probe of the mesh option and of streamed loaders found broken.

Each case was silent or misleading before: a last batch LARGER than the others was
dropped as a "remainder"; a loader whose pass yields another number of batches than its
``len()`` (a length that changes between epochs) trained on with the schedule counting
the wrong steps; an error raised inside a loader did not say which split or batch; and
the facade's ``train(mesh=...)`` refused a bad mesh only after moving the model's epoch
count, so the next ``train`` skipped epochs that never ran.
"""

from __future__ import annotations

import numpy as np
import pytest

from epynn_jax import layers, network

NET = network.build([layers.Dense(2, "softmax")], (3,))
PARAMS = network.init(NET, 0)
KW = dict(loss="CCE", eval_splits=())


def _batch(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, np.eye(2, dtype=np.float32)[rng.integers(0, 2, n)]


def test_a_last_batch_larger_than_the_first_is_refused_not_dropped():
    # was: dropped with a warning calling it "the remainder"; 16 samples silently unused
    with pytest.raises(ValueError, match=r"data\['dtrain'\] batch 2 has 16 samples, more "
                                         r"than the first batch's 8"):
        network.fit(NET, PARAMS, {"dtrain": [_batch(8), _batch(8), _batch(16)]}, epochs=1,
                    **KW)


class _Growing:
    """A loader whose every pass yields ``step`` batches more than the one before, its
    len() that pass's count."""

    def __init__(self, n, step):
        self.n, self.step = n, step

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield _batch(8, i)
        self.n += self.step


@pytest.mark.parametrize("loader, what", [(_Growing(2, 1), "yields more than 2"),
                                          (_Growing(4, -1), "ended after 3")])
def test_a_loader_whose_length_changes_between_epochs_is_named(loader, what):
    # was: trained on, EpyNN's schedule counting len() at the start as the steps per epoch
    with pytest.raises(ValueError, match=rf"data\['dtrain'\] {what} batches on a pass, but "
                                         r"its len\(\) was \d when fit began"):
        network.fit(NET, PARAMS, {"dtrain": loader}, epochs=3, **KW)


def test_a_short_last_batch_counted_by_len_says_what_it_does_to_the_schedule():
    with pytest.warns(UserWarning, match=r"its len\(\) counts it, .* takes 3 steps per epoch, "
                                         r"not 2: .* Stream\(steps_per_epoch=2\)"):
        network.fit(NET, PARAMS, {"dtrain": [_batch(8), _batch(8), _batch(4)]}, epochs=1, **KW)


class _Failing:
    """A loader that raises on reading batch 2 of its second pass."""

    def __init__(self):
        self.passes = 0

    def __len__(self):
        return 4

    def __iter__(self):
        self.passes += 1
        for i in range(4):
            if self.passes == 2 and i == 2:
                raise OSError("the disk went away")
            yield _batch(8, i)


@pytest.mark.parametrize("split", ["dtrain", "dval"])
def test_an_error_inside_a_loader_names_the_split_and_the_batch(split):
    # was: the loader's error alone (the same type is still raised, with a note)
    data = {"dtrain": [_batch(8, i) for i in range(4)], "dval": [_batch(8)]}
    data[split] = _Failing()
    with pytest.raises(OSError, match="the disk went away") as info:
        network.fit(NET, PARAMS, data, epochs=2, loss="CCE", eval_splits=("dval",))
    assert info.value.__notes__[0] == f"(raised by data[{split!r}] while fit read its batch 2)"
    # (then what was trained before it: tests/network/test_fit_errors_keep_progress.py)
    assert len(info.value.__notes__) == 2 and "fit_result" in info.value.__notes__[1]


def _facade_model():
    from epynn_jax.compat import set_quiet
    from epynn_jax.compat.commons.maths import softmax
    from epynn_jax.compat.dense.models import Dense
    from epynn_jax.compat.embedding.models import Embedding
    from epynn_jax.compat.flatten.models import Flatten
    from epynn_jax.compat.network.models import EpyNN

    set_quiet(True)
    X, Y = _batch(16)
    emb = Embedding(X_data=X, Y_data=Y.argmax(1), Y_encode=True, batch_size=8)
    model = EpyNN([emb, Flatten(), Dense(2, softmax)], name="mesh_probe")
    model.initialize(loss="MSE", seed=3)
    return model


@pytest.mark.parametrize("mesh, error", [("cpu", TypeError), ([], ValueError)])
def test_the_facade_refuses_a_bad_mesh_before_counting_epochs(mesh, error):
    # was: the error came after train() had set the model's epochs done to 3, so the next
    # train(2) ran epochs 3 and 4 (their learning rates) and none before
    model = _facade_model()
    with pytest.raises(error, match="mesh: "):
        model.train(3, init_logs=False, mesh=mesh)
    assert model._done_epochs == 0 and not hasattr(model, "epochs")
