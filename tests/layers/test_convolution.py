"""Convolution: hand-written backward vs jax.grad and finite differences, the two
formulations against each other and a direct loop, and parity with EpyNN 1.2.13."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jit_variants import check_pass

from epynn_jax import testing
from epynn_jax.layers import Convolution, Dense, Flatten, LayerError, Pooling
from epynn_jax.layers import convolution as conv_module
from epynn_jax.maths import losses

IMPLS = ("lax", "patches")

# (filter_size, strides, padding, sample shape, activation, use_bias): strides 1 and 2,
# strides equal to the filter (None), padding 0/1/2, non-square filters and inputs, floor
# remainders.
GRAD_CASES = [
    ((2, 3), 1, 0, (5, 6, 2), "tanh", True),
    ((3, 2), 2, 1, (6, 5, 2), "sigmoid", True),
    ((2, 2), None, 2, (3, 5, 1), "elu", False),
]
# Also tuple strides and strides larger than the filter (skipped rows), for the cheaper
# (jitted) comparisons.
CASES = [c[:5] for c in GRAD_CASES] + [((3, 3), (2, 1), 1, (6, 4, 2), "identity"),
                                       ((2, 2), 3, 0, (7, 8, 1), "tanh")]

_jforward = jax.jit(conv_module.forward, static_argnums=4)
_jbackward = jax.jit(conv_module.backward)
_jgradients = jax.jit(conv_module.compute_gradients)


class JittedConvolution(Convolution):
    """The same layer with its three array functions jitted: check_layer's many
    finite-difference calls then run compiled code instead of op-by-op dispatch."""

    def forward(self, p, X, key=None, training=False):
        return _jforward(self, p, X, key, training)

    def backward(self, p, fc, dA):
        return _jbackward(self, p, fc, dA)

    def compute_gradients(self, p, fc, bc):
        return _jgradients(self, p, fc, bc)


def direct_conv(X, W, b, strides, padding):
    """Z by the definition, one output position at a time (NumPy, float64)."""
    p = padding
    Xp = np.pad(X, ((0, 0), (p, p), (p, p), (0, 0)))
    fh, fw, _, u = W.shape
    sh, sw = strides
    oh = (Xp.shape[1] - fh) // sh + 1
    ow = (Xp.shape[2] - fw) // sw + 1
    Z = np.zeros((X.shape[0], oh, ow, u))
    for i in range(oh):
        for j in range(ow):
            window = Xp[:, i * sh:i * sh + fh, j * sw:j * sw + fw, :]
            Z[:, i, j, :] = np.einsum("mabc,abcu->mu", window, W) + b
    return Z


# -- gradients ------------------------------------------------------------------------


def _ids(case):
    return f"f{case[0]}-s{case[1]}-p{case[2]}".replace(" ", "")


# Every case with the patches formulation; the two padded ones with lax (the
# formulations are compared on all cases below).
@pytest.mark.parametrize(
    "impl, case",
    [("patches", c) for c in GRAD_CASES] + [("lax", c) for c in GRAD_CASES[1:]],
    ids=lambda x: x if isinstance(x, str) else _ids(x),
)
def test_gradients_match_autodiff_and_finite_differences(impl, case):
    fs, st, pad, shape, act, use_bias = case
    layer = JittedConvolution(3, fs, st, pad, act, use_bias=use_bias, impl=impl)
    report = testing.check_layer(layer, shape, batch=2, max_entries=12, directions=2)
    if use_bias:
        report.assert_ok()
    else:  # db is 0 by design (b stays 0), the rest must be exact
        assert report["dX"].passed and report["dW"].passed, str(report)


class TestJitVariants(chex.TestCase):
    """The hand-written pass with and without jax.jit (see jit_variants.py)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*((f"{impl}_{i}", impl, GRAD_CASES[i])
                                      for impl, i in (("patches", 0), ("lax", 1), ("patches", 2))))
    def test_forward_backward(self, impl, case):
        fs, st, pad, shape, act, use_bias = case
        layer = Convolution(3, fs, st, pad, act, use_bias=use_bias, impl=impl)
        check_pass(self.variant, layer, shape, batch=2, zero=() if use_bias else ("b",))


def test_no_bias_gradient_is_zero(x64):  # db is computed the same way by both formulations
    layer = Convolution(2, (2, 3), 1, 1, "tanh", use_bias=False, impl="patches")
    layer = layer.compute_shapes((4, 5, 2))
    p = layer.initialize_parameters(jax.random.key(0))
    X = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 5, 2)))
    A, dX, g = _run(layer, p, X, jnp.ones((2, *layer.output_shape)))
    assert g["db"].shape == p["b"].shape == (2,)
    np.testing.assert_array_equal(np.asarray(g["db"]), 0.0)
    assert float(jnp.abs(g["dW"]).max()) > 0


@jax.jit
def _run(layer, p, X, dA):
    A, fc = conv_module.forward(layer, p, X)
    dX, bc = conv_module.backward(layer, p, fc, dA)
    return A, dX, conv_module.compute_gradients(layer, p, fc, bc)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_implementations_agree_with_each_other_and_the_definition(case, x64):
    fs, st, pad, shape, act = case
    rng = np.random.default_rng(1)
    layers = {impl: Convolution(3, fs, st, pad, act, impl=impl).compute_shapes(shape)
              for impl in IMPLS}
    layer = layers["lax"]
    p = {"W": jnp.asarray(rng.standard_normal(layer.param_shapes()["W"])),
         "b": jnp.asarray([0.1, -0.2, 0.3])}
    X = jnp.asarray(rng.standard_normal((2, *shape)))
    dA = jnp.asarray(rng.standard_normal((2, *layer.output_shape)))
    out = {impl: (*_run(layers[impl], p, X, dA), p) for impl in IMPLS}
    A, dX, g, p = out["lax"]
    A2, dX2, g2, _ = out["patches"]
    for a, b in [(A, A2), (dX, dX2), (g["dW"], g2["dW"]), (g["db"], g2["db"])]:
        assert testing.relative_error(a, b) < 1e-12
    Z = direct_conv(np.asarray(X), np.asarray(p["W"]), np.asarray(p["b"]),
                    layer.strides, pad)
    act_fn = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
              "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
              "identity": lambda z: z}[act]
    assert testing.relative_error(A, act_fn(Z)) < 1e-12
    assert dX.shape == X.shape


def test_integer_images_are_promoted():  # lax.conv needs equal dtypes; jnp.dot promotes
    layer = Convolution(2, 2, 1, impl="lax").compute_shapes((4, 5, 1))
    p = layer.initialize_parameters(jax.random.key(0))
    X = np.random.default_rng(0).integers(0, 16, (2, 4, 5, 1)).astype(np.uint8)
    dA = jnp.ones((2, *layer.output_shape))
    for a, b in zip(_run(layer, p, jnp.asarray(X), dA),
                    _run(layer, p, jnp.asarray(X, jnp.float32), dA), strict=True):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            assert x.dtype == y.dtype
            assert testing.relative_error(x, y) < 1e-6


# -- shapes, dimensions, fixes over EpyNN -----------------------------------------------


def test_padding_and_int_strides_give_the_expected_shapes():
    layer = Convolution(2, 3, strides=1, padding=1).compute_shapes((6, 6, 1))
    assert layer.output_shape == (6, 6, 2)
    assert layer.bs(4)["dX"] == (4, 6, 6, 1)
    assert layer.d == {"u": 2, "fh": 3, "fw": 3, "sh": 1, "sw": 1, "p": 1, "h": 6, "w": 6,
                       "d": 1, "oh": 6, "ow": 6}
    layer = Convolution(1, (2, 3), strides=2, padding=2).compute_shapes((5, 7, 3))
    assert layer.output_shape == ((5 + 4 - 2) // 2 + 1, (7 + 4 - 3) // 2 + 1, 1)
    assert Convolution(1, 4).strides == (4, 4)
    assert Convolution(1, (4, 2), strides=(1, 3)).strides == (1, 3)
    assert set(layer.fs(2)) == {"X", "W", "b", "Z", "A"}
    assert layer.fs(2)["b"] == (1,)
    assert set(layer.bs(2)) == {"dA", "dZ", "dX"}


def test_layer_is_hashable_and_names_activation():
    a = Convolution(2, 3, activate="tanh")
    assert hash(a) == hash(Convolution(2, (3, 3), (3, 3), activate="tanh"))
    assert a.activation == {"activate": "tanh"}
    from epynn_jax.maths.activations import elu
    assert Convolution(activate=elu).activate == "elu"


def test_xavier_scale_is_epynns():
    layer = Convolution(40, (5, 4), 1).compute_shapes((8, 8, 11))
    W = np.asarray(layer.initialize_parameters(jax.random.key(3))["W"])
    assert W.shape == (5, 4, 11, 40)
    assert abs(W.std() / np.sqrt(2 / (5 + 4 + 11 + 40)) - 1) < 0.03
    assert float(np.abs(layer.initialize_parameters(jax.random.key(3))["b"]).max()) == 0.0


@pytest.mark.parametrize(
    "make, shape, match",
    [
        (lambda: Convolution(2, 3), (6, 6), "rank 4"),
        (lambda: Convolution(2, 3), (2, 6, 6, 1), "rank 4"),
        (lambda: Convolution(2, (4, 2), padding=1), (1, 6, 1), "larger than the padded"),
        (lambda: Convolution(2, 3, padding=0), (6, 2, 1), "larger than the padded"),
    ],
)
def test_bad_input_raises_before_tracing(make, shape, match):
    with pytest.raises(LayerError, match=match):
        make().compute_shapes(shape)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activate": "softmax"}, "softmax"),
        ({"impl": "cuda"}, "impl"),
        ({"strides": (1, 0)}, "strides"),
        ({"filter_size": (3, 3, 3)}, "filter_size"),
        ({"padding": -1}, "padding"),
        ({"unit_filters": 0}, "unit_filters"),
        ({"initialization": "orthogonal"}, "orthogonal initialization needs a 2-D weight"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(LayerError, match=match):
        Convolution(**kwargs)


# -- inside a network ------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_network_gradients_match_autodiff(impl, x64):
    """Padded stride-1 conv -> max pool with a remainder -> dense, through epynn_jax.network:
    the hand-written chain, jax.grad through the custom VJPs, and plain autodiff agree."""
    from epynn_jax import network

    net = network.build([Convolution(3, (3, 2), 1, 1, impl=impl), Pooling(2), Flatten(),
                         Dense(2, "softmax")], (6, 8, 2))
    assert net.layers[1].input_shape == (6, 9, 3)  # odd width: pool drops a column
    params = network.init(net, jax.random.key(0))
    rng = np.random.default_rng(2)
    X = jnp.asarray(rng.standard_normal((3, 6, 8, 2)))
    Y = jnp.asarray(np.eye(2)[[0, 1, 1]])
    grads = jax.jit(lambda p: network.gradients(net, p, X, Y, "MSE")[0])(params)
    via_vjp = jax.jit(lambda p: network.autodiff_gradients(net, p, X, Y, "MSE"))(params)
    plain = jax.jit(lambda p: network.autodiff_gradients(net, p, X, Y, "MSE",
                                                         custom_vjp=False))(params)
    for g, v, a in zip(jax.tree.leaves(grads), jax.tree.leaves(via_vjp),
                       jax.tree.leaves(plain), strict=True):
        assert testing.relative_error(g, a) < 1e-8
        assert testing.relative_error(v, a) < 1e-8


# -- parity with EpyNN 1.2.13 ----------------------------------------------------------


def _epynn_net(epynn, conv_kwargs, pool_kwargs):
    from epynn.convolution.models import Convolution as EConv
    from epynn.dense.models import Dense as EDense
    from epynn.flatten.models import Flatten as EFlatten
    from epynn.pooling.models import Pooling as EPool
    from epynn.settings import se_hPars

    pool = {"max": np.max, "min": np.min}[pool_kwargs.get("pool", "max")]
    pool_kwargs = {**pool_kwargs, "pool": pool}
    dense = EDense(2, activate=__import__("epynn.commons.maths", fromlist=["softmax"]).softmax,
                   se_hPars=dict(se_hPars))
    return [EConv(**conv_kwargs), EPool(**pool_kwargs), EFlatten(), dense]


def _epynn_step(elayers, eparams, X, Y, lr):
    """One full-batch SGD step driven layer by layer; returns A and the gradients."""
    from epynn.commons.loss import MSE

    A = X
    for layer, p in zip(elayers, eparams, strict=True):
        if p:
            layer.compute_shapes(A)
            layer.p = p
        A = layer.forward(A)
    out = A
    dA = MSE(Y, out, deriv=True)
    for layer in reversed(elayers):
        dA = layer.backward(dA)
        layer.compute_gradients()
    grads = [dict(layer.g) if p else {} for layer, p in zip(elayers, eparams, strict=True)]
    new = [{k: v - lr * layer.g["d" + k] for k, v in p.items()}
           for layer, p in zip(elayers, eparams, strict=True)]
    caches = [(dict(layer.fc), dict(layer.bc)) for layer in elayers]
    return out, grads, new, caches


@jax.jit
def _our_step(layers, params, X, Y, lr):
    A, fcs = X, []
    for layer, p in zip(layers, params, strict=True):
        A, fc = layer.forward(p, A)
        fcs.append(fc)
    out = A
    dA = losses.loss_deriv("MSE", Y, out)
    grads, bcs = [None] * len(layers), [None] * len(layers)
    for i in reversed(range(len(layers))):
        dA, bcs[i] = layers[i].backward(params[i], fcs[i], dA)
        grads[i] = layers[i].compute_gradients(params[i], fcs[i], bcs[i])
    new = tuple({k: v - lr * grads[i]["d" + k] for k, v in params[i].items()}
                for i in range(len(layers)))
    return out, grads, new, list(zip(fcs, bcs, strict=True))


def _build(layers, shape):
    built = []
    for layer in layers:
        layer = layer.compute_shapes(shape)
        shape = layer.output_shape
        built.append(layer)
    return tuple(built)


@pytest.mark.parametrize(
    "impl, conv_kwargs, pool_kwargs",
    [
        ("patches", {"unit_filters": 3, "filter_size": (2, 2)}, {"pool_size": (2, 2)}),
        ("lax", {"unit_filters": 2, "filter_size": (3, 2), "strides": (1, 2)},
         {"pool_size": (2, 3), "strides": (1, 1), "pool": "min"}),
    ],
)
def test_parity_with_epynn_over_several_sgd_epochs(epynn, x64, impl, conv_kwargs, pool_kwargs):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5, 8, 9, 2))
    Y = np.eye(2)[rng.integers(0, 2, 5)]
    lr = 0.05
    layers = _build((Convolution(**conv_kwargs, impl=impl), Pooling(**pool_kwargs), Flatten(),
                     Dense(2, "softmax")), X.shape[1:])
    params = tuple(layer.initialize_parameters(jax.random.key(i)) for i, layer in
                   enumerate(layers))
    params = tuple({k: v + 0.05 * rng.standard_normal(v.shape) for k, v in p.items()}
                   for p in params)  # non-zero biases
    eparams = [{k: np.array(v, dtype=np.float64) for k, v in p.items()} for p in params]
    elayers = _epynn_net(epynn, conv_kwargs, pool_kwargs)
    X_j, Y_j = jnp.asarray(X), jnp.asarray(Y)

    for epoch in range(4):
        e_out, e_grads, eparams, e_caches = _epynn_step(elayers, eparams, X, Y, lr)
        out, grads, params, caches = _our_step(layers, params, X_j, Y_j, lr)
        assert testing.relative_error(out, e_out) < 1e-8, epoch
        for g, eg, p in zip(grads, e_grads, params, strict=True):
            assert set(g) == set(eg)
            for k in g:  # EpyNN's Dense db is (u,) where b is (1, u): compare values
                assert testing.relative_error(g[k], np.reshape(eg[k], g[k].shape)) < 1e-8, k
                assert g[k].shape == p[k[1:]].shape, k
        if epoch == 0:  # the conv layer's caches, by EpyNN's keys (EpyNN also stores Xb)
            (fc, bc), (efc, ebc) = caches[0], e_caches[0]
            for k in ("X", "Z", "A"):
                assert testing.relative_error(fc[k], efc[k]) < 1e-8, k
            for k in ("dA", "dZ", "dX"):
                assert testing.relative_error(bc[k], ebc[k]) < 1e-8, k
    for p, ep in zip(params, eparams, strict=True):
        for k in p:
            assert testing.relative_error(p[k], ep[k]) < 1e-8, k
    for layer, elayer in zip(layers[:2], elayers[:2], strict=True):
        assert layer.d == {k: v for k, v in elayer.d.items() if k != "m"}
        assert layer.activation == elayer.activation


def test_auto_formulation_rule_per_backend(monkeypatch):
    """'auto' follows the measured rule: patches on CPU; on GPU, lax for big overlapping windows."""
    from epynn_jax.layers import convolution

    def on(backend, layer):
        monkeypatch.setattr(convolution.jax, "default_backend", lambda: backend)
        return layer.resolved_impl

    small = Convolution(8, 3, 1).compute_shapes((10, 10, 3))     # 27 values per window
    big = Convolution(8, 3, 1).compute_shapes((10, 10, 16))      # 144 values per window
    tiling = Convolution(8, 4).compute_shapes((12, 12, 64))      # strides = filter
    assert [on("cpu", lay) for lay in (small, big, tiling)] == ["patches"] * 3
    assert [on("gpu", lay) for lay in (small, big, tiling)] == ["patches", "lax", "patches"]
    assert Convolution(8, 3, 1, impl="lax").compute_shapes((10, 10, 3)).resolved_impl == "lax"
