"""Networks: build, init, forward, backward, training and prediction."""

from epynn_jax.network import model, parallel, training
from epynn_jax.network.model import Network, apply, backward, build, forward, init
from epynn_jax.network.training import (
    FitResult,
    TrainState,
    autodiff_gradients,
    epynn_sgd,
    evaluate,
    fit,
    gradients,
    loss_value,
    predict,
    run_epoch,
    train_step,
)

__all__ = [
    "model", "parallel", "training", "Network", "apply", "backward", "build", "forward", "init",
    "FitResult", "TrainState", "autodiff_gradients", "epynn_sgd", "evaluate", "fit",
    "gradients", "loss_value", "predict", "run_epoch", "train_step",
]
