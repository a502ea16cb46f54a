"""Networks: build, init, forward, backward, training and prediction.

The rooms, in the order data flows through them: :mod:`.model` (build, init,
forward, backward), :mod:`.objective` (the summed loss and its gradients),
:mod:`.optim` (EpyNN's SGD as an optax transformation), :mod:`.precision`
(the precision policy and the casts at layer boundaries), :mod:`.checks`
(validation before tracing), :mod:`.epoch` (the compiled epoch and its guard),
:mod:`.fitting` (``fit``: the host-side loop) and :mod:`.parallel` (several
devices).
"""

from epynn_jax.network import checks, epoch, fitting, model, objective, optim, parallel, precision
from epynn_jax.network.epoch import TrainState, run_epoch, train_step
from epynn_jax.network.fitting import FitResult, decide, evaluate, fit, predict
from epynn_jax.network.model import Network, apply, backward, build, forward, init
from epynn_jax.network.objective import autodiff_gradients, gradients, loss_value
from epynn_jax.network.optim import epynn_sgd
from epynn_jax.network.precision import Policy

__all__ = [
    "checks", "epoch", "fitting", "model", "objective", "optim", "parallel", "precision",
    "Network", "Policy", "apply", "backward", "build", "forward", "init", "FitResult", "TrainState",
    "autodiff_gradients", "decide", "epynn_sgd", "evaluate", "fit", "gradients",
    "loss_value", "predict", "run_epoch", "train_step",
]
