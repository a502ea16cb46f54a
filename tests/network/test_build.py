"""network.build: a layer equal to one already built at the same input shape is traced once,
and its parameters' shapes once for its output shape and every later ask."""

from __future__ import annotations

from epynn_jax import layers, network
from epynn_jax.layers import base
from epynn_jax.maths.activations import ActivationHPars


def _count_traces(monkeypatch) -> list:
    """Record every layer whose output shape is traced (jax.eval_shape of its forward).

    The function that traces is replaced by a counting one, which the shapes' memo has
    not seen: each layer's first ask is traced, and counted, as in a fresh process."""
    traced = []
    real = base._abstract_forward

    def counting(layer, *args, **kwargs):
        traced.append(layer)
        return real(layer, *args, **kwargs)

    monkeypatch.setattr(base, "_abstract_forward", counting)
    return traced


def test_a_stack_of_equal_layers_traces_once(monkeypatch):
    traced = _count_traces(monkeypatch)
    net = network.build([layers.Template()] * 2000, (3,))
    assert len(net.layers) == 2000 and net.layers[-1].input_shape == (3,)
    assert len(traced) == 1


def test_each_distinct_layer_and_input_shape_is_traced(monkeypatch):
    traced = _count_traces(monkeypatch)
    hp = ActivationHPars(ELU_alpha=0.5)
    stack = [layers.Dense(3), layers.Dense(3), layers.Dense(3), layers.Dense(4),
             layers.Template(hpars=hp), layers.Template(), layers.Template(hpars=hp)]
    net = network.build(stack, (2,))
    assert [layer.input_shape for layer in net.layers] == [(2,), (3,), (3,), (3,), (4,), (4,),
                                                           (4,)]
    # Dense(3) at (2,) and at (3,), Dense(4) at (3,), the two different Templates at (4,)
    assert [(type(t).__name__, t.input_shape) for t in traced] == [
        ("Dense", (2,)), ("Dense", (3,)), ("Dense", (3,)), ("Template", (4,)),
        ("Template", (4,))]
    assert net.layers[6].hpars == hp and net.layers[5].hpars == ActivationHPars()
    assert net.output_shape == (4,)


def test_parameter_shapes_are_traced_once_for_build_and_every_later_ask(monkeypatch):
    from epynn_jax.layers import base

    calls = []
    real = base._abstract_parameters

    def counting(layer):
        calls.append(layer)
        return real(layer)

    monkeypatch.setattr(base, "_abstract_parameters", counting)
    net = network.build([layers.Dense(7), layers.Dense(5)], (11,))
    assert [c.units for c in calls] == [7, 5]  # build: for the output shapes
    assert [layer.param_shapes() for layer in net.layers] == [
        {"W": (11, 7), "b": (1, 7)}, {"W": (7, 5), "b": (1, 5)}]
    network.init(net, 0)
    assert len(calls) == 2  # param_shapes (fit, predict, model files) traced nothing more
