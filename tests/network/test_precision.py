"""Mixed precision: the Policy, the casts at layer boundaries, every layer under bfloat16
against float32, check_layer under a policy, and the dtypes of the lowered programs."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers as L
from epynn_jax import network, testing
from epynn_jax.layers.base import Layer, float_dtype
from epynn_jax.network import precision
from epynn_jax.network.epoch import TrainState, run_epoch
from epynn_jax.network.optim import epynn_sgd
from epynn_jax.network.precision import Policy, as_policy

BF16 = jnp.dtype(jnp.bfloat16)

# -- the policy ---------------------------------------------------------------------------


def test_names_and_fields():
    assert as_policy(None) == Policy()
    assert as_policy("bfloat16") == as_policy("mixed_bfloat16") == Policy("bfloat16")
    assert as_policy("float16") == Policy(compute_dtype="float16")
    assert as_policy("float32") == Policy("float32", "float32", "float32")
    p = Policy(jnp.bfloat16, np.float32, np.dtype("float32"))  # dtypes become their names
    assert (p.compute_dtype, p.param_dtype, p.output_dtype) == ("bfloat16", "float32", "float32")
    assert str(as_policy("bfloat16")) == "bfloat16" and str(Policy()) == "default"
    assert hash(Policy("bfloat16")) == hash(as_policy("mixed_bfloat16"))
    assert Policy().default and not Policy("float32").default
    assert Policy("bfloat16").mixed and not Policy("float32").mixed


def test_policy_dtypes_resolve():
    p = as_policy("bfloat16")
    assert p.compute == BF16 and p.param == jnp.float32 and p.output == jnp.float32
    assert Policy().compute is None and Policy().param is None and Policy().output is None


def test_float64_without_64_bit_mode_warns_that_it_is_float32():
    """A float64 policy in a process without jax_enable_x64 computes in float32, as JAX's
    own float64 requests do: said once, where the policy is made (was silent)."""
    import warnings

    with pytest.warns(UserWarning, match="float64 is float32 while JAX's 64-bit mode is off"):
        net = network.build([L.Dense(2)], (3,), policy="float64")
    assert net.policy.compute == jnp.float32
    with pytest.warns(UserWarning, match="Policy .*param_dtype='float64'"):
        Policy(param_dtype="float64")
    with testing.x64(), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert network.build([L.Dense(2)], (3,), policy="float64").policy.compute == jnp.float64


@pytest.mark.parametrize("kwargs,match", [
    ({"compute_dtype": "int8"}, "compute_dtype must be"),
    ({"compute_dtype": "bf16"}, "compute_dtype must be"),
    ({"param_dtype": "bfloat16"}, "param_dtype must be .* full precision"),
    ({"output_dtype": "float16"}, "output_dtype must be .* full precision"),
])
def test_bad_policies(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Policy(**kwargs)


def test_bad_policy_arguments_name_where():
    layers = [L.Dense(2)]
    with pytest.raises(ValueError, match="build: .*'bfloat16'"):
        network.build(layers, (3,), policy="bf16")
    with pytest.raises(TypeError, match="build: a precision policy"):
        network.build(layers, (3,), policy=16)
    net = network.build(layers, (3,))
    with pytest.raises(ValueError, match="fit: a precision policy"):
        network.fit(net, network.init(net, 0), {"dtrain": (np.ones((2, 3)), np.ones((2, 2)))},
                    epochs=1, policy="half")


def test_network_holds_the_policy_and_stays_static():
    layers = [L.Flatten(), L.Dense(3, "softmax")]
    a = network.build(layers, (2, 2), policy="bfloat16")
    b = network.build(layers, (2, 2), policy=Policy("bfloat16"))
    c = network.build(layers, (2, 2))
    assert a.policy == Policy("bfloat16") and c.policy == Policy()
    assert a == b and hash(a) == hash(b) and a != c
    assert network.Network(c.layers, "bfloat16") == a
    assert dataclasses.replace(c, policy="float16").policy == Policy("float16")

    traces = []

    @jax.jit
    def out(net, params, X):
        traces.append(net.policy)
        return network.forward(net, params, X)[0]

    params = network.init(a, 0)
    X = jnp.ones((2, 2, 2))
    for net in (a, b, a, c):
        out(net, params, X)
    assert traces == [Policy("bfloat16"), Policy()]  # a and b share one compilation


def test_init_keeps_parameters_in_the_param_dtype(x64):
    layers = [L.Dense(3)]
    assert network.init(network.build(layers, (2,), "bfloat16"), 0)[0]["W"].dtype == jnp.float64
    net = network.build(layers, (2,), Policy("bfloat16", "float32", "float32"))
    assert all(v.dtype == jnp.float32 for v in network.init(net, 0)[0].values())


def test_the_default_policy_casts_nothing():
    net = network.build([L.Dense(4, "relu"), L.Dense(2)], (3,))
    params = network.init(net, 0)
    text = jax.jit(lambda p, X: network.gradients(net, p, X, X[:, :2])[0]).lower(
        params, jnp.ones((5, 3))).as_text()
    casts = [(i, o) for op, i, o in _ops(text) if op == "stablehlo.convert"]
    assert casts  # relu's derivative (a boolean made float)
    assert all(_dtypes(i) == {"i1"} and _dtypes(o) == {"f32"} for i, o in casts), casts
    assert "bf16" not in text


def test_cast_leaves_non_floats_alone():
    tree = {"a": jnp.ones(2), "i": jnp.arange(2), "k": jax.random.key(0)}
    out = precision.cast(tree, BF16)
    assert out["a"].dtype == BF16 and out["i"].dtype == tree["i"].dtype
    assert out["k"] is tree["k"]
    assert precision.cast(tree, None) is tree


# -- every layer under bfloat16, against float32 --------------------------------------------

SEQ = (6, 3)
LAYERS = {
    # name: (layer, sample shape, training, tolerance of the relative error)
    "Dense": (L.Dense(5, "tanh"), (7,), False, 0.03),
    "Embedding": (L.Embedding(), (4, 3), False, 0.03),
    "Flatten": (L.Flatten(), (2, 3, 2), False, 0.03),
    "Dropout": (L.Dropout(0.3), (8,), True, 0.03),
    "Template": (L.Template(), (5,), False, 0.03),
    "RNN": (L.RNN(4, sequences=True, clip_gradients=False), SEQ, False, 0.05),
    "LSTM": (L.LSTM(4, sequences=True), SEQ, False, 0.05),
    "GRU": (L.GRU(4, sequences=True), SEQ, False, 0.05),
    "Convolution": (L.Convolution(3, 2), (6, 6, 2), False, 0.03),
    "Pooling": (L.Pooling(2), (4, 4, 2), False, 0.03),
}


def _layer_run(layer, shape, training, policy):
    """A network of the one layer under ``policy`` (its parameters and data drawn in
    float32 from fixed seeds): its output, gradients, caches and parameters."""
    net = network.build([layer], shape, policy=policy)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda v: v + 0.1 * jnp.asarray(rng.standard_normal(v.shape), v.dtype),
                          network.init(net, 1))
    X = jnp.asarray(rng.standard_normal((4, *shape)), jnp.float32)
    Y = jnp.asarray(rng.standard_normal((4, *net.output_shape)), jnp.float32)
    grads, A, fcs, gs, bcs = jax.jit(
        lambda p: network.gradients(net, p, X, Y, "MSE", jax.random.key(2), training))(params)
    return A, grads, fcs, bcs, params


@pytest.mark.parametrize("name", LAYERS)
def test_layer_under_bfloat16_is_within_tolerance_of_float32(name):
    layer, shape, training, tol = LAYERS[name]
    A32, g32, _, _, _ = _layer_run(layer, shape, training, None)
    A16, g16, fcs, bcs, params = _layer_run(layer, shape, training, "bfloat16")
    # the policy's dtypes: output and gradients float32, the layer's caches bfloat16
    assert A16.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(g16))
    for cache in (fcs[0], bcs[0]):
        for k, v in cache.items():
            assert v.dtype == BF16, f"{name}: {k} is {v.dtype}"
    # the numbers: within a few bfloat16 roundings of float32
    assert testing.relative_error(A16, A32) <= tol
    assert 0 < testing.relative_error(A16, A32)  # it did compute in bfloat16
    for k in g32[0]:
        err = testing.relative_error(g16[0][k], g32[0][k])
        assert err <= tol, f"{name}: d{k} relative error {err:.3g}"


@pytest.mark.parametrize("name", LAYERS)
def test_check_layer_under_bfloat16(name):
    layer, shape, training, _ = LAYERS[name]
    report = testing.check_layer(layer, shape, training=training, policy="bfloat16",
                                 max_entries=2, directions=1)
    report.assert_ok()
    assert report.policy == Policy("bfloat16")
    assert report.policy_rtol == pytest.approx(8 * 2.0**-7)
    assert 0 < report.output_error <= report.policy_rtol
    assert all(0 < c.error_vs_float64 <= report.policy_rtol for c in report.checks)
    assert "vs float64" in str(report)


def test_check_layer_without_a_policy_reports_as_before():
    report = testing.check_layer(L.Dense(3), (4,))
    assert report.policy is None and report.output_error is None
    assert all(c.error_vs_float64 is None for c in report.checks)
    assert "vs float64" not in str(report)


@dataclasses.dataclass(frozen=True)
class OffsetLayer(Layer):
    """A = X + c with a constant made in float_dtype(): float32 next to a bfloat16 input."""


def _offset_shapes(layer, X_shape):
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def _offset_params(layer, key):
    return {}


def _offset_forward(layer, p, X, key=None, training=False):
    A = X + jnp.full(X.shape[1:], 0.5, float_dtype())
    return A, {"X": X, "A": A}


def _offset_backward(layer, p, fc, dA):
    return dA, {"dA": dA, "dX": dA}


def _offset_gradients(layer, p, fc, bc):
    return {}


OffsetLayer.compute_shapes = _offset_shapes
OffsetLayer.initialize_parameters = _offset_params
OffsetLayer.forward = _offset_forward
OffsetLayer.backward = _offset_backward
OffsetLayer.compute_gradients = _offset_gradients


def test_check_layer_finds_a_float32_temporary():
    assert testing.check_layer(OffsetLayer(), (3,)).passed  # right at float64
    report = testing.check_layer(OffsetLayer(), (3,), policy="bfloat16")
    assert not report.passed and "dtypes" in report.failed
    assert report.dtype_errors == ("A float64", "fc['A'] float64")  # float_dtype() under x64
    assert "not in bfloat16: A float64" in str(report)
    with pytest.raises(AssertionError, match="OffsetLayer"):
        report.assert_ok()


def test_check_layer_finds_a_result_off_by_more_than_the_tolerance():
    report = testing.check_layer(L.Dense(3, "tanh"), (4,), policy="bfloat16", policy_rtol=1e-4)
    assert not report.passed and "A" in report.failed


def test_float16_policy_is_checked_at_its_own_tolerance():
    report = testing.check_layer(L.Dense(4, "sigmoid"), (5,), policy="float16")
    report.assert_ok()
    assert report.policy_rtol == pytest.approx(8 * 2.0**-10)


# -- the network: custom_vjp path, softmax, fit ------------------------------------------


def _classifier(policy):
    net = network.build([L.Flatten(), L.Dense(8, "relu"), L.Dense(4, "softmax")], (3, 2),
                        policy=policy)
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((6, 3, 2)), jnp.float32)
    Y = jax.nn.one_hot(jnp.arange(6) % 4, 4)
    return net, network.init(net, 0), X, Y


def test_autodiff_through_the_custom_vjp_matches_the_hand_written_backward():
    net, params, X, Y = _classifier("bfloat16")
    hand = network.gradients(net, params, X, Y, "CCE")[0]
    auto = network.autodiff_gradients(net, params, X, Y, "CCE", custom_vjp=True)
    for h, a in zip(jax.tree.leaves(hand), jax.tree.leaves(auto)):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, h, rtol=1e-6, atol=1e-6)
    A = network.apply(net, params, X)
    assert A.dtype == jnp.float32
    np.testing.assert_array_equal(A, network.forward(net, params, X)[0])


def test_softmax_of_bfloat16_is_computed_in_float32():
    net, params, X, _ = _classifier("bfloat16")
    A = network.forward(net, params, X)[0]
    np.testing.assert_allclose(jnp.sum(A, axis=1), 1.0, atol=2**-7)
    _, fcs = network.forward(net, params, X)
    assert fcs[-1]["A"].dtype == BF16  # the layer's cache stays in the compute dtype
    ref = jax.nn.softmax(fcs[-1]["Z"].astype(jnp.float32), axis=-1)
    np.testing.assert_allclose(A, ref, rtol=2**-8)  # only the final rounding to bfloat16


def test_fit_under_a_policy_overrides_the_network_s():
    net, params, X, Y = _classifier(None)
    data = {"dtrain": (X, Y)}
    r32 = network.fit(net, params, data, epochs=3, loss="CCE", key=0)
    r16 = network.fit(net, params, data, epochs=3, loss="CCE", key=0, policy="bfloat16")
    again = network.fit(dataclasses.replace(net, policy="bfloat16"), params, data, epochs=3,
                        loss="CCE", key=0)
    for a, b, c in zip(jax.tree.leaves(r32.params), jax.tree.leaves(r16.params),
                       jax.tree.leaves(again.params)):
        assert b.dtype == jnp.float32
        np.testing.assert_array_equal(b, c)  # the override is the network's policy
        np.testing.assert_allclose(b, a, rtol=0.05, atol=0.02)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(r32.params),
                                                          jax.tree.leaves(r16.params)))
    assert net.policy == Policy()  # fit does not change the caller's network
    out = network.predict(net, r16.params, X)
    assert out.dtype == jnp.float32


# -- the lowered programs: bfloat16 where the policy says so -----------------------------

_OP = re.compile(r"= (stablehlo\.[a-z_]+)")


def _ops(text: str) -> list[tuple[str, str, str]]:
    """``(op, operand types, result types)`` of every StableHLO operation in ``text``."""
    out = []
    for line in text.splitlines():
        m = _OP.search(line)
        if m is None or " : " not in line:
            continue
        sig = line.rsplit(" : ", 1)[1]
        ins, _, outs = sig.partition(" -> ")
        out.append((m.group(1), ins, outs or ins))
    return out


def _dtypes(types: str) -> set[str]:
    return set(re.findall(r"tensor<(?:[0-9x?]*x)?([a-z]+[0-9]*)>", types))


NETS = {
    "dense": ([L.Flatten(), L.Dense(16, "relu"), L.Dropout(0.2), L.Dense(3, "sigmoid")],
              (4, 4, 1)),
    "conv": ([L.Convolution(4, 2), L.Pooling(2), L.Flatten(), L.Dense(3, "tanh")], (8, 8, 1)),
    "conv-lax": ([L.Convolution(4, 3, strides=1, impl="lax"), L.Flatten(), L.Dense(3, "tanh")],
                 (6, 6, 2)),
    "rnn": ([L.RNN(4, sequences=True), L.Flatten(), L.Dense(3, "elu")], (5, 2)),
    "lstm": ([L.LSTM(4), L.Dense(3, "sigmoid")], (5, 2)),
    "gru": ([L.GRU(4, sequences=True), L.Flatten(), L.Dense(3, "sigmoid")], (5, 2)),
}


def _net(name, policy="bfloat16"):
    layers, shape = NETS[name]
    net = network.build(layers, shape, policy=policy)
    X = jnp.asarray(np.random.default_rng(0).standard_normal((4, *shape)), jnp.float32)
    return net, network.init(net, 0), X


@pytest.mark.parametrize("name", NETS)
def test_forward_computes_in_bfloat16_only(name):
    net, params, X = _net(name)
    text = jax.jit(lambda p, X: network.forward(net, p, X)[0]).lower(params, X).as_text()
    ops = _ops(text)
    products = [o for o in ops if o[0] in ("stablehlo.dot_general", "stablehlo.convolution")]
    assert products and all(_dtypes(i) | _dtypes(o) == {"bf16"} for _, i, o in products)
    # float32 only where it enters and leaves: the casts of X, p and A
    wide = {op for op, _, out in ops if "f32" in _dtypes(out) and op != "stablehlo.convert"}
    assert not wide, f"float32 operations in the bfloat16 forward: {wide}"


def test_dropout_drops_the_same_units_under_every_policy():
    fcs = {}
    for policy in (None, "bfloat16", "float16"):
        net, params, X = _net("dense", policy)
        fcs[policy] = network.forward(net, params, X, jax.random.key(3), True)[1][2]
        assert fcs[policy]["D"].dtype == (BF16 if policy == "bfloat16" else
                                          jnp.float16 if policy else jnp.float32)
    assert 0 < float(jnp.mean(fcs[None]["D"])) < 1
    for policy in ("bfloat16", "float16"):
        np.testing.assert_array_equal(fcs[policy]["D"].astype(jnp.float32), fcs[None]["D"])


@pytest.mark.parametrize("name", NETS)
def test_backward_computes_in_bfloat16_and_sums_in_float32(name):
    net, params, X = _net(name)
    A, fcs = network.forward(net, params, X, jax.random.key(0), True)
    text = jax.jit(lambda p, fcs, dA: network.backward(net, p, fcs, dA)[1]).lower(
        params, fcs, jnp.ones_like(A)).as_text()
    ops = _ops(text)
    products = [o for o in ops if o[0] in ("stablehlo.dot_general", "stablehlo.convolution")]
    assert products and all(_dtypes(i) | _dtypes(o) == {"bf16"} for _, i, o in products)
    # float32 arithmetic only in the sums (jnp.sum accumulates bfloat16 in float32)
    wide = {op for op, _, out in ops if "f32" in _dtypes(out) and op != "stablehlo.convert"}
    assert wide <= {"stablehlo.reduce", "stablehlo.constant", "stablehlo.broadcast_in_dim"}, wide
    assert "stablehlo.reduce" in wide


def test_the_compiled_epoch_runs_its_products_in_bfloat16_and_its_loss_in_float32():
    net, params, X, Y = _classifier("bfloat16")
    opt = epynn_sgd()
    state = TrainState(params, opt.init(params), jax.random.key(0))
    text = run_epoch.lower(net, opt.update, "CCE", ("accuracy", "CCE"), 3, state, (X, Y),
                           {"dtrain": (X, Y)}, guard=True).as_text()
    ops = _ops(text)
    products = [o for o in ops if o[0] == "stablehlo.dot_general"]
    assert len(products) >= 6  # the step's forward and backward, the evaluation's forward
    assert all(_dtypes(i) | _dtypes(o) == {"bf16"} for _, i, o in products)
    for op in ("stablehlo.exponential", "stablehlo.log"):  # softmax and the loss
        found = [o for o in ops if o[0] == op]
        assert found and all(_dtypes(o) == {"f32"} for _, _, o in found), op
    # parameters and optimizer state are float32 on the way in and out
    main = next(line for line in text.splitlines() if "func.func public @main" in line)
    assert "bf16" not in main


#: A product in compiled HLO: an XLA dot or convolution (also inside fusions), or the cuBLAS /
#: cuDNN call XLA:GPU makes of one; its result type follows the "=".
_PRODUCT = re.compile(r"\b(dot|convolution)\(|custom_call_target=\"(__cublas|__cudnn\$conv)")


@pytest.mark.skipif(jax.default_backend() == "cpu",
                    reason="XLA:CPU computes bfloat16 products in float32 after compilation; "
                           "the lowered program is checked on every backend above")
@pytest.mark.parametrize("name", ["dense", "conv-lax", "lstm"])
def test_compiled_products_stay_bfloat16_on_an_accelerator(name):
    net, params, X = _net(name)
    text = jax.jit(lambda p, X: network.forward(net, p, X)[0]).lower(
        params, X).compile().as_text()
    products = [line.strip() for line in text.splitlines() if _PRODUCT.search(line)]
    assert products
    wide = [line[:160] for line in products if not re.search(r"= \(?bf16\[", line)]
    assert not wide, wide
