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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax.layers.base import Layer, gradients_to_params

__all__ = ["KeyCheck", "GradientReport", "check_layer", "relative_error", "x64"]


def x64(enabled: bool = True):
    """Context manager switching ``jax_enable_x64`` on (scoped), across JAX versions."""
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # JAX < 0.6
        from jax.experimental import enable_x64 as ctx
    return ctx(enabled)


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


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """Per-key results of :func:`check_layer`; ``str(report)`` is a table."""

    layer: str
    rtol: float
    checks: tuple[KeyCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.checks if not c.passed)

    def __getitem__(self, key: str) -> KeyCheck:
        for c in self.checks:
            if c.key == key:
                return c
        raise KeyError(key)

    def __str__(self) -> str:
        lines = [
            f"Gradient check of {self.layer} (float64, rtol {self.rtol:g})",
            f"{'key':<8}{'shape':<18}{'vs jax.grad':>14}{'vs finite diff':>16}  result",
        ]
        for c in self.checks:
            lines.append(
                f"{c.key:<8}{str(c.shape):<18}{c.error_vs_autodiff:>14.2e}"
                f"{c.error_vs_finite_differences:>16.2e}  {'pass' if c.passed else 'FAIL'}"
            )
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
) -> GradientReport:
    """Compare a layer's hand-written ``dX`` and every ``g`` entry with autodiff and FD.

    ``layer`` is a functional layer (built or not) or a facade layer (anything
    with ``to_functional()``); ``X_shape`` is the sample shape without the batch
    axis. ``X`` and ``params`` override the random draws. A key passes when both
    relative errors are at most ``rtol``.
    """
    if hasattr(layer, "to_functional"):
        layer = layer.to_functional()
    with x64(True):
        return _check(layer, tuple(X_shape), batch, seed, training, rtol, eps, max_entries,
                      directions, X, params)


def _check(layer, X_shape, batch, seed, training, rtol, eps, max_entries, directions, X, params):
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    layer = layer.compute_shapes(X_shape)
    if params is None:
        params = layer.initialize_parameters(jax.random.fold_in(key, 1))
        # Non-zero biases so that their gradients are exercised away from 0.
        params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    p = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in params.items()}
    X = rng.standard_normal((batch, *X_shape)) if X is None else np.asarray(X, np.float64)
    X = jnp.asarray(X)
    fkey = jax.random.fold_in(key, 2)
    A, fc = layer.forward(p, X, fkey, training)
    R = jnp.asarray(rng.standard_normal(A.shape))

    dX, bc = layer.backward(p, fc, R)
    g = gradients_to_params(p, layer.compute_gradients(p, fc, bc))
    hand = {"dX": np.asarray(dX), **{"d" + k: np.asarray(v) for k, v in g.items()}}

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

    checks = []
    for name in hand:
        fn, x0 = fd_for(name)
        idx, partials, dirs, dir_derivs = _fd_entries(fn, x0, rng, eps, max_entries, directions)
        h = hand[name].reshape(-1)
        fd_err = max(relative_error(h[idx], partials), relative_error(dirs @ h, dir_derivs))
        ad_err = relative_error(hand[name], auto[name])
        checks.append(KeyCheck(name, tuple(hand[name].shape), ad_err, fd_err,
                               ad_err <= rtol and fd_err <= max(rtol, 1e-5)))
    return GradientReport(layer.name, rtol, tuple(checks))
