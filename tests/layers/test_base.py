"""The layer contract's binding: each layer's methods ARE its module's five functions.

Every built-in layer binds them explicitly at the end of its module
(``Dense.forward is dense.forward``); several layers may share one module (two
small layers are defined here, in this test module); a class that leaves one
unbound fails when it is made, with the lines to add, before anything is traced.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
import textwrap
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers, network, testing
from epynn_jax.layers import dense as dense_module
from epynn_jax.layers.base import FUNCTIONS, Layer, check_bound, check_input, float_dtype

LAYER_MODULES = {
    "template": "Template", "embedding": "Embedding", "dense": "Dense", "dropout": "Dropout",
    "flatten": "Flatten", "rnn": "RNN", "lstm": "LSTM", "gru": "GRU",
    "convolution": "Convolution", "pooling": "Pooling",
}


@pytest.mark.parametrize("module_name", LAYER_MODULES)
def test_each_builtin_method_is_its_module_function(module_name):
    module = importlib.import_module(f"epynn_jax.layers.{module_name}")
    cls = getattr(layers, LAYER_MODULES[module_name])
    assert cls.__module__ == module.__name__
    for name in FUNCTIONS:
        fn = getattr(module, name)
        assert getattr(cls, name) is fn, f"{cls.__name__}.{name} is not {module.__name__}.{name}"
        assert fn.__module__ == module.__name__ and fn.__name__ == name
        assert inspect.getsourcefile(getattr(cls, name)) == module.__file__


@pytest.mark.parametrize("module_name", LAYER_MODULES)
def test_every_layer_file_ends_with_the_same_five_bindings(module_name):
    """The same form in the same place: the file's last six lines."""
    cls = LAYER_MODULES[module_name]
    source = importlib.import_module(f"epynn_jax.layers.{module_name}").__file__
    tail = Path(source).read_text().rstrip("\n").splitlines()[-6:]
    assert tail == [
        f"# {cls}'s methods are the five functions above: "
        "layer.forward(...) is forward(layer, ...).",
        *(f"{cls}.{name} = {name}" for name in FUNCTIONS),
    ]


def test_a_method_call_is_the_function_call():
    layer = layers.Dense(3, "tanh").compute_shapes((4,))
    p = layer.initialize_parameters(jax.random.key(0))
    X = jnp.arange(8.0).reshape(2, 4) / 8
    A_method, fc_method = layer.forward(p, X)
    A_function, fc_function = dense_module.forward(layer, p, X)
    np.testing.assert_array_equal(A_method, A_function)
    assert fc_method.keys() == fc_function.keys() == {"X", "Z", "A"}
    assert layers.Dense.forward is dense_module.forward
    assert layer.forward.__func__ is dense_module.forward  # the bound method wraps it, no shim


def test_a_subclass_of_a_builtin_keeps_its_parents_functions():
    @dataclasses.dataclass(frozen=True)
    class WideDense(layers.Dense):
        units: int = 16

    for name in FUNCTIONS:
        assert getattr(WideDense, name) is getattr(dense_module, name)
    built = WideDense().compute_shapes((3,))
    assert type(built) is WideDense and built.param_shapes() == {"W": (3, 16), "b": (1, 16)}
    assert built.fs(2)["A"] == (2, 16) and built.bs(2)["dX"] == (2, 3)
    assert hash(built) == hash(WideDense(input_shape=(3,)))


def test_a_subclass_rebinds_only_the_function_it_changes():
    def half_forward(layer, p, X, key=None, training=False):
        A, fc = dense_module.forward(layer, p, X, key, training)
        return A / 2, fc

    @dataclasses.dataclass(frozen=True)
    class HalfDense(layers.Dense):
        pass

    HalfDense.forward = half_forward
    layer = HalfDense(2, "identity").compute_shapes((3,))
    p = layer.initialize_parameters(jax.random.key(1))
    X = jnp.ones((4, 3))
    np.testing.assert_allclose(layer.forward(p, X)[0], dense_module.forward(layer, p, X)[0] / 2)
    assert HalfDense.backward is dense_module.backward
    assert layers.Dense.forward is dense_module.forward  # the parent is untouched


# -- two small layers in one module (this one) ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Double(Layer):
    """A = 2 X; no parameters."""


@dataclasses.dataclass(frozen=True)
class Shift(Layer):
    """A = X + c, c (n,) learned."""


def any_shape(layer: Layer, X_shape: tuple[int, ...]) -> Layer:
    """Shared by both layers: any sample shape of rank 1."""
    check_input(layer, X_shape, 1)
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def double_parameters(layer: Double, key: jax.Array) -> dict:
    return {}


def double_forward(layer: Double, p: dict, X: jax.Array, key=None, training: bool = False):
    A = 2 * X
    return A, {"X": X, "A": A}


def double_backward(layer: Double, p: dict, fc: dict, dA: jax.Array):
    dX = 2 * dA
    return dX, {"dA": dA, "dX": dX}


def double_gradients(layer: Double, p: dict, fc: dict, bc: dict) -> dict:
    return {}


def shift_parameters(layer: Shift, key: jax.Array) -> dict:
    (n,) = layer.input_shape
    return {"c": jax.random.normal(key, (n,), float_dtype())}


def shift_forward(layer: Shift, p: dict, X: jax.Array, key=None, training: bool = False):
    A = X + p["c"]
    return A, {"X": X, "A": A}


def shift_backward(layer: Shift, p: dict, fc: dict, dA: jax.Array):
    return dA, {"dA": dA, "dX": dA}


def shift_gradients(layer: Shift, p: dict, fc: dict, bc: dict) -> dict:
    return {"dc": jnp.sum(bc["dA"], axis=0)}


Double.compute_shapes = any_shape
Double.initialize_parameters = double_parameters
Double.forward = double_forward
Double.backward = double_backward
Double.compute_gradients = double_gradients

Shift.compute_shapes = any_shape
Shift.initialize_parameters = shift_parameters
Shift.forward = shift_forward
Shift.backward = shift_backward
Shift.compute_gradients = shift_gradients


def test_two_layers_share_one_module_each_with_its_own_functions():
    assert Double.__module__ == Shift.__module__ == __name__
    assert Double.compute_shapes is Shift.compute_shapes is any_shape
    assert Double.forward is double_forward and Shift.forward is shift_forward
    assert Double.compute_gradients is double_gradients
    assert Shift.compute_gradients is shift_gradients
    X = jnp.asarray([[1.0, -2.0, 3.0]])
    double, shift = Double().compute_shapes((3,)), Shift().compute_shapes((3,))
    np.testing.assert_array_equal(double.forward({}, X)[0], 2 * X)
    p = {"c": jnp.asarray([0.5, 0.25, -1.0])}
    np.testing.assert_array_equal(shift.forward(p, X)[0], X + p["c"])
    assert double.param_shapes() == {} and shift.param_shapes() == {"c": (3,)}
    assert not double.trainable and shift.trainable


@pytest.mark.parametrize("cls", [Double, Shift], ids=lambda c: c.__name__)
def test_layers_sharing_a_module_pass_the_gradient_check(cls):
    testing.check_layer(cls(), (4,)).assert_ok()


def test_layers_sharing_a_module_train_in_one_network(x64):
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    net = network.build([Shift(), Double(), layers.Dense(2, "identity"), Shift()], (3,))
    params = network.init(net, jax.random.key(0))
    hand = jax.jit(lambda p: network.gradients(net, p, X, Y, "MSE")[0])(params)
    plain = jax.jit(lambda p: network.autodiff_gradients(net, p, X, Y, "MSE",
                                                         custom_vjp=False))(params)
    chex.assert_trees_all_close(hand, plain, rtol=1e-10, atol=1e-12)


# -- a class that leaves a function unbound ---------------------------------------------------

def test_an_unbound_function_fails_when_the_layer_is_made_naming_it():
    @dataclasses.dataclass(frozen=True)
    class Half(Layer):
        pass

    Half.compute_shapes = any_shape
    Half.initialize_parameters = double_parameters
    Half.forward = double_forward
    Half.compute_gradients = double_gradients
    with pytest.raises(TypeError) as err:
        Half()
    message = str(err.value)
    assert "layer Half does not bind backward." in message
    assert ":\n    Half.backward = backward\n" in message
    assert message.endswith("defines no backward yet: write it first, as the template does)")
    assert "at the end of module" in message and "template.py" in message
    assert "forward =" not in message  # only what is missing
    with pytest.raises(TypeError, match="Half does not bind backward"):
        Half()  # still refused: a failed check is not remembered as passed
    Half.backward = double_backward
    assert Half().compute_shapes((2,)).input_shape == (2,)


def test_the_unbound_error_comes_before_any_build_or_trace():
    @dataclasses.dataclass(frozen=True)
    class Nothing(Layer):
        pass

    traced = []

    def run():
        net = network.build([Nothing()], (3,))
        return jax.jit(lambda X: traced.append(X) or network.predict(net, (), X))(jnp.ones((1, 3)))

    with pytest.raises(TypeError, match="Nothing does not bind compute_shapes, "
                                        "initialize_parameters, forward, backward, "
                                        "compute_gradients"):
        run()
    assert traced == []
    with pytest.raises(TypeError, match=r"defines no compute_shapes, .* yet"):
        Nothing()


def test_check_bound_accepts_a_layer_that_defines_its_methods_in_its_body():
    @dataclasses.dataclass(frozen=True)
    class Inline(Layer):
        def compute_shapes(self, X_shape):
            return dataclasses.replace(self, input_shape=tuple(X_shape))

        def initialize_parameters(self, key):
            return {}

        def forward(self, p, X, key=None, training=False):
            return X, {"X": X, "A": X}

        def backward(self, p, fc, dA):
            return dA, {"dA": dA, "dX": dA}

        def compute_gradients(self, p, fc, bc):
            return {}

    check_bound(Inline)
    assert Inline().compute_shapes((2,)).output_shape == (2,)


def test_calling_a_declaration_of_layer_names_it():
    with pytest.raises(TypeError, match=r"Dense: Layer\.forward only declares"):
        Layer.forward(layers.Dense(2), {}, jnp.ones((1, 2)))


# -- layers written for the earlier contract (methods looked up in their module) --------------

OLD_CONTRACT = '''
import dataclasses
from epynn_jax.layers.base import Layer


@dataclasses.dataclass(frozen=True)
class Identity(Layer):
    pass


def compute_shapes(layer, X_shape):
    return dataclasses.replace(layer, input_shape=tuple(X_shape))


def initialize_parameters(layer, key):
    return {}


def forward(layer, p, X, key=None, training=False):
    return X, {"X": X, "A": X}


def backward(layer, p, fc, dA):
    return dA, {"dA": dA, "dX": dA}


def compute_gradients(layer, p, fc, bc):
    return {}
'''

OLD_SUBCLASS = '''
import dataclasses
from epynn_jax.layers import Dense


@dataclasses.dataclass(frozen=True)
class LeakyBackward(Dense):
    """Overrides Dense's backward the old way: by a function of the same name here."""


def backward(layer, p, fc, dA):
    return 0.5 * dA, {"dA": dA, "dX": 0.5 * dA}
'''


@pytest.fixture
def old_module(tmp_path, monkeypatch):
    """Import a module written to ``tmp_path`` (and forget it afterwards)."""
    names = []

    def load(name, text):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        names.append(name)
        return importlib.import_module(name)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield load
    for name in names:
        sys.modules.pop(name, None)


def test_an_old_contract_layer_is_told_exactly_which_lines_to_add(old_module):
    module = old_module("epynn_test_old_identity", OLD_CONTRACT)
    with pytest.raises(TypeError) as err:
        module.Identity()
    message = str(err.value)
    assert "layer Identity does not bind compute_shapes, initialize_parameters, forward, " \
           "backward, compute_gradients" in message
    assert "no longer look their functions up in their module" in message
    assert "'epynn_test_old_identity'" in message and "defines no" not in message
    assert message.splitlines()[-5:] == [f"    Identity.{n} = {n}" for n in FUNCTIONS]
    # Adding those lines is the whole fix.
    for line in message.splitlines()[-5:]:
        exec(line.strip(), vars(module))
    assert module.Identity().compute_shapes((3,)).output_shape == (3,)


def test_an_old_contract_subclass_of_a_builtin_is_not_silently_given_its_parents(old_module):
    module = old_module("epynn_test_old_leaky", OLD_SUBCLASS)
    with pytest.raises(TypeError) as err:
        module.LeakyBackward(2)
    message = str(err.value)
    assert "LeakyBackward keeps Dense's backward although its module defines its own" in message
    assert message.rstrip().endswith("    LeakyBackward.backward = backward")
    module.LeakyBackward.backward = module.backward
    layer = module.LeakyBackward(2).compute_shapes((3,))
    dX, _ = layer.backward({}, {}, jnp.ones((1, 3)))
    np.testing.assert_array_equal(dX, 0.5 * jnp.ones((1, 3)))


def test_numpy_integers_are_taken_and_kept_as_python_ints():
    """(Sizes computed with NumPy are np.int64; a layer keeps ints, which model files
    write and which hash like the same layer made with ints.)"""
    import numbers

    import numpy as np

    from epynn_jax.layers import LSTM, Convolution, Dense, LayerError, Pooling

    made = (Dense(np.int64(2)), Convolution(np.int32(2), np.int64(3), padding=np.int8(1)),
            LSTM(np.int64(3)), Pooling(np.int64(2)))
    plain = (Dense(2), Convolution(2, 3, padding=1), LSTM(3), Pooling(2))
    for a, b in zip(made, plain):
        assert a == b and hash(a) == hash(b)
        values = [w for v in dataclasses.astuple(a)
                  for w in (v if isinstance(v, tuple) else (v,))]
        ints = [v for v in values if isinstance(v, numbers.Integral) and not isinstance(v, bool)]
        assert ints and all(type(v) is int for v in ints), ints
    for bad in (True, 0, 2.0, np.float64(2)):
        with pytest.raises(LayerError, match="Dense: units must be a positive int"):
            Dense(bad)
