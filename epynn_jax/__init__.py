"""epynn_jax: EpyNN's hand-written neural networks, compiled with JAX.

Functional API::

    import jax
    from epynn_jax import layers, network
    net = network.build([layers.Flatten(), layers.Dense(2, "softmax")], input_shape=(12, 4))
    params = network.init(net, jax.random.key(0))
    result = network.fit(net, params, {"dtrain": (X, Y)}, epochs=10)
"""

from epynn_jax import config, data, layers, maths, network
from epynn_jax.maths.activations import ActivationHPars
from epynn_jax.maths.schedules import Schedule
from epynn_jax.network import Network, Policy, build, fit, init, predict

# No global setting changes here: the persistent compilation cache is opt-in
# (config.enable_compilation_cache()); the command and the script runner switch it on.

__version__ = "0.1.0"

__all__ = ["config", "data", "layers", "maths", "network", "ActivationHPars", "Schedule", "Network",
           "Policy", "build", "fit", "init", "predict", "__version__"]
