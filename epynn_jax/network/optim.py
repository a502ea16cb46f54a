"""EpyNN's SGD as an optax ``GradientTransformation``, with a learning rate per layer;
dynamic loss scaling for float16 compute.

EpyNN updates every parameter with ``p -= lrate[e] * g``: plain SGD whose rate
depends on the epoch ``e`` through a schedule (:mod:`epynn_jax.maths.schedules`),
and each layer may have its own schedule (the facade's per-layer ``se_hPars``).
Here that rule is ``optax.inject_hyperparams`` around a per-layer
``scale_by_schedule``: the schedule's numbers (one row per layer) live in the
optimizer **state**, so a new learning rate or epoch count is new data, not a
new program. The transformation itself depends only on the schedules' kinds,
``steps_per_epoch`` and the layers' own update rules, and is built once per
such combination: the compiled epoch, which takes the optimizer's ``update``
as a static argument, is reused by ``fit(epochs=3)`` then ``fit(epochs=5)``.
"""

from __future__ import annotations

import collections
import functools
import math
import numbers
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.layers.base import float_dtype
from epynn_jax.maths import schedules
from epynn_jax.maths.schedules import Schedule

if TYPE_CHECKING:
    import optax

# optax is imported where an optimizer is built, not with this module: it is most of the
# import time of the package (0.1-0.2 s), and `import epynn_jax` needs no optimizer.

__all__ = ["epynn_sgd", "HYPERPARAMS", "LossScaleState", "SkippedStepsWarning", "loss_scaling",
           "loss_scale_of", "is_loss_scaled", "check_loss_scaling", "describe"]

HYPERPARAMS = ("learning_rate", "cycle_descent", "decay_k", "cycle_epochs", "epochs",
               "first_epoch")
"""The rows of ``opt_state.hyperparams['numbers']`` (6, n_schedules): one column per layer."""


def _scale_by_layer_rates(numbers, *, kinds: tuple[str, ...], steps_per_epoch: int,
                          own_updates: tuple[Callable | None, ...]
                          ) -> optax.GradientTransformation:
    """Layer ``i``'s update is ``-rate_i(e) * g``, ``e = first_epoch + count // steps_per_epoch``
    (capped at ``epochs - 1``); a layer with its own update rule ``own(p, g, rate) -> p``
    (EpyNN's ``update_parameters``, with ``g`` keyed ``'d' + k``) gets ``own(...) - p``.
    ``numbers`` holds the :data:`HYPERPARAMS` rows (one array: one transfer per ``init``).
    """
    learning_rate, cycle_descent, decay_k, cycle_epochs, epochs, first_epoch = numbers
    import optax


    def init(params):
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        # lax.div: count >= 0, so it is the floor; jnp.floor_divide traces a signed-floor program
        x = jnp.minimum(first_epoch + jax.lax.div(state.count, jnp.int32(steps_per_epoch)),
                        epochs - 1)

        def layer_rate(j):
            return schedules.rate(kinds[j], learning_rate[j], cycle_descent[j], decay_k[j],
                                  cycle_epochs[j], x[j].astype(learning_rate.dtype))

        def scaled(g, r):
            return jax.tree_util.tree_map(lambda v: jnp.asarray(-r, v.dtype) * v, g)

        count = optax.ScaleByScheduleState(optax.safe_int32_increment(state.count))
        if len(kinds) == 1 and own_updates[0] is None:  # one schedule for any parameter tree
            return scaled(updates, layer_rate(0)), count
        out = []
        for i, g in enumerate(updates):
            r, own = layer_rate(i), own_updates[i]
            if own is None:
                out.append(scaled(g, r))
            else:
                new = own(params[i], {"d" + k: v for k, v in g.items()}, r)
                out.append({k: new[k] - params[i][k] for k in g})
        return tuple(out), count

    return optax.GradientTransformation(init, update)


@functools.lru_cache(maxsize=64)
def _transformation(kinds: tuple[str, ...], steps_per_epoch: int,
                    own_updates: tuple[Callable | None, ...], dtype: Any
                    ) -> tuple[optax.GradientTransformation, Any]:
    """The transformation and a host copy of its initial state (the state does not depend
    on the parameters: step counts, all 0, and the numbers, set by ``init``), so ``init`` is
    ONE transfer and nothing is compiled for it."""
    import optax

    placeholder = np.ones((len(HYPERPARAMS), len(kinds)))
    base = optax.inject_hyperparams(
        _scale_by_layer_rates, static_args=("kinds", "steps_per_epoch", "own_updates"),
        hyperparam_dtype=dtype)(
        placeholder, kinds=kinds, steps_per_epoch=steps_per_epoch, own_updates=own_updates)
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), jax.eval_shape(base.init, ()))

    def update(updates, state, params=None):
        # inject_hyperparams' own step count only evaluates hyperparameters given as
        # schedules (callables); ours are arrays in the state, so it is left as it is
        # (state.inner_state.count is the step): advancing it was one more kernel per
        # step, 1 % of the MLP's step on a CPU. The state keeps optax's structure.
        updates, new = base.update(updates, state, params)
        return updates, new._replace(count=state.count)

    if all(own is None for own in own_updates):  # nothing but this module's code and optax's
        _DESCRIBED[update] = (f"epynn_sgd(kinds={kinds!r}, steps_per_epoch="
                              f"{int(steps_per_epoch)}, dtype={np.dtype(dtype).name})")
    return optax.GradientTransformation(base.init, update), zeros


#: ``update`` functions built by :func:`_transformation` -> what determines them
_DESCRIBED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def describe(update: Callable) -> str | None:
    """What an optimizer's ``update`` computes, as text, when :func:`epynn_sgd` built it
    without layers' own rules (its schedules' kinds, steps per epoch and dtype: the
    numbers are in the state); None for any other (a user's optax optimizer).
    :mod:`~epynn_jax.network.programs` keys stored programs on it."""
    try:
        return _DESCRIBED.get(update)
    except TypeError:  # not weakly referenceable: not ours
        return None


def _numbers(schedules_: Sequence[Schedule | None], epochs: int, first_epoch: int
             ) -> np.ndarray:
    """The :data:`HYPERPARAMS` rows (6, n): one column per schedule."""
    cols = [(*(schedules.resolve(s, epochs) if s is not None else (0.0, 0.0, 0.0, 1.0)),
             epochs, first_epoch) for s in schedules_]
    return np.asarray(cols, np.float64).T


#: The last initial states placed on a device: ``fit`` builds the same optimizer at every
#: call, and a state is immutable, so it is placed once (a transfer costs 0.1 ms).
_PLACED: collections.OrderedDict = collections.OrderedDict()


def _initial_state(template: Any, key: tuple, numbers: np.ndarray) -> Any:
    """``template`` with ``numbers`` on the default device: ONE transfer, then reused."""
    key = (*key, numbers.tobytes(), numbers.shape, str(jax.config.jax_default_device))
    if key in _PLACED:
        _PLACED.move_to_end(key)
        return _PLACED[key]
    placed = jax.device_put(template._replace(hyperparams={"numbers": numbers}))
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(placed)):
        return placed  # init under a trace (eval_shape, jit): nothing to keep
    _PLACED[key] = placed
    if len(_PLACED) > 32:
        _PLACED.popitem(last=False)
    return placed


def epynn_sgd(schedule: Schedule | Sequence[Schedule] = Schedule(), epochs: int = 1,
              steps_per_epoch: int = 1, *, first_epoch: int = 0,
              own_updates: Sequence[Callable | None] | None = None
              ) -> optax.GradientTransformation:
    """EpyNN's update ``p -= lrate[e] * g``, each layer with its own schedule.

    ``schedule`` is one :class:`Schedule` for every layer, or one per layer; a layer
    that must not train gets ``None`` (its rate is 0). At optimizer step ``t`` the epoch is
    ``e = first_epoch + t // steps_per_epoch`` (the last one, ``epochs - 1``, after the
    end) and layer ``i`` moves by ``-rate_i(e) * g`` with :func:`~epynn_jax.maths.schedules.rate`
    over ``epochs`` TOTAL epochs (EpyNN's schedules depend on the total). ``own_updates``
    gives a layer its own rule ``own(p, g, rate) -> new p`` (the facade's compiled custom
    layers). The numbers are part of the state (``opt_state.hyperparams``); the returned
    transformation's ``update`` is shared by every call with the same kinds and steps.
    The state is optax's ``InjectStatefulHyperparamsState``; the steps taken are
    ``state.inner_state.count`` (its outer ``count`` is not advanced).
    """
    scheds = (schedule,) if isinstance(schedule, Schedule) else tuple(schedule)
    if not scheds or not all(s is None or isinstance(s, Schedule) for s in scheds):
        raise TypeError(f"epynn_sgd: schedule must be a Schedule or one per layer (None: "
                        f"the layer does not train), got {schedule!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    if isinstance(first_epoch, bool) or not isinstance(first_epoch, int) or first_epoch < 0:
        raise ValueError(f"epynn_sgd: first_epoch must be an int >= 0, got {first_epoch!r}")
    own = tuple(own_updates) if own_updates is not None else (None,) * len(scheds)
    if len(own) != len(scheds):
        raise ValueError(f"epynn_sgd: {len(own)} own_updates for {len(scheds)} layers")
    return _sgd(scheds, int(epochs), int(steps_per_epoch), first_epoch, own, float_dtype())


@functools.lru_cache(maxsize=64)
def _sgd(scheds: tuple[Schedule | None, ...], epochs: int, steps_per_epoch: int,
         first_epoch: int, own: tuple[Callable | None, ...], dtype: Any
         ) -> optax.GradientTransformation:
    """:func:`epynn_sgd` of checked arguments, built once per combination (``fit`` builds
    the same optimizer at every call; a transformation is immutable)."""
    import optax

    kinds = tuple("steady" if s is None else s.schedule for s in scheds)
    base, template = _transformation(kinds, int(steps_per_epoch),
                                     own, dtype)
    numbers = _numbers(scheds, int(epochs), first_epoch).astype(dtype)

    def init(params):
        if len(scheds) > 1 and len(params) != len(scheds):
            raise ValueError(f"epynn_sgd: {len(scheds)} schedules (one per layer) for "
                             f"{len(params)} layers")
        return _initial_state(template, (kinds, int(steps_per_epoch), own, dtype), numbers)

    return optax.GradientTransformation(init, base.update)


# -- dynamic loss scaling -------------------------------------------------------------------


class LossScaleState(NamedTuple):
    """The state of :func:`loss_scaling`: the current ``scale`` (float32 scalar), the
    finite steps since it last changed, the wrapped optimizer's state, and two int32
    counters since ``init``: the ``steps`` it was given and how many of them it
    ``skipped`` (``fit`` reports the skips of each call: ``FitResult.skipped_steps``)."""

    scale: jax.Array
    good_steps: jax.Array
    inner: Any
    steps: jax.Array
    skipped: jax.Array


class _LossScaleStateV1(NamedTuple):
    """:class:`LossScaleState` as checkpoints written before its counters hold it
    (its class name, so that their recorded tree structure matches)."""

    scale: jax.Array
    good_steps: jax.Array
    inner: Any


_LossScaleStateV1.__name__ = _LossScaleStateV1.__qualname__ = "LossScaleState"


def legacy_loss_scale_state(state: Any) -> Any:
    """``state`` as a checkpoint written before the counters holds it (its first three
    fields), if it is a :class:`LossScaleState`; else None."""
    return _LossScaleStateV1(*state[:3]) if isinstance(state, LossScaleState) else None


def upgraded_loss_scale_state(old: Any) -> LossScaleState:
    """The :class:`LossScaleState` of a restored :func:`legacy_loss_scale_state` (the
    counters start at 0)."""
    return LossScaleState(old.scale, old.good_steps, old.inner,
                          *(jax.device_put(np.int32(0)) for _ in range(2)))


class SkippedStepsWarning(RuntimeWarning):
    """``fit`` under loss scaling skipped every step of the call (gradients not finite at
    every scale tried): the parameters did not change."""


#: The smallest and largest loss scales :func:`loss_scaling` uses.
MIN_SCALE, MAX_SCALE = 2.0**-24, 2.0**24


def loss_scaling(optimizer: optax.GradientTransformation, initial: float = 2.0**15,
                 growth_interval: int = 2000, factor: float = 2.0
                 ) -> optax.GradientTransformation:
    """``optimizer`` behind dynamic loss scaling (for float16 compute).

    The training step multiplies ``dL/dA`` by the state's ``scale`` S before the
    backward (:func:`loss_scale_of`), so float16 gradients of size ``g * S`` do
    not underflow; this transformation divides them by S (in the parameters'
    dtype) and then:

    - all finite: the wrapped optimizer's update; after ``growth_interval``
      finite steps in a row, S *= ``factor``;
    - any NaN or inf: the step is skipped (zero update, the wrapped state kept)
      and S /= ``factor``. At S = :data:`MIN_SCALE` nothing is skipped any more:
      the non-finite update reaches the parameters and ``fit``'s guard stops
      training with a :class:`~epynn_jax.errors.NonFiniteError`.

    The state counts the steps and the skipped steps (``steps``, ``skipped``):
    ``fit`` returns the skips of its call in ``FitResult.skipped_steps`` and
    warns (:class:`SkippedStepsWarning`) when it skipped every step.

    The rule of PyTorch's ``GradScaler`` and Keras' ``LossScaleOptimizer``; S
    stays in [:data:`MIN_SCALE`, :data:`MAX_SCALE`]. ``fit`` wraps its optimizer
    in this when the network computes in float16 (bfloat16 has float32's range
    and needs none). It must wrap the whole optimizer: ``fit`` refuses a scale
    nested inside another transformation (:func:`check_loss_scaling`).
    """
    import optax

    if not (_is_number(initial) and MIN_SCALE <= initial <= MAX_SCALE):
        raise ValueError(f"loss_scaling: initial must be a number in [2**-24, 2**24], got "
                         f"{initial!r}")
    if isinstance(growth_interval, (bool, np.bool_)) or \
            not isinstance(growth_interval, numbers.Integral) or growth_interval < 1:
        raise ValueError(f"loss_scaling: growth_interval must be a positive int, got "
                         f"{growth_interval!r}")
    # (an infinite factor took the scale to its floor at the first overflow, after which
    # every non-finite step went through)
    if not (_is_number(factor) and math.isfinite(factor) and factor > 1):
        raise ValueError(f"loss_scaling: factor must be a finite number > 1, got {factor!r}")
    initial, growth_interval, factor = float(initial), int(growth_interval), float(factor)

    def init(params):
        def zero():
            return jnp.zeros((), jnp.int32)

        return LossScaleState(jnp.asarray(initial, jnp.float32), zero(), optimizer.init(params),
                              zero(), zero())

    def update(grads, state, params=None):
        grads = jax.tree.map(lambda g: g / state.scale.astype(g.dtype), grads)
        finite = jnp.all(jnp.stack([jnp.isfinite(jnp.sum(g)) for g in jax.tree.leaves(grads)]))
        updates, inner = optimizer.update(grads, state.inner, params)
        skip = ~finite & (state.scale > MIN_SCALE)
        updates = jax.tree.map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), updates)
        inner = jax.tree.map(lambda new, old: jnp.where(skip, old, new), inner, state.inner)
        grow = finite & (state.good_steps + 1 >= growth_interval)
        scale = jnp.where(finite, jnp.where(grow, state.scale * factor, state.scale),
                          state.scale / factor)
        good = jnp.where(finite & ~grow, state.good_steps + 1, 0)
        return updates, LossScaleState(jnp.clip(scale, MIN_SCALE, MAX_SCALE),
                                       good.astype(jnp.int32), inner, state.steps + 1,
                                       state.skipped + skip.astype(jnp.int32))

    return optax.GradientTransformation(init, update)


def _is_number(x: Any) -> bool:
    """Whether ``x`` is a real number (Python or NumPy), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def loss_scale_of(opt_state: Any) -> jax.Array | None:
    """The loss scale S of an optimizer state made by :func:`loss_scaling` (its top level),
    else None (no scaling)."""
    return opt_state.scale if isinstance(opt_state, LossScaleState) else None


def check_loss_scaling(optimizer: optax.GradientTransformation, params: Any,
                       where: str = "fit") -> bool:
    """:func:`is_loss_scaled`, and ``ValueError`` naming ``where`` when a
    :class:`LossScaleState` is nested deeper in the state (``optax.chain(...,
    loss_scaling(tx))``): the training step multiplies the loss by the top-level
    scale only (:func:`loss_scale_of`), so a nested one would divide every gradient
    by a scale the loss was never multiplied by."""
    state = jax.eval_shape(optimizer.init, params)
    top = isinstance(state, LossScaleState)
    below = state.inner if top else state
    nodes = jax.tree.leaves(below, is_leaf=lambda x: isinstance(x, LossScaleState))
    if any(isinstance(x, LossScaleState) for x in nodes):
        raise ValueError(f"{where}: optimizer: loss_scaling must wrap the whole optimizer "
                         "(loss_scaling(optax.chain(...)), not a part of it): the loss is "
                         "scaled by the outermost scale only, and a nested one would divide "
                         "the gradients by a scale the loss was never multiplied by")
    return top


def is_loss_scaled(optimizer: optax.GradientTransformation, params: Any) -> bool:
    """Whether ``optimizer``'s state is a :class:`LossScaleState` (shapes only, no compile)."""
    return isinstance(jax.eval_shape(optimizer.init, params), LossScaleState)
