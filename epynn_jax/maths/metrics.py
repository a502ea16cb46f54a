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

**Over a set in parts.** Every metric is a function of sums over the samples:
the number of samples, of correct decisions, the confusion counts
(``tp, fp, tn, fn``) of class 0 against class 1 and of each class against the
rest, and the summed per-sample losses. :func:`statistics` returns those sums
for one part of a set (with a mask of the rows that count) and
:func:`from_statistics` a metric from the sums of all parts, so a set
evaluated chunk by chunk gets the metrics of the whole set at once (the counts
exactly; the loss sums up to the order of float additions). :func:`metric` is
the same two steps on one array.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp

from epynn_jax.maths import losses

__all__ = ["METRICS", "metric", "check_metric", "check_metrics", "decisions", "accuracy",
           "statistics", "from_statistics"]


def _units(a: jax.Array) -> int:
    return math.prod(a.shape[1:])  # not reshape(m, -1): m may be 0 (no sample)


def decisions(Y: jax.Array, A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(predicted classes P, true classes y), flat per sample."""
    Y2 = Y.reshape(Y.shape[0], _units(Y))
    A2 = A.reshape(A.shape[0], _units(A))
    if Y2.shape[1] > 1:
        return jnp.argmax(A2, axis=1), jnp.argmax(Y2, axis=1)
    return jnp.round(A2[:, 0]), Y2[:, 0]


def _ratio(a, b, dtype):
    return jnp.asarray(a, dtype) / jnp.asarray(b, dtype)


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


def _kind(name: str) -> str:
    """Which sums metric ``name`` needs: 'correct', 'binary', 'classes' or 'loss'."""
    if name == "accuracy":
        return "correct"
    if name in _FORMULAS:
        return "binary"
    if name.endswith("_macro") and name[: -len("_macro")] in _FORMULAS:
        return "classes"
    return "loss"


def statistics(names: tuple[str, ...], Y: jax.Array, A: jax.Array,
               mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """The sums over samples that the metrics ``names`` need, on labels ``Y`` and outputs ``A``.

    ``mask`` (m,) bool: the rows that count (None: all). Returns a dict of
    arrays, each a sum over the counted rows, so the statistics of the parts of
    a set add up (``jax.tree.map(jnp.add, s1, s2)``) to those of the whole:

    - ``'n'``: counted samples;
    - ``'correct'``: decisions equal to the label (accuracy);
    - ``'binary'`` (4,): ``tp, fp, tn, fn`` with class 0 positive and class 1
      negative; EpyNN counts no other class there;
    - ``'classes'`` (k, 4): ``tp, fp, tn, fn`` of each class against the rest
      (the ``*_macro`` metrics; ``k = max(U, 2)``);
    - one entry per loss name: the summed per-sample loss.
    """
    kinds = {_kind(name) for name in names}
    valid = jnp.ones(Y.shape[0], bool) if mask is None else mask
    P, y = decisions(Y, A)
    out = {"n": jnp.sum(valid)}
    if "correct" in kinds:
        out["correct"] = jnp.sum((P == y) & valid)
    if "binary" in kinds:
        out["binary"] = jnp.stack([jnp.sum((P == p) & (y == t) & valid)
                                   for p, t in ((0, 0), (0, 1), (1, 1), (1, 0))])
    if "classes" in kinds:
        c = jnp.arange(max(_units(Y), 2))[:, None]
        pp, py, v = P[None, :] == c, y[None, :] == c, valid[None, :]
        out["classes"] = jnp.stack([jnp.sum(pp & py & v, axis=1), jnp.sum(pp & ~py & v, axis=1),
                                    jnp.sum(~pp & ~py & v, axis=1),
                                    jnp.sum(~pp & py & v, axis=1)], axis=1)
    for name in names:
        if _kind(name) == "loss":
            values = losses.loss(name, Y, A)
            out[name] = jnp.sum(values if mask is None else jnp.where(valid, values, 0))
    return out


def from_statistics(name: str, stats: dict[str, jax.Array], dtype) -> jax.Array:
    """Metric ``name`` (a scalar of ``dtype``) from the :func:`statistics` of a whole set."""
    kind = _kind(name)
    if kind == "correct":
        return _ratio(stats["correct"], stats["n"], dtype)
    if kind == "loss":
        return _ratio(stats[name], stats["n"], dtype)
    if kind == "binary":
        return _FORMULAS[name](*stats["binary"], dtype)
    tp, fp, tn, fn = (stats["classes"][:, j] for j in range(4))
    # Only classes present in the labels or the decisions count.
    present = tp + fp + fn > 0
    vals = jnp.where(present, _FORMULAS[name[: -len("_macro")]](tp, fp, tn, fn, dtype), jnp.nan)
    return jnp.nanmean(vals)


def _on_one_set(name: str) -> Callable:
    def fn(Y: jax.Array, A: jax.Array) -> jax.Array:
        return from_statistics(name, statistics((name,), Y, A), A.dtype)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Metric {name!r} of outputs ``A`` against labels ``Y`` (a scalar)."
    return fn


def accuracy(Y: jax.Array, A: jax.Array) -> jax.Array:
    """Fraction of samples whose decision equals the label."""
    return from_statistics("accuracy", statistics(("accuracy",), Y, A), A.dtype)


METRICS: dict[str, Callable] = {"accuracy": accuracy}
METRICS.update({k: _on_one_set(k) for k in _FORMULAS})
METRICS.update({f"{k}_macro": _on_one_set(f"{k}_macro") for k in _FORMULAS})
METRICS.update({k: _on_one_set(k) for k in losses.LOSSES})


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

