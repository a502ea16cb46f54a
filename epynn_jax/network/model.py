"""Network: an ordered, static tuple of built layers, and its pure functions.

A :class:`Network` is hashable and static under ``jit`` (like its layers).
Parameters live outside it, as a tuple of ``p`` dicts, one per layer.

- ``build(layers, input_shape, policy=None)`` runs ``compute_shapes`` layer by layer
  (static shape inference; errors name the layer and its position) and sets the
  network's precision :class:`~epynn_jax.network.precision.Policy`;
- ``init(net, key)`` draws every layer's ``p`` (``key`` a ``jax.random`` key or an int
  seed), after checking that the parameters fit in memory (:func:`check_param_memory`);
- ``forward(net, params, X, key, training)`` returns the output and every ``fc``;
- ``backward(net, params, fcs, dA)`` runs the explicit backward chain and
  returns ``dX``, every ``g`` and every ``bc``;
- ``apply(net, params, X, key, training)`` is the same forward through the
  ``custom_vjp`` of each layer, so ``jax.grad`` runs the hand-written backward.

All four run every layer under the network's policy (the casts at each layer's
boundary live in :mod:`~epynn_jax.network.precision`): with the default
``Policy()`` nothing is cast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from epynn_jax.layers.base import Layer, LayerError
from epynn_jax.layers.base import apply as layer_apply
from epynn_jax.maths import prng
from epynn_jax.network import _gc, precision
from epynn_jax.network.precision import Policy

__all__ = ["Network", "Policy", "build", "init", "forward", "backward", "apply", "split_keys",
           "as_key", "check_net", "check_param_memory", "memory_limit", "MAX_PARAM_BYTES_ENV"]

Params = tuple[dict, ...]


@dataclasses.dataclass(frozen=True)
class Network:
    """A linear stack of built layers and its precision policy (static, hashable).

    ``policy`` is a :class:`~epynn_jax.network.precision.Policy`, or anything
    :func:`~epynn_jax.network.precision.as_policy` takes (``'bfloat16'``, None).
    """

    layers: tuple[Layer, ...]
    policy: Policy = Policy()

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", precision.as_policy(self.policy, "Network"))
        if not self.layers:
            raise LayerError("Network: needs at least one layer")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Network: layer {i} is not a Layer: {layer!r}")
            if not layer.built:
                raise LayerError(f"Network: layer {i} ({layer.name}) is not built; use build()")
        _check_chained(self.layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Sample shape of the input (no batch axis)."""
        return self.layers[0].input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Sample shape of the output (no batch axis)."""
        return self.layers[-1].output_shape

    @property
    def output_activation(self) -> str | None:
        """The output layer's ``activate`` name (None when it has none)."""
        return self.layers[-1].activation.get("activate")

    @property
    def uses_keys(self) -> bool:
        """Whether a layer's ``forward`` reads its key when training
        (:attr:`~epynn_jax.layers.base.Layer.uses_key`); when none does, training draws
        no per-step keys."""
        return any(type(layer).uses_key for layer in self.layers)

    @property
    def sequential(self) -> bool:
        """Whether a layer's ``forward`` loops over time steps
        (:attr:`~epynn_jax.layers.base.Layer.sequential`); then the evaluated sets share
        one forward when they fit in one chunk together."""
        return any(type(layer).sequential for layer in self.layers)

    def __len__(self) -> int:
        return len(self.layers)


jax.tree_util.register_static(Network)


def _check_chained(layers: tuple[Layer, ...]) -> None:
    """Raise ``LayerError`` unless each layer was built for the output of the one before
    (a stack assembled by hand from layers built apart; :func:`build` chains them)."""
    traced: dict[Layer, tuple[int, ...]] = {}
    for i in range(1, len(layers)):
        before, layer = layers[i - 1], layers[i]
        out = _output_shape(before, traced)
        if layer.input_shape != out:
            raise LayerError(f"Network: layer {i} ({layer.name}) was built for samples of "
                             f"shape {layer.input_shape}, but layer {i - 1} ({before.name}) "
                             f"outputs {out}; build(layers, input_shape) chains the shapes")


def build(layers: Sequence[Layer], input_shape: Sequence[int],
          policy: Policy | str | None = None) -> Network:
    """Set every layer's input shape, in order, from the sample shape ``input_shape``.

    ``policy`` is the network's precision policy: a
    :class:`~epynn_jax.network.precision.Policy`, a name (``'bfloat16'``,
    ``'mixed_bfloat16'``, ``'float16'``, ``'float32'``, ``'float64'``) or None,
    full precision in the default float dtype. Raises ``LayerError`` naming the
    layer (and its index) that rejects its input.
    """
    policy = precision.as_policy(policy, "build")
    ok = isinstance(input_shape, (tuple, list)) and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
        for s in input_shape)
    if not ok:
        raise LayerError(f"build: input_shape must be a tuple of positive ints (the sample "
                         f"shape without the batch axis, e.g. (5,)), got {input_shape!r}")
    shape = tuple(int(s) for s in input_shape)
    layers = tuple(layers)
    try:
        hash(layers)
    except TypeError:  # an unhashable custom layer: built every time
        return _build(layers, shape, policy)
    return _built_before(layers, shape, policy)


def _build(layers: Sequence[Layer], shape: tuple[int, ...], policy: Policy) -> Network:
    """:func:`build` itself, for a checked ``shape`` and ``policy``."""
    built = []
    # Output shapes are traced (eval_shape); a layer equal to one already built at the same
    # input shape has the same output shape, so a long stack of repeated layers traces once.
    traced: dict[Layer, tuple[int, ...]] = {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"build: layer {i} is not a Layer: {layer!r}")
        try:
            layer = _built(layer, layer.compute_shapes(shape), shape)
            out = _output_shape(layer, traced)
        except LayerError as err:
            raise LayerError(f"layer {i} ({layer.name}): {err}") from None
        built.append(layer)
        shape = out
    return Network(tuple(built), policy)


#: Networks built, by (layers, sample shape, policy): layers are frozen and their
#: ``compute_shapes`` pure, so the same arguments build the same Network. The facade
#: builds its compiled runs for each ``predict`` and ``evaluate`` (0.2 ms for two Dense
#: layers: traced output shapes and the chaining check). The last few only.
_built_before = functools.lru_cache(maxsize=64)(_build)


def _built(layer: Layer, built: Any, shape: tuple[int, ...]) -> Layer:
    """What ``layer.compute_shapes(shape)`` returned, once it is the layer built for
    ``shape`` (a layer of its class whose ``input_shape`` is that tuple); else
    :class:`LayerError` saying what the contract asks (a custom layer's mistake)."""
    if not isinstance(built, type(layer)):
        raise LayerError(f"{layer.name}: compute_shapes must return the layer built for its "
                         f"input (dataclasses.replace(layer, input_shape=X_shape)), got "
                         f"{type(built).__name__}")
    if not (isinstance(built.input_shape, tuple) and built.input_shape == shape):
        raise LayerError(f"{layer.name}: compute_shapes must set input_shape to the sample "
                         f"shape it was given, the tuple {shape}; got "
                         f"{built.input_shape!r}")
    return built


def _output_shape(layer: Layer, traced: dict) -> tuple[int, ...]:
    try:
        return traced[layer]
    except KeyError:
        pass
    except TypeError:  # an unhashable custom layer: no reuse
        return layer.output_shape
    out = traced[layer] = layer.output_shape
    return out


def check_net(net: Any, where: str) -> Network:
    """``net`` itself, if it is a :class:`Network`; else a ``TypeError`` naming ``where``
    (a list of layers is not one: :func:`build` makes it)."""
    if not isinstance(net, Network):
        raise TypeError(f"{where}: net must be a Network (from network.build(layers, "
                        f"input_shape)), got {type(net).__name__}")
    return net


def split_keys(net: Network, key: jax.Array | None) -> tuple:
    """One key per layer (``None`` everywhere when ``key`` is None)."""
    if key is None:
        return (None,) * len(net.layers)
    return tuple(prng.split(key, len(net.layers)))


def as_key(key: Any, where: str = "init") -> jax.Array:
    """``key`` as a single ``jax.random`` key: an int seed becomes ``jax.random.key(seed)``.

    Typed keys (``jax.random.key``) and legacy raw keys (``jax.random.PRNGKey``,
    uint32 of the default implementation's key shape) pass unchanged. Anything
    else raises a one-line ``TypeError``.
    """
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        try:
            return jax.random.key(int(key))
        except (OverflowError, TypeError, ValueError):
            raise ValueError(f"{where}: seed {int(key)} is out of range (an int seed must be "
                             "from -2**63 to 2**63 - 1)") from None
    shape, dtype = getattr(key, "shape", None), getattr(key, "dtype", None)
    if isinstance(key, (jax.Array, np.ndarray)) and dtype is not None:
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            if shape == ():
                return key
            problem = f"a batch of keys of shape {shape}"
        elif dtype == np.uint32 and shape == _raw_key_shape():
            return key
        else:
            problem = f"an array of {dtype} and shape {shape}"
    else:
        problem = "None" if key is None else f"{type(key).__name__} {_short(key)}"
    raise TypeError(f"{where}: key must be one key from jax.random.key(seed), or an int seed; "
                    f"got {problem}")


def _raw_key_shape() -> tuple[int, ...]:
    return jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def init(net: Network, key: jax.Array | int, *, max_bytes: float | None = None) -> Params:
    """Initial parameters: a tuple of ``p`` dicts, one per layer, in the policy's
    ``param_dtype`` (by default as the layers draw them: the default float dtype).

    ``key`` is a ``jax.random`` key or an int seed (``jax.random.key(seed)``).
    Before anything is drawn, the parameters' size is estimated from their
    shapes and checked against ``max_bytes`` (by default the memory available
    on the default device, see :func:`check_param_memory`): a layer too large
    raises :class:`LayerError` naming it and its size, instead of failing
    later inside XLA.
    """
    check_net(net, "init")
    key = as_key(key)
    check_param_memory(net, key, max_bytes)
    try:
        hash(net)
    except TypeError:  # an unhashable custom layer: op by op
        return _draw(net, key)
    with _gc.paused():  # its first calls trace (see network._gc)
        keys = tuple(_split(key, len(net.layers)))
        return tuple(_draw_layer(layer, k, net.policy.param)
                     for layer, k in zip(net.layers, keys))


def _draw(net: Network, key: jax.Array) -> Params:
    """Every layer's parameters, op by op (what :func:`init` draws, bitwise)."""
    keys = split_keys(net, key)
    params = tuple(layer.initialize_parameters(k) for layer, k in zip(net.layers, keys))
    return precision.cast(params, net.policy.param)


# Compiled draws: op by op, each random draw, product and fill compiled on its own (about
# ten small XLA programs for two Dense layers, 1-2 s of a first fit on a 2-core CPU). One
# program of every layer's draws took longer to compile than one per layer (the MLP's init
# 0.45 against 0.28 s) and grew with the depth (a stack of 100 layers, 8 s against 0.8 s):
# so one program splits the keys and one per distinct layer draws (equal layers share it).
@functools.partial(jax.jit, static_argnums=1)
def _split(key: jax.Array, n: int) -> jax.Array:
    """:func:`split_keys`' ``n`` keys, one array (one program; a tuple of ``n`` outputs
    took XLA 1.3 s to compile for 100 layers)."""
    return prng.split(key, n)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _draw_layer(layer: Layer, key: jax.Array, dtype) -> dict:
    """``layer``'s parameters drawn from ``key``, in ``dtype`` (None: as drawn)."""
    return precision.cast(layer.initialize_parameters(key), dtype)


# -- how much memory the parameters need, and how much there is ------------------------------

#: Environment variable overriding the automatic limit of :func:`check_param_memory`
#: (bytes, e.g. ``8e9``; ``inf`` turns the check off).
MAX_PARAM_BYTES_ENV = "EPYNN_JAX_MAX_PARAM_BYTES"


def _fmt_bytes(n: float) -> str:
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def memory_limit() -> tuple[int | None, str]:
    """Bytes free for new arrays on the default device, and where that figure comes from.

    The device's own count (``bytes_limit - bytes_in_use`` of
    ``device.memory_stats()``) where JAX reports one (GPU, TPU); otherwise the
    host's available memory (CPU devices share it). ``(None, ...)`` when
    neither is known.
    """
    device = jax.config.jax_default_device  # a Device, a platform name, or None
    if not isinstance(device, jax.Device):
        device = jax.devices(*([device] if isinstance(device, str) else []))[0]
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats raise various errors
        stats = None
    if stats and stats.get("bytes_limit"):
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return free, f"{device.platform}:{device.id} ({device.device_kind})"
    return _host_available(), "the host"


def _limit(max_bytes: Any) -> tuple[float | None, str]:
    """The limit to apply and a description of it (``None``: no check)."""
    source = "max_bytes"
    if max_bytes is None:
        env = os.environ.get(MAX_PARAM_BYTES_ENV)
        if env is None:
            limit, where = memory_limit()
            return limit, f"available on {where}"
        try:
            max_bytes = float(env)
        except ValueError:
            raise ValueError(f"init: {MAX_PARAM_BYTES_ENV}={env!r} is not a number of bytes "
                             "(e.g. 8e9, or inf to turn the check off)") from None
        source = MAX_PARAM_BYTES_ENV
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Real):
        raise TypeError(f"init: max_bytes must be a number of bytes (or math.inf), got "
                        f"{type(max_bytes).__name__} {_short(max_bytes)}")
    if math.isnan(max_bytes) or max_bytes <= 0:
        raise ValueError(f"init: {source} must be > 0 bytes (math.inf turns the check off), "
                         f"got {max_bytes!r}")
    return (None if math.isinf(max_bytes) else float(max_bytes)), f"allowed by {source}"


def check_param_memory(net: Network, key: Any, max_bytes: float | None = None) -> int:
    """Estimate the bytes of ``init(net, key)``'s parameters; raise if they cannot fit.

    The shapes and dtypes come from ``jax.eval_shape`` of each layer's
    ``initialize_parameters`` (nothing is allocated). The limit is
    ``max_bytes`` when given (``math.inf``: no check), else the environment
    variable ``EPYNN_JAX_MAX_PARAM_BYTES`` when set, else the memory
    available on the default device (:func:`memory_limit`). Raises
    :class:`LayerError` naming the first layer larger than the limit, or the
    total and the largest layer when only all of them together exceed it.
    Returns the estimated total.
    """
    limit, what = _limit(max_bytes)
    key = as_key(key, "check_param_memory")
    sizes, details, seen = [], [], {}  # equal layers have equal sizes: trace each once
    for layer in net.layers:
        try:
            size, detail = seen[layer]
        except (KeyError, TypeError):  # TypeError: an unhashable custom layer
            shapes = jax.eval_shape(layer.initialize_parameters, key)
            parts = {name: (tuple(a.shape), np.dtype(a.dtype)) for name, a in shapes.items()}
            size = sum(math.prod(s) * d.itemsize for s, d in parts.values())
            detail = ", ".join(f"{name} {s} {d.name}" for name, (s, d) in parts.items())
            with contextlib.suppress(TypeError):
                seen[layer] = size, detail
        sizes.append(size)
        details.append(detail)
    total = sum(sizes)
    if limit is None or total <= limit:
        return total
    hint = (f"pass max_bytes= to network.init or set {MAX_PARAM_BYTES_ENV} to change the "
            "limit (math.inf / inf turns the check off)")
    for i, (layer, size) in enumerate(zip(net.layers, sizes)):
        if size > limit:
            raise LayerError(f"init: layer {i} ({layer.name}) needs {_fmt_bytes(size)} for its "
                             f"parameters ({details[i]}), more than the {_fmt_bytes(limit)} "
                             f"{what}; {hint}")
    big = max(range(len(sizes)), key=sizes.__getitem__)
    raise LayerError(f"init: the parameters of all layers need {_fmt_bytes(total)}, more than "
                     f"the {_fmt_bytes(limit)} {what} (largest: layer {big} "
                     f"({net.layers[big].name}), {_fmt_bytes(sizes[big])}); {hint}")


def check_input_shape(net: Network, shape: tuple[int, ...], where: str = "X") -> None:
    """Raise ``LayerError`` unless ``shape`` is ``(m >= 1, *net.input_shape)`` (no data read:
    streamed sets are checked this way, their values batch by batch)."""
    if len(shape) != len(net.input_shape) + 1 or shape[1:] != net.input_shape:
        raise LayerError(
            f"{where}: expected shape (m, {', '.join(map(str, net.input_shape))}) for the input "
            f"layer {net.layers[0].name}, got {shape}"
        )
    if shape[0] == 0:
        raise LayerError(f"{where}: no samples (shape {shape})")


def forward(net: Network, params: Params, X: jax.Array, key: jax.Array | None = None,
            training: bool = False) -> tuple[jax.Array, tuple[dict, ...]]:
    """A and every layer's ``fc``, running ``forward`` layer by layer.

    Under ``net.policy`` each layer runs in the compute dtype (its ``p`` and
    input cast to it) and ``A`` is returned in the output dtype.
    """
    check_net(net, "forward")
    fcs = []
    A = X
    for layer, p, k in zip(net.layers, params, split_keys(net, key)):
        A, fc = precision.layer_forward(layer, net.policy, p, A, k, training)
        fcs.append(fc)
    return precision.cast(A, net.policy.output), tuple(fcs)


def backward(net: Network, params: Params, fcs: tuple[dict, ...], dA: jax.Array):
    """The explicit backward chain: returns ``(dX, gs, bcs)``.

    For each layer from last to first: ``dX, bc = backward(p, fc, dA)``, then
    ``g = compute_gradients(p, fc, bc)``; ``dX`` becomes the previous layer's ``dA``.
    Under ``net.policy`` both run in the compute dtype (``p`` and ``dA`` cast to it)
    and each ``g`` is returned in the parameters' dtype.
    """
    check_net(net, "backward")
    gs, bcs = [None] * len(net.layers), [None] * len(net.layers)
    last = len(net.layers) - 1
    for i in reversed(range(len(net.layers))):
        dA, bcs[i], gs[i] = precision.layer_backward(net.layers[i], net.policy, params[i],
                                                     fcs[i], dA, output=i == last)
    return dA, tuple(gs), tuple(bcs)


def apply(net: Network, params: Params, X: jax.Array, key: jax.Array | None = None,
          training: bool = False) -> jax.Array:
    """The network's output, differentiable by ``jax.grad`` through the hand-written backward.

    Under ``net.policy`` as :func:`forward`; ``jax.grad`` differentiates the casts, so
    the gradients come back in the parameters' dtype.
    """
    check_net(net, "apply")
    c = net.policy.compute
    A = precision.cast(X, c)
    for layer, p, k in zip(net.layers, params, split_keys(net, key)):
        A = precision.cast(layer_apply(layer, precision.cast(p, c), A, k, training), c)
    return precision.cast(A, net.policy.output)
