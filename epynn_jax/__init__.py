"""epynn_jax: EpyNN's hand-written neural networks, compiled with JAX.

Functional API::

    import jax
    from epynn_jax import layers, network
    net = network.build([layers.Flatten(), layers.Dense(2, "softmax")], input_shape=(12, 4))
    params = network.init(net, jax.random.key(0))
    result = network.fit(net, params, {"dtrain": (X, Y)}, epochs=10)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from epynn_jax import config, data, layers, maths, network
    from epynn_jax.maths.activations import ActivationHPars
    from epynn_jax.maths.schedules import Schedule
    from epynn_jax.network import Network, Policy, build, fit, init, predict

# No global setting changes here: the persistent compilation cache is opt-in
# (config.enable_compilation_cache()); the command and the script runner switch it on.

__version__ = "0.1.0"

__all__ = ["config", "data", "layers", "maths", "network", "ActivationHPars", "Schedule", "Network",
           "Policy", "build", "fit", "init", "predict", "__version__"]

#: Where each public name lives. They are imported when first used (PEP 562), not with the
#: package: ``epynn-jax`` (``epynn_jax.cli``) then starts without JAX, installs its Ctrl-C
#: handler, and only then imports JAX (a Ctrl-C during that import was lost or ended in a
#: traceback). ``import epynn_jax; epynn_jax.network`` works as before.
_LAZY = {"config": None, "data": None, "layers": None, "maths": None, "network": None,
         "ActivationHPars": "epynn_jax.maths.activations", "Schedule": "epynn_jax.maths.schedules",
         **{name: "epynn_jax.network" for name in ("Network", "Policy", "build", "fit", "init",
                                                   "predict")}}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'epynn_jax' has no attribute {name!r}")
    module = _LAZY[name]
    value = (importlib.import_module(f"epynn_jax.{name}") if module is None
             else getattr(importlib.import_module(module), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
