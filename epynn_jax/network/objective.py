"""Gradients of the summed loss: the hand-written backward, and ``jax.grad`` to check it.

Gradients are those of the *sum* of per-sample losses (EpyNN's convention, no
``1/m``), so EpyNN's learning rates carry over unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.layers.base import LayerError, gradients_to_params
from epynn_jax.maths import losses
from epynn_jax.network.model import Network, Params, apply, backward, forward

__all__ = ["loss_value", "gradients", "autodiff_gradients"]


def _check(net: Network, loss: str, Y, A_shape: tuple[int, ...], where: str) -> None:
    """Raise (while tracing: shapes and names are static) unless ``loss`` is a known loss
    for the output and the labels ``Y`` have the output's shape (else the per-sample
    loss would broadcast them)."""
    losses.check_loss(loss, net.output_activation)
    if tuple(np.shape(Y)) != tuple(A_shape):
        raise LayerError(f"{where}: Y of shape {tuple(np.shape(Y))} does not fit the output "
                         f"of {net.layers[-1].name}, of shape {tuple(A_shape)}")


def loss_value(net: Network, params: Params, X, Y, loss: str = "MSE", key=None,
               training: bool = False) -> jax.Array:
    """Sum over samples of the per-sample loss (the training objective)."""
    A, _ = forward(net, params, X, key, training)
    _check(net, loss, Y, A.shape, "loss_value")
    return jnp.sum(losses.loss(loss, Y, A))


def gradients(net: Network, params: Params, X, Y, loss: str = "MSE", key=None,
              training: bool = True, scale: jax.Array | None = None):
    """Hand-written gradients of the summed loss.

    Returns ``(grads, A, fcs, gs, bcs)``: ``grads`` shaped like ``params``
    (``g['dW']`` mapped to ``W``), the output, and every layer's caches. With a
    loss ``scale`` S they are the gradients of ``S * loss`` (``dL/dA`` is
    multiplied by S before the backward: dynamic loss scaling, see
    :func:`~epynn_jax.network.optim.loss_scaling`, which divides by S again).
    """
    A, fcs = forward(net, params, X, key, training)
    _check(net, loss, Y, A.shape, "gradients")
    dA = losses.loss_deriv(loss, Y, A)
    if scale is not None:
        dA = dA * scale.astype(dA.dtype)
    _, gs, bcs = backward(net, params, fcs, dA)
    grads = tuple(gradients_to_params(p, g) for p, g in zip(params, gs))
    return grads, A, fcs, gs, bcs


def autodiff_gradients(net: Network, params: Params, X, Y, loss: str = "MSE", key=None,
                       training: bool = True, custom_vjp: bool = True) -> Params:
    """``jax.grad`` of the summed loss.

    With ``custom_vjp=True`` it runs through :func:`network.apply` (so the
    hand-written backward); with ``False`` JAX differentiates the forward math.
    """
    def objective(params):
        if custom_vjp:
            A = apply(net, params, X, key, training)
        else:
            A, _ = forward(net, params, X, key, training)
        _check(net, loss, Y, A.shape, "autodiff_gradients")
        return jnp.sum(losses.loss(loss, Y, A))

    return jax.grad(objective)(params)
