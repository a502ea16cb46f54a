"""The facade's Embedding refuses bad inputs at construction, in one line naming the argument,
and keeps accepting every input EpyNN 1.2.13's Embedding handles."""

from __future__ import annotations

import numpy as np
import pytest

from epynn_jax.compat.embedding.models import Embedding

RNG = np.random.default_rng(5)
X = RNG.uniform(size=(30, 4))
Y = RNG.integers(0, 2, 30)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and text.startswith("Embedding: "), text
    return text


@pytest.mark.parametrize("batch_size", [0, -3, -1])
def test_batch_size_below_one(batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be .*got {batch_size}") as err:
        Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=batch_size)
    _one_line(err)


@pytest.mark.parametrize("batch_size", [2.5, 8.0, True, "8", [8]])
def test_batch_size_not_an_int(batch_size):
    with pytest.raises(TypeError, match="batch_size must be an int") as err:
        Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=batch_size)
    _one_line(err)


def test_batch_size_is_checked_without_data_too():
    with pytest.raises(ValueError, match="batch_size"):
        Embedding(batch_size=0)


def test_complex_features_are_refused_not_truncated():
    with pytest.raises(TypeError, match="X_data .*complex") as err:
        Embedding(X_data=X + 1j * X, Y_data=Y, Y_encode=True)
    _one_line(err)
    with pytest.raises(TypeError, match="X_data .*complex"):
        Embedding(X_data=X + 0j, Y_data=Y, X_scale=True)


def test_complex_labels_are_refused():
    with pytest.raises(TypeError, match="Y_data .*complex") as err:
        Embedding(X_data=X, Y_data=Y + 0.5j)
    _one_line(err)


@pytest.mark.parametrize("kw", [dict(), dict(Y_encode=True), dict(X_scale=True),
                                dict(X_encode=True)])
@pytest.mark.parametrize("empty", [[], np.zeros((0, 4))])
def test_empty_features(kw, empty):
    with pytest.raises(ValueError, match="X_data is empty") as err:
        Embedding(X_data=empty, Y_data=[], **kw)
    _one_line(err)


def test_samples_without_features():
    with pytest.raises(ValueError, match=r"X_data .*no features.*\(30, 0\)") as err:
        Embedding(X_data=np.zeros((30, 0)), Y_data=Y)
    _one_line(err)


def test_scalar_features():
    with pytest.raises(TypeError, match="X_data must be a sequence of samples") as err:
        Embedding(X_data=5, Y_data=5)
    _one_line(err)


def test_ragged_features():
    with pytest.raises(ValueError, match="X_data .*same shape") as err:
        Embedding(X_data=[[1.0, 2.0], [1.0]] * 15, Y_data=Y)
    _one_line(err)


def test_strings_without_x_encode():
    with pytest.raises(TypeError, match="X_data holds .*X_encode=True") as err:
        Embedding(X_data=np.array([list("abcd")] * 30), Y_data=Y)
    _one_line(err)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data(bad):
    Xb = X.copy()
    Xb[7, 2] = bad
    with pytest.raises(ValueError, match="X_data holds NaN or inf.*sample 7") as err:
        Embedding(X_data=Xb, Y_data=Y)
    _one_line(err)
    Yb = Y.astype(float)
    Yb[3] = bad
    with pytest.raises(ValueError, match="Y_data holds NaN or inf.*sample 3"):
        Embedding(X_data=X, Y_data=Yb)


def test_string_labels_with_y_encode():
    with pytest.raises(ValueError, match="Y_encode needs integer labels") as err:
        Embedding(X_data=X, Y_data=np.array(["a", "b"] * 15), Y_encode=True)
    _one_line(err)


@pytest.mark.parametrize("relative_size,exc", [((2, -1, 0), ValueError), ((0, 0, 0), ValueError),
                                               ((2, np.nan, 0), ValueError),
                                               ((2, 1, 0, 1), ValueError),
                                               (("2", 1, 0), TypeError), (2, TypeError)])
def test_bad_relative_size(relative_size, exc):
    with pytest.raises(exc, match="relative_size") as err:
        Embedding(X_data=X, Y_data=Y, relative_size=relative_size)
    _one_line(err)


# -- what EpyNN accepts keeps working -------------------------------------------------------

WORDS = [list("ACGT"), list("GGCA"), list("TTAC"), list("CAGT")] * 6
VALID = {
    "defaults": dict(X_data=X, Y_data=Y),
    "batch_size None": dict(X_data=X, Y_data=Y, Y_encode=True, batch_size=None),
    "batch_size int": dict(X_data=X, Y_data=Y, Y_encode=True, batch_size=8),
    "batch_size numpy int": dict(X_data=X, Y_data=Y, Y_encode=True, batch_size=np.int64(8)),
    "batch_size above N": dict(X_data=X, Y_data=Y, Y_encode=True, batch_size=1000),
    "lists": dict(X_data=X.tolist(), Y_data=Y.tolist(), Y_encode=True),
    "one-hot labels": dict(X_data=X, Y_data=np.eye(2)[Y]),
    "strings with X_encode": dict(X_data=WORDS, Y_data=[0, 1, 1, 0] * 6, X_encode=True,
                                  Y_encode=True),
    "X_scale": dict(X_data=X * 7 - 2, Y_data=Y, X_scale=True, relative_size=(2, 1, 1)),
    "bool features": dict(X_data=X > 0.5, Y_data=Y, Y_encode=True),
    "int features": dict(X_data=(X * 10).astype(int), Y_data=Y),
    "float relative sizes": dict(X_data=X, Y_data=Y, relative_size=(0.5, 0.25, 0.25)),
}


@pytest.mark.parametrize("name", list(VALID))
def test_inputs_epynn_accepts_still_work(epynn, name):
    from epynn.embedding.models import Embedding as EpyNNEmbedding

    kw = VALID[name]
    theirs = EpyNNEmbedding(**kw)
    ours = Embedding(**kw)
    assert [d.name for d in ours.dsets] == [d.name for d in theirs.dsets]
    for a, b in zip(ours.dsets, theirs.dsets):
        np.testing.assert_allclose(np.asarray(a.X, float), np.asarray(b.X, float))
        np.testing.assert_allclose(np.asarray(a.Y, float), np.asarray(b.Y, float))
    assert ours.se_dataset == theirs.se_dataset


def test_empty_embedding_still_allowed():
    emb = Embedding()
    assert emb.dsets == [] and emb.se_dataset["batch_size"] is None
