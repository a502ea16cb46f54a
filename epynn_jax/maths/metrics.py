"""Classification metrics, as EpyNN defines them, plus multi-class macro variants.

Decisions follow EpyNN's rule: when labels are one-hot (``Y.shape[1] > 1``) the
predicted class is ``argmax(A)`` and the true class ``argmax(Y)``; otherwise the
prediction is ``round(A)`` and the truth ``Y``.

The binary metrics (``recall``, ``precision``, ``fscore``, ``specificity``,
``NPV``) treat **class 0 as positive**, as EpyNN does, and give NaN on an empty
denominator. Their ``*_macro`` variants average the one-vs-rest metric over
every class present in the labels or the outputs. Loss names (``'MSE'``, ...)
are metrics too: the mean per-sample loss, with the losses' clip of ``A`` to the
working dtype's resolution (:mod:`epynn_jax.maths.losses`), so a float32 output
of 1.0000001 or 0 gives a finite value.

All functions take (Y, A) and return a scalar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp

from epynn_jax.maths import losses

__all__ = ["METRICS", "metric", "check_metric", "check_metrics", "decisions", "accuracy"]


def decisions(Y: jax.Array, A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(predicted classes P, true classes y), flat per sample."""
    Y2 = Y.reshape(Y.shape[0], -1)
    A2 = A.reshape(A.shape[0], -1)
    if Y2.shape[1] > 1:
        return jnp.argmax(A2, axis=1), jnp.argmax(Y2, axis=1)
    return jnp.round(A2[:, 0]), Y2[:, 0]


def accuracy(Y: jax.Array, A: jax.Array) -> jax.Array:
    """Fraction of samples whose decision equals the label."""
    P, y = decisions(Y, A)
    return jnp.mean((P == y).astype(A.dtype))


def _counts(P: jax.Array, y: jax.Array, positive) -> tuple:
    pp, py = P == positive, y == positive
    tp = jnp.sum(pp & py)
    fp = jnp.sum(pp & ~py)
    tn = jnp.sum(~pp & ~py)
    fn = jnp.sum(~pp & py)
    return tp, fp, tn, fn


def _ratio(a, b, dtype):
    return jnp.asarray(a, dtype) / jnp.asarray(b, dtype)


def _binary(formula: Callable) -> Callable:
    def fn(Y: jax.Array, A: jax.Array) -> jax.Array:
        P, y = decisions(Y, A)
        # EpyNN counts only labels 0 and 1 (class 0 positive, class 1 negative).
        tp = jnp.sum((P == 0) & (y == 0))
        fp = jnp.sum((P == 0) & (y == 1))
        tn = jnp.sum((P == 1) & (y == 1))
        fn_ = jnp.sum((P == 1) & (y == 0))
        return formula(tp, fp, tn, fn_, A.dtype)

    return fn


def _macro(formula: Callable) -> Callable:
    def fn(Y: jax.Array, A: jax.Array) -> jax.Array:
        P, y = decisions(Y, A)
        n_classes = max(Y.reshape(Y.shape[0], -1).shape[1], 2)
        vals = []
        for c in range(n_classes):
            # Only classes present in the labels or the decisions count.
            present = jnp.any(P == c) | jnp.any(y == c)
            vals.append(jnp.where(present, formula(*_counts(P, y, c), A.dtype), jnp.nan))
        return jnp.nanmean(jnp.stack(vals))

    return fn


def _recall(tp, fp, tn, fn, dt):
    return _ratio(tp, tp + fn, dt)


def _precision(tp, fp, tn, fn, dt):
    return _ratio(tp, tp + fp, dt)


def _fscore(tp, fp, tn, fn, dt):
    return _ratio(tp, tp + 0.5 * (fp + fn), dt)


def _specificity(tp, fp, tn, fn, dt):
    return _ratio(tn, tn + fp, dt)


def _npv(tp, fp, tn, fn, dt):
    return _ratio(tn, tn + fn, dt)


_FORMULAS = {
    "recall": _recall,
    "precision": _precision,
    "fscore": _fscore,
    "specificity": _specificity,
    "NPV": _npv,
}

METRICS: dict[str, Callable] = {"accuracy": accuracy}
METRICS.update({k: _binary(f) for k, f in _FORMULAS.items()})
METRICS.update({f"{k}_macro": _macro(f) for k, f in _FORMULAS.items()})


def _loss_metric(name: str) -> Callable:
    def fn(Y: jax.Array, A: jax.Array) -> jax.Array:
        return jnp.mean(losses.loss(name, Y, A))

    return fn


METRICS.update({k: _loss_metric(k) for k in losses.LOSSES})


def check_metric(name: object) -> str:
    """Return ``name`` if it is a known metric or loss name, else raise."""
    if not isinstance(name, str):
        raise TypeError(f"metric must be a name such as 'accuracy', got {name!r}")
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return name


def check_metrics(names: object, where: str = "metrics") -> tuple[str, ...]:
    """``names`` as a tuple of known metric names: one name, or an iterable of them."""
    if isinstance(names, str):
        names = (names,)
    if not isinstance(names, Iterable) or isinstance(names, (bytes, dict)):
        raise TypeError(f"{where} must be a metric name or a sequence of names such as "
                        f"('accuracy',), got {names!r}")
    return tuple(check_metric(n) for n in names)


def metric(name: str, Y: jax.Array, A: jax.Array) -> jax.Array:
    """The scalar value of metric ``name``."""
    return METRICS[name](Y, A)
