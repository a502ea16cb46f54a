"""Metrics against EpyNN's ``epynn.commons.metrics`` and a direct NumPy computation."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax.maths import metrics

BINARY = ["recall", "precision", "fscore", "specificity", "NPV"]


@pytest.fixture(scope="module")
def epynn_metrics():
    from conftest import load_epynn

    load_epynn()
    from epynn.commons import metrics as m

    return m


def _binary_data(seed, m=40):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, (m, 1)).astype(float), rng.uniform(0, 1, (m, 1))


def _one_hot_data(seed, k, m=40):
    rng = np.random.default_rng(seed)
    Y = np.eye(k)[rng.integers(0, k, m)]
    A = rng.uniform(0, 1, (m, k))
    return Y, A / A.sum(axis=1, keepdims=True)


def _epynn(epynn_metrics, name, Y, A):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(np.mean(epynn_metrics.metrics_functions(name)(Y, A)))


DATA = [("binary", s) for s in range(4)] + [("onehot2", s) for s in range(3)] + \
       [("onehot3", s) for s in range(3)]


def _data(kind, seed):
    if kind == "binary":
        return _binary_data(seed)
    return _one_hot_data(seed, int(kind[-1]))


@pytest.mark.parametrize("kind,seed", DATA)
@pytest.mark.parametrize("name", ["accuracy", *BINARY])
def test_matches_epynn(x64, epynn_metrics, name, kind, seed):
    Y, A = _data(kind, seed)
    got = float(metrics.metric(name, jnp.asarray(Y), jnp.asarray(A)))
    np.testing.assert_allclose(got, _epynn(epynn_metrics, name, Y, A), rtol=1e-14)


def test_empty_denominator_is_nan(x64, epynn_metrics):
    Y = np.ones((4, 1))            # no positive (class 0) labels
    A = np.full((4, 1), 0.9)       # and no class-0 predictions
    got = float(metrics.metric("recall", jnp.asarray(Y), jnp.asarray(A)))
    assert np.isnan(got) and np.isnan(_epynn(epynn_metrics, "recall", Y, A))


def _macro_reference(name, Y, A):
    """One-vs-rest per class present in labels or decisions, NaN classes left out, mean."""
    if Y.shape[1] > 1:
        P, y = A.argmax(1), Y.argmax(1)
    else:
        P, y = np.round(A[:, 0]), Y[:, 0]
    vals = []
    for c in np.union1d(np.unique(P), np.unique(y)):
        tp = np.sum((P == c) & (y == c))
        fp = np.sum((P == c) & (y != c))
        tn = np.sum((P != c) & (y != c))
        fn = np.sum((P != c) & (y == c))
        num, den = {"recall": (tp, tp + fn), "precision": (tp, tp + fp),
                    "fscore": (tp, tp + 0.5 * (fp + fn)), "specificity": (tn, tn + fp),
                    "NPV": (tn, tn + fn)}[name]
        if den:
            vals.append(num / den)
    return float(np.mean(vals))


MACRO_DATA = DATA + [("onehot5", s) for s in range(3)]


@pytest.mark.parametrize("kind,seed", MACRO_DATA)
@pytest.mark.parametrize("name", BINARY)
def test_macro_matches_numpy(x64, name, kind, seed):
    Y, A = _data(kind, seed)
    got = float(metrics.metric(name + "_macro", jnp.asarray(Y), jnp.asarray(A)))
    np.testing.assert_allclose(got, _macro_reference(name, Y, A), rtol=1e-13)


@pytest.mark.parametrize("name", BINARY)
def test_macro_ignores_absent_classes(x64, name):
    """A class in neither labels nor decisions must not count (it would score 1 or NaN)."""
    Y = np.eye(4)[[0, 1, 1, 0, 1, 0]]
    A = np.eye(4)[[0, 1, 0, 0, 1, 1]] + 0.01
    got = float(metrics.metric(name + "_macro", jnp.asarray(Y), jnp.asarray(A)))
    np.testing.assert_allclose(got, _macro_reference(name, Y, A), rtol=1e-13)


def test_macro_on_two_classes_averages_both_sides(x64):
    """With two classes, recall_macro = (recall + specificity) / 2 (balanced accuracy)."""
    Y, A = _one_hot_data(11, 2)
    Yj, Aj = jnp.asarray(Y), jnp.asarray(A)
    expected = (metrics.metric("recall", Yj, Aj) + metrics.metric("specificity", Yj, Aj)) / 2
    np.testing.assert_allclose(metrics.metric("recall_macro", Yj, Aj), expected, rtol=1e-14)


@pytest.mark.parametrize("name", ["MSE", "MAE", "BCE"])
def test_loss_names_are_metrics(x64, name):
    Y, A = _one_hot_data(12, 3)
    from epynn_jax.maths import losses

    np.testing.assert_allclose(metrics.metric(name, jnp.asarray(Y), jnp.asarray(A)),
                               np.mean(losses.loss(name, jnp.asarray(Y), jnp.asarray(A))))


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'acc'.*accuracy"):
        metrics.check_metric("acc")
    with pytest.raises(TypeError, match="metric must be a name"):
        metrics.check_metric(len)


def test_every_metric_finite_on_saturated_float32_outputs():
    """float32 softmax outputs at 0, 1 and one step past them (1.0000001): every metric,
    the loss names included, is finite, and decision metrics equal their value on the
    outputs clipped into [0, 1]."""
    up = np.nextafter(np.float32(1), np.float32(2))
    tiny = -np.finfo(np.float32).tiny
    Y = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
    A = np.asarray([[up, tiny], [0, 1], [0, up], [1, 0]], np.float32)
    for name in metrics.METRICS:
        value = metrics.metric(name, jnp.asarray(Y), jnp.asarray(A))
        assert value.dtype == jnp.float32 and np.isfinite(float(value)), (name, value)
        if name in metrics.losses.LOSSES:
            assert float(value) >= -1e-6, (name, value)
        else:
            exact = metrics.metric(name, jnp.asarray(Y), jnp.asarray(np.clip(A, 0, 1)))
            assert float(value) == pytest.approx(float(exact), abs=1e-6), name
