"""Shared checks for the recurrent layers' tests (RNN, LSTM, GRU); not a test module.

EpyNN 1.2.13 is the oracle: its layer objects are built with the same weights
as ours (float64 NumPy copies) and run on the same X and dA.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from epynn_jax import testing
from epynn_jax.layers import Dense, LayerError, base
from epynn_jax.maths import activations

RTOL = 1e-8


def close(ours, theirs, what: str, rtol: float = RTOL) -> None:
    """Assert max|a - b| / max(|a|, |b|) <= rtol, with shapes that agree."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != EpyNN's {b.shape}"
    err = testing.relative_error(a, b)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


HPARS = {"LRELU_alpha": 0.3, "ELU_alpha": 1.0, "softmax_temperature": 1.0}


def epynn_twin(epynn_cls, layer, p: dict):
    """EpyNN's layer with our ``layer``'s settings, holding float64 NumPy copies of ``p``."""
    from epynn.commons import maths  # noqa: PLC0415

    acts = {k: getattr(maths, v) for k, v in layer.activation.items()}
    their = epynn_cls(layer.unit_cells, **acts, clip_gradients=layer.clip_gradients,
                      sequences=layer.sequences, se_hPars=dict(HPARS))
    their.p = {k: np.array(v, dtype=np.float64) for k, v in p.items()}
    return their


def setup(layer, X_shape, batch: int = 3, seed: int = 0):
    """Build ``layer`` on ``X_shape``; draw p (random, non-zero biases), X and a dA (float64)."""
    rng = np.random.default_rng(seed)
    layer = layer.compute_shapes(X_shape)
    p = layer.initialize_parameters(jax.random.key(seed))
    p = {k: jnp.asarray(np.asarray(v) + 0.1 * rng.standard_normal(v.shape)) for k, v in p.items()}
    X = jnp.asarray(rng.standard_normal((batch, *X_shape)))
    out_shape = (batch, *layer.output_shape)
    dA = jnp.asarray(rng.standard_normal(out_shape))
    return layer, p, X, dA


def run_ours(layer, p, X, dA):
    A, fc = layer.forward(p, X)
    dX, bc = layer.backward(p, fc, dA)
    g = layer.compute_gradients(p, fc, bc)
    return A, fc, dX, bc, g


def run_epynn(their, X, dA):
    A = their.forward(np.asarray(X))
    dX = their.backward(np.asarray(dA))
    their.compute_gradients()
    return A, their.fc, dX, their.bc, their.g


def check_parity(layer, p, X, dA, their) -> None:
    """Outputs, every fc/bc entry both have, dX and every g entry within RTOL of EpyNN."""
    A, fc, dX, bc, g = run_ours(layer, p, X, dA)
    tA, tfc, tdX, tbc, tg = run_epynn(their, X, dA)
    close(A, tA, "A")
    close(dX, tdX, "dX")
    shared_fc = set(fc) & set(tfc)
    shared_bc = set(bc) & set(tbc)
    # Every EpyNN cache but LSTM's never-used 'dz_' exists here too.
    assert set(tfc) <= set(fc), f"fc keys missing: {set(tfc) - set(fc)}"
    assert set(tbc) - {"dz_"} <= set(bc), f"bc keys missing: {set(tbc) - set(bc)}"
    for k in sorted(shared_fc):
        close(fc[k], tfc[k], f"fc[{k!r}]")
    for k in sorted(shared_bc):
        close(bc[k], tbc[k], f"bc[{k!r}]")
    assert set(g) == set(tg), f"g keys {sorted(g)} != EpyNN's {sorted(tg)}"
    for k in g:
        close(g[k], tg[k], f"g[{k!r}]")


def clip_formula(g: dict) -> dict:
    """EpyNN's clipping rule written directly (NumPy float64): global norm 0.25."""
    total = np.sqrt(sum(np.sum((np.asarray(v) + 1e-16) ** 2) for v in g.values()))
    coef = 0.25 / (total + 1e-16)
    return {k: np.asarray(v) * coef if coef < 1 else np.asarray(v) for k, v in g.items()}


def _mse_grad(Y, A):
    """dL/dA of the per-sample MSE (EpyNN's: -2/U (Y - A), U = A.shape[1])."""
    return -2.0 / A.shape[1] * (Y - A)


def sgd_parity(layer, p, X, their, epochs: int = 4, lr: float = 0.05) -> None:
    """Full-batch SGD, MSE into a Dense(2, softmax) head (last state) or directly on the
    sequence output: parameters of both libraries agree after ``epochs`` updates."""
    from epynn.commons.maths import softmax  # noqa: PLC0415
    from epynn.dense.models import Dense as EDense  # noqa: PLC0415

    rng = np.random.default_rng(7)
    m = X.shape[0]
    head = not layer.sequences
    if head:
        dense = Dense(2, "softmax").compute_shapes((layer.unit_cells,))
        pd = dense.initialize_parameters(jax.random.key(3))
        edense = EDense(2, softmax, se_hPars=dict(HPARS))
        edense.p = {k: np.array(v, np.float64) for k, v in pd.items()}
        Y = np.eye(2)[rng.integers(0, 2, m)]
    else:
        Y = rng.uniform(-1, 1, (m, *layer.output_shape))
    Xn = np.asarray(X)

    @jax.jit
    def step(p, pd):
        A, fc = layer.forward(p, X)
        if head:
            Ad, fcd = dense.forward(pd, A)
            dAd = _mse_grad(jnp.asarray(Y), Ad)
            dA, bcd = dense.backward(pd, fcd, dAd)
            gd = base.gradients_to_params(pd, dense.compute_gradients(pd, fcd, bcd))
            pd = {k: pd[k] - lr * gd[k] for k in pd}
        else:
            dA = _mse_grad(jnp.asarray(Y), A)
        _, bc = layer.backward(p, fc, dA)
        g = layer.compute_gradients(p, fc, bc)
        return {k: p[k] - lr * g["d" + k] for k in p}, pd

    pd_ours = pd if head else {}
    for _ in range(epochs):
        p, pd_ours = step(p, pd_ours)
        A = their.forward(Xn)
        if head:
            Ad = edense.forward(A)
            dA = edense.backward(_mse_grad(Y, Ad))
            edense.compute_gradients()
            for k in edense.p:
                edense.p[k] = edense.p[k] - lr * edense.g["d" + k]
        else:
            dA = _mse_grad(Y, A)
        their.backward(dA)
        their.compute_gradients()
        for k in their.p:
            their.p[k] = their.p[k] - lr * their.g["d" + k]
    for k in p:
        close(p[k], their.p[k], f"p[{k!r}] after {epochs} SGD epochs")
    if head:
        for k in pd_ours:
            close(pd_ours[k], edense.p[k], f"Dense p[{k!r}] after {epochs} SGD epochs")


def _train_step(layer, lr: float = 0.01):
    """A jitted SGD step on the summed squared error of the layer's output, counting traces."""
    traces = []

    @jax.jit
    def step(p, X, Y):
        traces.append(1)
        A, fc = layer.forward(p, X)
        _, bc = layer.backward(p, fc, 2 * (A - Y))
        g = layer.compute_gradients(p, fc, bc)
        return {k: p[k] - lr * g["d" + k] for k in p}, jnp.sum((A - Y) ** 2)

    return step, traces


def _data(layer, m: int, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    e = layer.input_shape[1]
    X = jnp.asarray(rng.uniform(-1, 1, (m, steps, e)), jnp.float32)
    Y = jnp.asarray(rng.uniform(-0.5, 0.5, (m, *layer.output_shape)), jnp.float32)
    return X, Y


def check_long_sequence(layer, steps: int = 2000, m: int = 2, epochs: int = 4) -> None:
    """A 2,000-step sequence: one trace for several epochs (new data, same shapes), the loss
    falls, and the compiled program's temporary memory stays linear in the steps."""
    layer = layer.compute_shapes((steps, 1))
    p = layer.initialize_parameters(jax.random.key(0))
    step, traces = _train_step(layer)
    X, Y = _data(layer, m, steps)
    # Temporaries grow linearly with the steps: compare two lengths, so that a fixed
    # library workspace (cuBLAS/cuDNN reserve tens of MB on a GPU) cancels out.
    half = layer.compute_shapes((steps // 2, 1))
    temp = step.lower(p, X, Y).compile().memory_analysis().temp_size_in_bytes
    temp_half = _train_step(half)[0].lower(p, *_data(half, m, steps // 2)).compile() \
        .memory_analysis().temp_size_in_bytes
    per_state = m * (steps - steps // 2) * layer.unit_cells * 4  # one (m, s, u) float32 array
    growth = temp - temp_half
    assert growth < 100 * per_state, f"temporaries grew {growth} B > 100 x {per_state} B"
    losses = []
    for epoch in range(epochs):
        p, loss = step(p, X + 0.0 * epoch, Y)
        losses.append(float(loss))
    assert len(traces) == 1, f"traced {len(traces)} times"
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def check_program_size(layer) -> None:
    """The lowered train step has the same size at 16 and 1,024 steps (no unrolling)."""
    sizes = []
    for steps in (16, 1024):
        built = layer.compute_shapes((steps, 1))
        p = built.initialize_parameters(jax.random.key(0))
        step, _ = _train_step(built)
        sizes.append(len(step.lower(p, *_data(built, 2, steps)).as_text()))
    assert abs(sizes[1] - sizes[0]) <= 0.02 * sizes[0], sizes


def check_bad_input(cls, activation_fields) -> None:
    """Rank, feature count, units, flags and softmax: LayerError before any tracing."""
    import pytest  # noqa: PLC0415

    with pytest.raises(LayerError, match="3-D input"):
        cls(3).compute_shapes((4,))
    with pytest.raises(LayerError, match="3-D input"):
        cls(3).compute_shapes((4, 2, 1))
    built = cls(3).compute_shapes((4, 2))
    p = built.initialize_parameters(jax.random.key(0))
    with pytest.raises(LayerError, match="3-D input"):
        built.forward(p, jnp.ones((2, 4)))
    with pytest.raises(LayerError, match="expected 2 features"):
        built.forward(p, jnp.ones((2, 4, 3)))
    with pytest.raises(LayerError, match="expected 2 features"):
        jax.jit(built.forward)(p, jnp.ones((2, 4, 3)))
    A, fc = built.forward(p, jnp.ones((2, 4, 2)))
    with pytest.raises(LayerError, match="dA must have the shape of the output"):
        built.backward(p, fc, jnp.ones((2, 4, 3)))
    for field in activation_fields:
        with pytest.raises(LayerError, match="softmax is only allowed in Dense"):
            cls(3, **{field: "softmax"})
        with pytest.raises(LayerError, match="softmax is only allowed in Dense"):
            cls(3, **{field: activations.softmax})
        with pytest.raises(ValueError, match="unknown activation"):
            cls(3, **{field: "swish"})
    for bad in (0, -1, 2.0, True):
        with pytest.raises(LayerError, match="unit_cells"):
            cls(bad)
    with pytest.raises(LayerError, match="sequences"):
        cls(3, sequences="yes")
    with pytest.raises(ValueError, match="unknown initializer"):
        cls(3, initialization="he")


def check_clipping(layer, clipped, p, X, dA) -> None:
    """``clipped`` (clip_gradients=True) gives EpyNN's rule applied to ``layer``'s exact g,
    on a draw where it fires; gradients of norm under 0.25 are left exactly as they are."""
    g = run_ours(layer, p, X, dA)[-1]
    gc = run_ours(clipped, p, X, dA)[-1]
    expected = clip_formula(g)
    norm = np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in g.values()))
    assert norm > 0.25, "the draw should make the rule fire"
    for k in g:
        close(gc[k], expected[k], f"clipped {k}", rtol=1e-12)
    g_small = run_ours(clipped, p, X, dA * 1e-6)[-1]
    g_ref = run_ours(layer, p, X, dA * 1e-6)[-1]
    for k in g:
        np.testing.assert_array_equal(np.asarray(g_small[k]), np.asarray(g_ref[k]))


def check_network(layer, X_shape, batch: int = 3) -> None:
    """In a network (-> [Flatten ->] Dense(2, softmax), MSE) the hand-written gradients
    equal jax.grad of the forward math and jax.grad through the custom VJP (float64)."""
    from epynn_jax import network  # noqa: PLC0415
    from epynn_jax.layers import Flatten  # noqa: PLC0415

    with testing.x64():
        head = [Flatten(), Dense(2, "softmax")] if layer.sequences else [Dense(2, "softmax")]
        net = network.build([layer, *head], X_shape)
        params = network.init(net, jax.random.key(4))
        rng = np.random.default_rng(4)
        X = jnp.asarray(rng.standard_normal((batch, *X_shape)))
        Y = jnp.asarray(np.eye(2)[rng.integers(0, 2, batch)])
        hand = network.gradients(net, params, X, Y, "MSE")[0]
        # jax.grad of the forward math (jitted: one compilation), and through the custom VJP.
        plain = jax.jit(lambda p: network.autodiff_gradients(net, p, X, Y, "MSE", custom_vjp=False))
        autos = {"jax.grad": plain(params),
                 "custom_vjp": network.autodiff_gradients(net, params, X, Y, "MSE")}
        for how, auto in autos.items():
            for i, (h, a) in enumerate(zip(hand, auto, strict=True)):
                for k in h:
                    close(h[k], a[k], f"layer {i} {k} ({how})", rtol=1e-10)
