"""Check a layer's hand-written backward pass against ``jax.grad`` and finite differences.

The tool a student uses to check the backward they wrote, and the one the
built-in layers' tests use::

    from epynn_jax import testing
    from epynn_jax.layers import Dense

    report = testing.check_layer(Dense(3, "tanh"), (4,))
    print(report)          # one row per key: dX, dW, db, relative errors, pass/fail
    report.assert_ok()     # AssertionError naming every failing key

Method (float64 throughout): build the layer for ``(batch, *X_shape)``, draw
parameters and an input, and take the scalar ``L = sum(A * R)`` for a fixed
random cotangent ``R``. Then

- the hand-written gradients are ``backward(p, fc, R)`` and
  ``compute_gradients(p, fc, bc)``;
- the autodiff gradients are ``jax.grad`` of ``L`` through the *forward*
  function alone (the layer's math differentiated by JAX);
- the finite-difference gradients are central differences
  ``(L(x + eps e) - L(x - eps e)) / (2 eps)`` on up to ``max_entries`` sampled
  entries of each array, plus ``directions`` random directional derivatives.

The relative error of two arrays is ``max|a - b| / max(max|a|, max|b|, tiny)``.

A hand-written gradient that does not fit (``dX`` not of ``X``'s shape, a ``g``
entry missing or not of its parameter's shape) fails its row, with the reason
printed after ``FAIL`` (:attr:`KeyCheck.problem`); the other keys are still
checked. A layer function returning the wrong kind of thing raises
``TypeError`` naming it; a ``forward`` whose ``A`` loses the batch axis,
:class:`~epynn_jax.layers.base.LayerError`.

Under a precision policy (``policy='bfloat16'``, a
:class:`~epynn_jax.network.precision.Policy`), the layer also runs as a
network runs it under that policy: parameters, input and upstream gradient cast
to the compute dtype. Then its output ``A`` and every hand-written gradient
are compared with the float64 ones (the hand-written ones, checked above),
within ``policy_rtol`` (by default 8 roundings of the compute dtype), and every
floating array it makes (``A``, each ``fc``, ``bc`` and ``g`` entry, ``dX``)
must be in the compute dtype: a float32 array there is a float32 temporary in
a bfloat16 layer (an array made with ``float_dtype()`` instead of the input's
dtype, say).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.layers.base import Layer, LayerError, gradients_to_params, x64_mode
from epynn_jax.network import checks, precision
from epynn_jax.network.model import memory_limit
from epynn_jax.network.precision import Policy

__all__ = ["KeyCheck", "GradientReport", "check_layer", "policy_tolerance", "relative_error",
           "x64"]


def x64(enabled: bool = True):
    """Context manager switching ``jax_enable_x64`` on (scoped), across JAX versions."""
    return x64_mode(enabled)


def relative_error(a, b, tiny: float = 1e-12) -> float:
    """max|a - b| / max(max|a|, max|b|, tiny)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), tiny)
    return float(np.max(np.abs(a - b)) / scale)


@dataclasses.dataclass(frozen=True)
class KeyCheck:
    """The result for one gradient key (``dX``, ``dW``, ...)."""

    key: str
    shape: tuple[int, ...]
    error_vs_autodiff: float
    error_vs_finite_differences: float
    passed: bool
    error_vs_float64: float | None = None
    """Under a policy: the gradient computed in the compute dtype vs the float64 one."""
    problem: str | None = None
    """Why the key failed before any comparison: the hand-written gradient does not fit
    (``"backward: dX has shape (3, 1), X has (3, 3)"``); its errors are then ``inf``."""


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """Per-key results of :func:`check_layer`; ``str(report)`` is a table."""

    layer: str
    rtol: float
    checks: tuple[KeyCheck, ...]
    policy: Policy | None = None
    """The precision policy checked (None: float64 only)."""
    policy_rtol: float | None = None
    output_error: float | None = None
    """Under a policy: the output ``A`` in the compute dtype vs the float64 one."""
    dtype_errors: tuple[str, ...] = ()
    """Under a policy: the arrays that are not in the compute dtype, e.g. ``"fc['Z'] float32"``."""

    @property
    def output_ok(self) -> bool:
        return self.output_error is None or self.output_error <= self.policy_rtol

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks) and self.output_ok and not self.dtype_errors

    @property
    def failed(self) -> tuple[str, ...]:
        bad = tuple(c.key for c in self.checks if not c.passed)
        return bad + ("A",) * (not self.output_ok) + (("dtypes",) if self.dtype_errors else ())

    def __getitem__(self, key: str) -> KeyCheck:
        for c in self.checks:
            if c.key == key:
                return c
        raise KeyError(key)

    def __str__(self) -> str:
        if self.policy is None:
            lines = [
                f"Gradient check of {self.layer} (float64, rtol {self.rtol:g})",
                f"{'key':<8}{'shape':<18}{'vs jax.grad':>14}{'vs finite diff':>16}  result",
            ]
        else:
            lines = [
                f"Gradient check of {self.layer} (float64, rtol {self.rtol:g}; policy "
                f"{self.policy}, compute {self.policy.compute_dtype}, rtol "
                f"{self.policy_rtol:g} vs float64)",
                f"{'key':<8}{'shape':<18}{'vs jax.grad':>14}{'vs finite diff':>16}"
                f"{'vs float64':>12}  result",
                f"{'A':<8}{'':<18}{'':>14}{'':>16}{self.output_error:>12.2e}  "
                f"{'pass' if self.output_ok else 'FAIL'}",
            ]
        for c in self.checks:
            policy = "" if self.policy is None else f"{c.error_vs_float64:>12.2e}"
            lines.append(
                f"{c.key:<8}{str(c.shape):<18}{c.error_vs_autodiff:>14.2e}"
                f"{c.error_vs_finite_differences:>16.2e}{policy}  "
                f"{'pass' if c.passed else 'FAIL'}{f'  {c.problem}' if c.problem else ''}"
            )
        if self.dtype_errors:
            lines.append(f"not in {self.policy.compute_dtype}: {', '.join(self.dtype_errors)}")
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise ``AssertionError`` naming every failing key."""
        if not self.passed:
            raise AssertionError(
                f"{self.layer}: hand-written gradient wrong for {', '.join(self.failed)}\n{self}"
            )


def _fd_entries(fn: Callable, x: np.ndarray, rng, eps: float, max_entries: int, directions: int):
    """Sampled central-difference partials and random directional derivatives of fn at x."""
    flat = x.reshape(-1)
    n = flat.size
    idx = np.arange(n) if n <= max_entries else rng.choice(n, max_entries, replace=False)
    partials = []
    for i in idx:
        e = np.zeros(n)
        e[i] = eps
        plus, minus = fn((flat + e).reshape(x.shape)), fn((flat - e).reshape(x.shape))
        partials.append((plus - minus) / (2 * eps))
    dirs = rng.standard_normal((directions, n))
    dir_derivs = [
        (fn((flat + eps * v).reshape(x.shape)) - fn((flat - eps * v).reshape(x.shape))) / (2 * eps)
        for v in dirs
    ]
    return idx, np.array(partials), dirs, np.array(dir_derivs)


def check_layer(
    layer: Layer,
    X_shape: tuple[int, ...],
    *,
    batch: int = 3,
    seed: int = 0,
    training: bool = False,
    rtol: float = 1e-6,
    eps: float = 1e-6,
    max_entries: int = 24,
    directions: int = 3,
    X: np.ndarray | None = None,
    params: dict | None = None,
    policy: Policy | str | None = None,
    policy_rtol: float | None = None,
) -> GradientReport:
    """Compare a layer's hand-written ``dX`` and every ``g`` entry with autodiff and FD.

    ``layer`` is a functional layer (built or not) or a facade layer (anything
    with ``to_functional()``); ``X_shape`` is the sample shape without the batch
    axis. ``X`` and ``params`` override the random draws. A key passes when both
    relative errors are at most ``rtol``.

    ``policy`` (a :class:`~epynn_jax.network.precision.Policy` or a name such as
    ``'bfloat16'``) also runs the layer under that precision policy, as a network
    does: ``A`` and each gradient must be within ``policy_rtol`` of float64 (by
    default :func:`policy_tolerance` of the compute dtype) and every array the
    layer makes must be in the compute dtype.
    """
    if hasattr(layer, "to_functional"):
        layer = layer.to_functional()
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer: layer must be a layer such as epynn_jax.layers.Dense(2) "
                        f"(or a facade layer), got {layer!r}")
    X_shape = _sample_shape(X_shape)
    seed = _seed(seed)
    training = checks.check_bool(training, "training", "check_layer")
    _check_arguments(batch=batch, max_entries=max_entries, directions=directions, rtol=rtol,
                     eps=eps, policy_rtol=policy_rtol)
    X, params = _real_values(X, params)
    policy = precision.as_policy(policy, "check_layer")
    with x64(True):
        layer = _built(layer, X_shape)
        _check_memory(layer, X_shape, batch)
        initial = _initial_parameters(layer, jax.random.fold_in(jax.random.key(seed), 1))
        _check_given(layer, X, params, {k: tuple(v.shape) for k, v in initial.items()})
        return _check(layer, X_shape, batch, seed, training, rtol, eps, max_entries,
                      directions, X, params if params is not None else initial, policy,
                      policy_rtol, drawn=params is None)


#: How many float64 copies of X and of the parameters check_layer holds at once, about
#: (X, dX, autodiff's and the finite differences' arrays, the parameters and gradients).
_COPIES = 6


def _check_memory(layer: Layer, X_shape: tuple[int, ...], batch: int) -> None:
    """Raise ``ValueError`` before anything is drawn when the batch and the parameters,
    in float64, would not fit in the memory free on the default device (a typo such as
    ``X_shape=(784000,)`` for a Dense of 1000 units would fill the machine)."""
    limit, where = memory_limit()
    x = batch * math.prod(X_shape) * 8
    try:
        p = sum(math.prod(s) for s in layer.param_shapes().values()) * 8
    except Exception:  # noqa: BLE001 - a broken initialize_parameters: the draw below names it
        p = 0
    if limit is not None and _COPIES * (x + p) > limit:
        raise ValueError(f"check_layer: {layer.name} on a batch of {batch} samples of shape "
                         f"{X_shape} needs about {_COPIES * (x + p) / 2**30:.1f} GiB in float64 "
                         f"(X {x / 2**30:.2g} GiB, parameters {p / 2**30:.2g} GiB, a few "
                         f"copies of each); {where} has {limit / 2**30:.1f} GiB free. The check "
                         "needs no more than a small X_shape and batch")


def _sample_shape(X_shape) -> tuple[int, ...]:
    """``X_shape`` as a tuple of Python ints (NumPy ints accepted, as ``network.build``
    does); ``TypeError`` unless a tuple or list of ints, ``ValueError`` unless >= 1."""
    if not isinstance(X_shape, (tuple, list)) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in X_shape):
        raise TypeError(f"check_layer: X_shape must be a tuple of ints, the sample shape "
                        f"without the batch axis (e.g. (4,)), got {X_shape!r}")
    if any(s < 1 for s in X_shape):
        raise ValueError(f"check_layer: X_shape must be a tuple of positive ints, got "
                         f"{tuple(X_shape)!r}")
    return tuple(int(s) for s in X_shape)


def _seed(seed) -> int:
    """``seed`` as a Python int in [0, 2**63), the range of ``jax.random.key``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"check_layer: seed must be an int, got {seed!r}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"check_layer: seed must be in [0, 2**63), got {seed!r}")
    return int(seed)


def _real_array(a, where: str) -> np.ndarray:
    """``a`` as a NumPy array of finite real numbers (bool, int or float), else a
    ``TypeError`` (strings, complex, objects) or ``ValueError`` (ragged, NaN or inf)."""
    try:
        arr = np.asarray(a)
    except ValueError as err:  # a ragged nested list
        raise ValueError(f"check_layer: {where} is not an array of one shape ({err})") from None
    if not checks.is_real(arr.dtype):
        raise TypeError(f"check_layer: {where} must hold real numbers (bool, int or float), "
                        f"got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr.astype(np.float64))):
        raise ValueError(f"check_layer: {where} contains NaN or inf values")
    return arr


def _real_values(X, params):
    """A given ``X`` and the values of given ``params`` as arrays of finite real numbers
    (their shapes are checked against the built layer by :func:`_check_given`)."""
    if X is not None:
        X = _real_array(X, "X")
    if isinstance(params, dict):
        params = {k: _real_array(v, f"params[{k!r}]") for k, v in params.items()}
    return X, params


def _describe(value) -> str:
    """What a layer function returned, for an error message: ``"None"``, ``"an array of
    shape (3, 3)"``, ``"a tuple of 3 items"``, ``"a list"``."""
    if value is None:
        return "None"
    if isinstance(value, (jax.Array, np.ndarray)):
        return f"an array of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} item{'' if len(value) == 1 else 's'}"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _is_array(value) -> bool:
    return isinstance(value, (jax.Array, np.ndarray))


def _built(layer: Layer, X_shape: tuple[int, ...]) -> Layer:
    """``layer.compute_shapes(X_shape)``, which must return a layer with ``input_shape``."""
    built = layer.compute_shapes(X_shape)
    if not isinstance(built, Layer) or built.input_shape is None:
        got = ("the layer with input_shape None" if isinstance(built, Layer)
               else _describe(built))
        raise TypeError(f"check_layer: {layer.name}.compute_shapes must return the layer with "
                        f"its input_shape set (dataclasses.replace(layer, input_shape="
                        f"tuple(X_shape))), got {got}")
    return built


def _initial_parameters(layer: Layer, key) -> dict:
    """``layer.initialize_parameters(key)``, which must be a dict of arrays."""
    p = layer.initialize_parameters(key)
    must = f"check_layer: {layer.name}.initialize_parameters must return p, a dict of arrays"
    if not isinstance(p, dict):
        raise TypeError(f"{must}, got {_describe(p)}")
    for k, v in p.items():
        if not isinstance(k, str):
            raise TypeError(f"{must} with str keys, got the key {k!r}")
        if not _is_array(v) or not checks.is_real(v.dtype):
            got = f"dtype {v.dtype}" if _is_array(v) else _describe(v)
            raise TypeError(f"{must} (such as jnp.zeros(shape, float_dtype())), got p[{k!r}] "
                            f"{got}")
    return p


def _pair(out, layer: Layer, function: str, names: tuple[str, str], cache: str):
    """The two results of ``layer.forward`` or ``layer.backward``: an array and a dict."""
    must = f"check_layer: {layer.name}.{function} must return ({names[0]}, {names[1]})"
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{must}, got {_describe(out)}")
    a, c = out
    if not _is_array(a):
        raise TypeError(f"{must} with {names[0]} an array, got {names[0]} {_describe(a)}")
    if not isinstance(c, dict):
        raise TypeError(f"{must} with {names[1]} a dict such as {cache}, got {names[1]} "
                        f"{_describe(c)}")
    return a, c


def _check_batch_axis(layer: Layer, p, X, A, fkey, training) -> None:
    """``LayerError`` unless the forward's ``A`` is ``(m, ...)`` for a batch of ``m``, with
    the same sample shape for another ``m`` (nothing can be checked otherwise: the
    upstream gradient has ``A``'s shape, and a network could not use the layer)."""
    m = X.shape[0]
    other = jax.ShapeDtypeStruct((m + 1, *X.shape[1:]), X.dtype)
    A2 = jax.eval_shape(lambda p, X: layer.forward(p, X, fkey, training)[0], p, other)
    if A.shape[:1] != (m,) or tuple(A2.shape) != (m + 1, *A.shape[1:]):
        raise LayerError(f"check_layer: {layer.name}.forward must return A with the batch axis "
                         f"first: X of shape {tuple(X.shape)} gave A of shape "
                         f"{tuple(A.shape)}, X of shape {other.shape} gave {tuple(A2.shape)}")


def _check_arguments(**numbers) -> None:
    """Raise ``ValueError`` unless the counts are ints >= 1 and the tolerances and step
    are finite numbers > 0 (``policy_rtol`` may be None)."""
    for name in ("batch", "max_entries", "directions"):
        v = numbers[name]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"check_layer: {name} must be an int >= 1, got {v!r}")
    for name in ("rtol", "eps", "policy_rtol"):
        v = numbers[name]
        if v is None and name == "policy_rtol":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not np.isfinite(v) or v <= 0:
            raise ValueError(f"check_layer: {name} must be a finite number > 0, got {v!r}")


def _check_given(layer: Layer, X, params, expected: dict) -> None:
    """Raise ``ValueError`` unless a given ``X`` is (m >= 1, *input_shape) and given
    ``params`` have exactly the layer's keys and shapes (``expected``)."""
    if X is not None:
        shape = np.shape(X)
        if len(shape) != len(layer.input_shape) + 1 or tuple(shape[1:]) != layer.input_shape \
                or shape[0] < 1:
            raise ValueError(f"check_layer: X must have shape (m >= 1, "
                             f"{', '.join(map(str, layer.input_shape))}) for "
                             f"{layer.name}, got {shape}")
    if params is not None:
        if not isinstance(params, dict) or set(params) != set(expected):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"check_layer: params of {layer.name} must have the keys "
                             f"{sorted(expected)}, got {got}")
        for k, shape in expected.items():
            if tuple(np.shape(params[k])) != tuple(shape):
                raise ValueError(f"check_layer: params[{k!r}] of {layer.name} must have shape "
                                 f"{tuple(shape)}, got {tuple(np.shape(params[k]))}")


def policy_tolerance(dtype) -> float:
    """The default ``policy_rtol`` of :func:`check_layer`: ``8 * eps`` of ``dtype`` (0.0625
    for bfloat16, 7.8e-3 for float16), at least 1e-5. Measured errors of the built-in
    layers are 1 to 5 ``eps`` (the recurrent layers' the largest, growing with the steps);
    a wrong formula gives errors of order 1."""
    return max(8.0 * float(jnp.finfo(dtype).eps), 1e-5)


def _dtype_errors(dtype, arrays: dict) -> tuple[str, ...]:
    """``"name dtype"`` of each floating array of ``arrays`` that is not in ``dtype``."""
    return tuple(f"{name} {np.dtype(a.dtype).name}" for name, a in arrays.items()
                 if jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != dtype)


def _under_policy(layer, policy: Policy, p, X, fkey, training, R, unfit=frozenset()):
    """``(A, hand-written gradients, dtype errors)`` of the layer run in the policy's
    compute dtype (p, X and R cast at its boundary, as a network does). ``unfit``: the
    ``g`` keys that do not fit their parameter (left out: zeros)."""
    c = policy.compute

    @jax.jit
    def run(p, X, R):
        pc, Xc = precision.cast(p, c), precision.cast(X, c)
        A, fc = layer.forward(pc, Xc, fkey, training)
        dX, bc = layer.backward(pc, fc, precision.cast(R, c))
        g = layer.compute_gradients(pc, fc, bc)
        made = {"A": A, "dX": dX, **{f"fc[{k!r}]": v for k, v in fc.items()},
                **{f"bc[{k!r}]": v for k, v in bc.items()},
                **{f"g[{k!r}]": v for k, v in g.items()}}
        g = {k: v for k, v in g.items() if k not in unfit}
        return A, dX, gradients_to_params(pc, g), made

    A, dX, g, made = run(p, X, R)
    grads = {"dX": np.asarray(dX, np.float64),
             **{"d" + k: np.asarray(v, np.float64) for k, v in g.items()}}
    made = {k: v for k, v in made.items() if hasattr(v, "dtype")}
    return np.asarray(A, np.float64), grads, _dtype_errors(c, made)


def _hand_gradients(layer: Layer, p: dict, X, fc: dict, R):
    """``(hand, problems)``: the hand-written ``dX`` and ``d<k>`` of every parameter, and
    for each that does not fit (``dX`` not of ``X``'s shape, ``g['d' + k]`` missing or not
    of ``p[k]``'s shape, which a network refuses) why, in words. Wrong types of results
    raise ``TypeError``."""
    dX, bc = _pair(layer.backward(p, fc, R), layer, "backward", ("dX", "bc"),
                   "{'dA': dA, 'dX': dX}")
    g = layer.compute_gradients(p, fc, bc)
    if not isinstance(g, dict):
        raise TypeError(f"check_layer: {layer.name}.compute_gradients must return g, a dict "
                        f"such as {{'dW': dW}}, got {_describe(g)}")
    problems = {}
    if dX.shape != X.shape:
        problems["dX"] = f"backward: dX has shape {tuple(dX.shape)}, X has {tuple(X.shape)}"
    for k, v in p.items():
        if "d" + k not in g:
            problems["d" + k] = (f"compute_gradients: no 'd{k}' for the parameter {k!r} (g has "
                                 f"the keys {sorted(map(str, g))})")
            continue
        gk = g["d" + k]
        if not _is_array(gk):
            raise TypeError(f"check_layer: {layer.name}.compute_gradients must return arrays, "
                            f"got g[{'d' + k!r}] {_describe(gk)}")
        if gk.shape != v.shape:
            problems["d" + k] = (f"compute_gradients: d{k} has shape {tuple(gk.shape)}, {k} "
                                 f"has {tuple(v.shape)}")
    fit = gradients_to_params(p, {k: v for k, v in g.items() if k not in problems})
    hand = {"dX": np.asarray(dX),
            **{"d" + k: np.asarray(g["d" + k] if "d" + k in problems and "d" + k in g else v)
               for k, v in fit.items()}}
    return hand, problems


def _check(layer, X_shape, batch, seed, training, rtol, eps, max_entries, directions, X, params,
           policy=Policy(), policy_rtol=None, drawn=True):
    """The checks; ``params`` is the layer's initial parameters (``drawn``: perturbed
    here) or the user's."""
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    if drawn:
        # Non-zero biases so that their gradients are exercised away from 0.
        params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    p = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in params.items()}
    X = rng.standard_normal((batch, *X_shape)) if X is None else np.asarray(X, np.float64)
    X = jnp.asarray(X)
    fkey = jax.random.fold_in(key, 2)
    A, fc = _pair(layer.forward(p, X, fkey, training), layer, "forward", ("A", "fc"),
                  "{'X': X, 'A': A}")
    _check_batch_axis(layer, p, X, A, fkey, training)
    R = jnp.asarray(rng.standard_normal(A.shape))

    hand, problems = _hand_gradients(layer, p, X, fc, R)

    def objective(p, X):
        return jnp.sum(layer.forward(p, X, fkey, training)[0] * R)

    objective = jax.jit(objective)
    gp, gX = jax.jit(jax.grad(objective, argnums=(0, 1)))(p, X)
    auto = {"dX": np.asarray(gX), **{"d" + k: np.asarray(v) for k, v in gp.items()}}

    def fd_for(name):
        if name == "dX":
            return lambda x: float(objective(p, jnp.asarray(x))), np.asarray(X)
        k = name[1:]
        return lambda x: float(objective({**p, k: jnp.asarray(x)}, X)), np.asarray(p[k])

    mixed = None
    if not policy.default:
        if policy_rtol is None:
            policy_rtol = policy_tolerance(policy.compute)
        mixed = _under_policy(layer, policy, p, X, fkey, training, R, frozenset(problems))

    checks_ = []
    for name in hand:
        f64_err = None
        if mixed is not None:
            f64_err = relative_error(mixed[1][name], hand[name])
        if name in problems:  # nothing to compare: inf errors, FAIL, and why
            checks_.append(KeyCheck(name, tuple(hand[name].shape), float("inf"), float("inf"),
                                    False, f64_err, problems[name]))
            continue
        fn, x0 = fd_for(name)
        idx, partials, dirs, dir_derivs = _fd_entries(fn, x0, rng, eps, max_entries, directions)
        h = hand[name].reshape(-1)
        fd_err = max(relative_error(h[idx], partials), relative_error(dirs @ h, dir_derivs))
        ad_err = relative_error(hand[name], auto[name])
        ok = ad_err <= rtol and fd_err <= max(rtol, 1e-5)
        if mixed is not None:
            ok = ok and f64_err <= policy_rtol
        checks_.append(KeyCheck(name, tuple(hand[name].shape), ad_err, fd_err, ok, f64_err))
    if mixed is None:
        return GradientReport(layer.name, rtol, tuple(checks_))
    return GradientReport(layer.name, rtol, tuple(checks_), policy, policy_rtol,
                          relative_error(mixed[0], np.asarray(A)), mixed[2])
