"""The facade's training engine: compiled epochs over the functional core.

When every layer is a built-in facade layer, one epoch is ONE jitted call: a
``lax.scan`` over the batch indices the host computed with EpyNN's generator,
each step running the functional forward, EpyNN's loss derivative, the
hand-written backward and the SGD update ``p -= lrate_layer[e] * g`` (each
layer with its own rate), followed by the evaluation of every data set.

When the model holds custom (user-written NumPy) layers, the network is cut
into segments: runs of built-in layers are compiled (one jitted forward and
one jitted backward+update per segment), and each custom layer runs its own
``forward`` / ``backward`` / ``compute_gradients`` / ``update_parameters``
eagerly between them, batch by batch, as EpyNN does.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.layers.base import gradients_to_params
from epynn_jax.maths import losses
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.network.model import Network, backward, forward

__all__ = ["Segment", "epoch_compiled", "step_caches", "sgd"]


@dataclasses.dataclass
class Segment:
    """A run of layers: ``compiled`` (built-in, one Network) or one eager custom layer."""

    compiled: bool
    indices: tuple[int, ...]
    net: Network | None = None


def sgd(net: Network, params: tuple, gs: tuple, lrs: jax.Array) -> tuple:
    """EpyNN's update, per layer: p[k] - lrate * g['d' + k].

    A compiled custom layer (one with an ``update`` method) applies its own
    ``update_parameters`` instead.
    """
    out = []
    for i, (layer, p, g) in enumerate(zip(net.layers, params, gs)):
        if hasattr(layer, "update"):
            out.append(layer.update(p, g, lrs[i]))
            continue
        gp = gradients_to_params(p, g)
        out.append({k: p[k] - lrs[i] * gp[k] for k in p})
    return tuple(out)


def _scores(net: Network, params, Xe: jax.Array, Ye: jax.Array, sizes: tuple[int, ...],
            metric_names: tuple[str, ...]):
    """One forward of every set concatenated (no dropout), then each set's metrics.

    Returns ``(scores, A)``: ``scores[k, j]`` is metric ``metric_names[j]`` of set k
    (one array, so the host fetches it in one transfer), and all outputs.
    """
    A, _ = forward(net, params, Xe, None, False)
    scores, start = [], 0
    for n in sizes:
        a, y = A[start:start + n], Ye[start:start + n]
        scores.append(jnp.stack([jnp.asarray(metrics_lib.metric(m, y, a), A.dtype)
                                 for m in metric_names]))
        start += n
    return jnp.stack(scores), A


@functools.partial(jax.jit, static_argnames=("net", "loss", "metric_names", "sizes", "use_key",
                                             "track"))
def epoch_compiled(net: Network, loss: str, metric_names: tuple[str, ...], sizes: tuple[int, ...],
                   use_key: bool, track: bool, params: tuple, idx: jax.Array, lrs: jax.Array,
                   key: jax.Array, Xe: jax.Array, Ye: jax.Array):
    """One epoch: scan SGD steps over ``idx`` (n_batches, batch), then evaluate every set.

    ``Xe``/``Ye`` are the data sets concatenated (``sizes`` samples each), the
    training set first, so ``idx`` (indices into the training set) indexes them
    directly. ``use_key=False`` (no layer draws random numbers) leaves the key
    untouched. ``track=False`` skips the per-step accuracy and cost (only the
    progress line shows them). Returns ``(params, key, params_before_last_step,
    last_step_key, last_batch_accuracy, last_batch_cost, scores, outputs)``, the
    accuracy and cost None without ``track``.
    """

    def step(carry, b):
        params, key, _, _ = carry
        if use_key:
            key, sub = jax.random.split(key)
        else:
            sub = None
        Xb, Yb = Xe[b], Ye[b]
        A, fcs = forward(net, params, Xb, sub, True)
        _, gs, _ = backward(net, params, fcs, losses.loss_deriv(loss, Yb, A))
        last = key if sub is None else sub
        ys = (metrics_lib.accuracy(Yb, A), jnp.mean(losses.loss(loss, Yb, A))) if track else None
        return (sgd(net, params, gs, lrs), key, params, last), ys

    (params, key, prev, last_key), ys = jax.lax.scan(step, (params, key, params, key), idx)
    acc, cost = (ys[0][-1], ys[1][-1]) if track else (None, None)
    scores, outputs = _scores(net, params, Xe, Ye, sizes, metric_names)
    return params, key, prev, last_key, acc, cost, scores, outputs


@functools.partial(jax.jit, static_argnames=("net", "loss"))
def step_caches(net: Network, loss: str, params: tuple, X: jax.Array, Y: jax.Array,
                key: jax.Array, rows: jax.Array | None = None):
    """Every layer's ``fc``, ``bc`` and ``g`` for one batch (no update).

    The batch is ``X[rows]``, ``Y[rows]`` (all of ``X``, ``Y`` when ``rows`` is None).
    """
    if rows is not None:
        X, Y = X[rows], Y[rows]
    A, fcs = forward(net, params, X, key, True)
    _, gs, bcs = backward(net, params, fcs, losses.loss_deriv(loss, Y, A))
    return fcs, bcs, gs


@functools.partial(jax.jit, static_argnames=("net", "training"))
def segment_forward(net: Network, params: tuple, X: jax.Array, key, training: bool):
    """Forward through a compiled segment: ``(A, fcs)``."""
    return forward(net, params, X, key, training)


@functools.partial(jax.jit, static_argnames=("net",))
def segment_backward(net: Network, params: tuple, fcs: tuple, dA: jax.Array, lrs: jax.Array):
    """Backward through a compiled segment, then its update: ``(dX, new_params, gs, bcs)``."""
    dX, gs, bcs = backward(net, params, fcs, dA)
    return dX, sgd(net, params, gs, lrs), gs, bcs


@functools.partial(jax.jit, static_argnames=("loss",))
def loss_and_deriv(loss: str, Y: jax.Array, A: jax.Array):
    """(accuracy, mean cost, dL/dA) of one batch."""
    return (metrics_lib.accuracy(Y, A), jnp.mean(losses.loss(loss, Y, A)),
            losses.loss_deriv(loss, Y, A))


def host_metrics(metric_names, Y: np.ndarray, A: np.ndarray) -> dict:
    """Metrics on host arrays (used where custom layers make evaluation eager)."""
    Yj, Aj = jnp.asarray(Y, A.dtype), jnp.asarray(A)
    return {m: float(metrics_lib.metric(m, Yj, Aj)) for m in metric_names}
