"""Fuzz: hundreds of random small networks, each through ``network.fit`` for one epoch.

Every case either trains (finite history and parameters) or raises one of the
library's documented errors: a ``ValueError``/``TypeError`` from validation
(``LayerError`` and ``ModelFileError`` are ``ValueError``\\ s) or a
``NonFiniteError``, raised by the library's own code before the epoch is
traced, with a message that names what was refused. Anything else (an XLA or
tracing error, ``IndexError``, ``AttributeError``, ``ZeroDivisionError``, a
``TypeError`` from inside JAX ...) fails the test, which lists every such case
with the seed that rebuilds it.

A case is drawn from its seed (``np.random.default_rng(seed)``, fixed seeds):

- half are *valid* runs of one of :data:`POOL`'s architectures (random layers
  among Dense, Dropout, Flatten, RNN, LSTM, GRU, Convolution, Pooling and
  Template, random shapes, activations, loss, metrics, batch size, schedule
  kind), with random data (normal, huge, tiny, constant, integer, boolean),
  labels, learning rate (up to 1e3: some diverge, which is a NonFiniteError),
  schedule numbers, initial parameters and key. These must train or diverge;
- half are *invalid*: one random thing broken (bad units, unknown activation
  or initializer, a window larger than its input, a missing Flatten, NaN or
  inf data, mismatched label shapes, labels outside [0, 1], a negative
  learning rate, a bad batch size, unknown loss or metric, foreign
  parameters, ...). These must raise a documented error naming the argument.

Compiling an epoch costs about a second, so the valid cases share the
compiled programs of the pool's few architectures: everything that varies
between them (data values, learning rate and schedule numbers, parameters,
key) is data to the compiled epoch, not part of its program.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import traceback
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import epynn_jax
from epynn_jax import layers, network
from epynn_jax.errors import NonFiniteError
from epynn_jax.maths.activations import ActivationHPars
from epynn_jax.maths.losses import LOSSES
from epynn_jax.maths.schedules import Schedule

N_CASES = 320
SEEDS = range(N_CASES)
POOL_SIZE = 12  # architectures compiled (one to five seconds each on a CI core)

DOCUMENTED = (ValueError, TypeError, NonFiniteError)
LIBRARY = os.path.dirname(epynn_jax.__file__)
HIDDEN_ACTS = ("identity", "relu", "lrelu", "elu", "sigmoid", "tanh")
METRIC_CHOICES = ("accuracy", "precision", "recall", "fscore", "specificity", "NPV",
                  "recall_macro", "fscore_macro", "MSE", "MAE")


# -- architectures -------------------------------------------------------------------------


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _hidden_vector_layer(rng) -> tuple[str, dict]:
    kind = _pick(rng, ("Dense", "Dense", "Dropout", "Template"))
    if kind == "Dense":
        return "Dense", {"units": int(rng.integers(1, 5)), "activate": _pick(rng, HIDDEN_ACTS),
                         "initialization": _pick(rng, ("xavier", "orthogonal"))}
    if kind == "Dropout":
        return "Dropout", {"drop_prob": float(_pick(rng, (0.0, 0.2, 0.5)))}
    return "Template", {}


def _recurrent(rng, sequences: bool, cls: str | None = None) -> tuple[str, dict]:
    cls = cls or _pick(rng, ("RNN", "LSTM", "GRU"))
    gates = {"RNN": ("activate",),
             "LSTM": ("activate", "activate_output", "activate_candidate", "activate_input",
                      "activate_forget"),
             "GRU": ("activate", "activate_update", "activate_reset")}[cls]
    kwargs = {"unit_cells": int(rng.integers(1, 4)), "sequences": sequences,
              "clip_gradients": bool(rng.integers(2))}
    for gate in gates:
        if rng.random() < 0.3:
            kwargs[gate] = _pick(rng, HIDDEN_ACTS)
    return cls, kwargs


def _vectors(rng, i: int):
    shape = (int(rng.integers(1, 6)),)
    return shape, [_hidden_vector_layer(rng) for _ in range(int(rng.integers(0, 3)))]


def _sequences(rng, i: int):
    shape = (int(rng.integers(1, 5)), int(rng.integers(1, 4)))
    sequences = bool(rng.integers(2))
    specs = [_recurrent(rng, sequences, ("LSTM", "GRU", "RNN")[i % 3])]  # each one in turn
    if rng.random() < 0.3:
        specs.append(("Dropout", {"drop_prob": 0.3}))
    if sequences:
        specs += ([_recurrent(rng, False)] if rng.random() < 0.3 else [("Flatten", {})])
    return shape, specs


def _images(rng, i: int):
    shape = (int(rng.integers(2, 7)), int(rng.integers(2, 7)), int(rng.integers(1, 3)))
    specs = []
    for _ in range(int(rng.integers(1, 3))):
        kind = _pick(rng, ("Convolution", "Convolution", "Pooling", "Dropout", "Template"))
        if kind == "Convolution":
            specs.append(("Convolution", {
                "unit_filters": int(rng.integers(1, 4)),
                "filter_size": _pick(rng, (1, 2, (2, 1), 3)),
                "strides": _pick(rng, (None, 1, (1, 2), 2)),
                "padding": int(rng.integers(0, 2)), "activate": _pick(rng, HIDDEN_ACTS),
                "use_bias": bool(rng.integers(2)), "impl": _pick(rng, ("auto", "lax", "patches")),
            }))
        elif kind == "Pooling":
            specs.append(("Pooling", {"pool_size": _pick(rng, (1, 2, (2, 1))),
                                      "strides": _pick(rng, (None, 1, (1, 2))),
                                      "pool": _pick(rng, ("max", "min", "mean"))}))
        elif kind == "Dropout":
            specs.append(("Dropout", {"drop_prob": 0.25, "axis": _pick(rng, ((), (1,), (-1,)))}))
        else:
            specs.append(("Template", {}))
    return shape, [*specs, ("Flatten", {})]


@dataclasses.dataclass(frozen=True)
class Arch:
    """Everything that is part of a compiled epoch's program."""

    input_shape: tuple[int, ...]
    specs: tuple[tuple[str, dict], ...]
    loss: str
    metrics: tuple[str, ...]
    batch_size: int | None
    n_train: int
    n_val: int  # 0: no validation split
    schedule: str
    output_shape: tuple[int, ...]  # (computed once: building traces every layer)

    def layers(self) -> list:
        return [getattr(layers, name)(**kwargs) for name, kwargs in self.specs]

    def __str__(self) -> str:
        arch = " -> ".join(f"{n}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
                           for n, kw in self.specs)
        return (f"input {self.input_shape}: {arch}; loss {self.loss}, metrics {self.metrics}, "
                f"batch_size {self.batch_size}, {self.n_train} train / {self.n_val} val, "
                f"{self.schedule}")


def _losses_for(activation: str | None) -> tuple[str, ...]:
    return {"softmax": ("MSE", "MAE", "MSLE", "CCE", "BCE"),
            "sigmoid": ("MSE", "MAE", "MSLE", "BCE")}.get(activation, ("MSE", "MAE"))


def _draw_arch(rng, family: Callable, i: int) -> Arch:
    """A random architecture that builds (redrawn until ``network.build`` accepts it)."""
    while True:
        shape, specs = family(rng, i)
        if family is not _sequences or specs[-1][0] == "Flatten" or rng.random() < 0.7:
            out_act = _pick(rng, ("softmax", "softmax", "sigmoid", "tanh", "identity", "relu"))
            specs.append(("Dense", {"units": int(rng.integers(1, 4)), "activate": out_act}))
        try:
            net = network.build([getattr(layers, n)(**kw) for n, kw in specs], shape)
        except layers.LayerError:
            continue
        n_train = int(_pick(rng, (6, 8)))
        return Arch(shape, tuple(specs), _pick(rng, _losses_for(net.output_activation)),
                    tuple(str(m) for m in rng.choice(METRIC_CHOICES, int(rng.integers(0, 3)),
                                                     replace=False)),
                    _pick(rng, (None, 2, 3, 4, n_train)), n_train, int(_pick(rng, (0, 4))),
                    _pick(rng, ("steady", "exp_decay", "lin_decay")), net.output_shape)


@functools.lru_cache(maxsize=1)
def pool() -> tuple[Arch, ...]:
    """The architectures the valid cases train (families in turn, so each one is there)."""
    rng = np.random.default_rng(20240611)
    families = (_vectors, _sequences, _images)
    return tuple(_draw_arch(rng, families[i % 3], i // 3) for i in range(POOL_SIZE))


# -- data and runs ----------------------------------------------------------------------------


def _inputs(rng, m: int, shape: tuple[int, ...]) -> np.ndarray:
    kind = _pick(rng, ("normal", "normal", "uniform", "huge", "tiny", "constant", "ints", "bools"))
    size = (m, *shape)
    if kind == "normal":
        return rng.standard_normal(size).astype(np.float32)
    if kind == "uniform":
        return rng.uniform(0, 1, size)  # float64: converted by fit
    if kind == "huge":
        return (rng.standard_normal(size) * 1e4).astype(np.float32)
    if kind == "tiny":
        return (rng.standard_normal(size) * 1e-6).astype(np.float32)
    if kind == "constant":
        return np.full(size, float(rng.normal()), np.float32)
    if kind == "ints":
        return rng.integers(0, 10, size)
    return rng.integers(0, 2, size).astype(bool)


def _labels(rng, m: int, shape: tuple[int, ...], loss: str) -> np.ndarray:
    if loss == "CCE" and len(shape) == 1 and shape[0] > 1:
        return np.eye(shape[0], dtype=np.float32)[rng.integers(0, shape[0], m)]
    if loss in ("CCE", "BCE", "MSLE") or rng.random() < 0.5:
        return rng.integers(0, 2, (m, *shape)).astype(np.float32)
    return rng.standard_normal((m, *shape)).astype(np.float32)


@dataclasses.dataclass
class Run:
    """The arguments of one ``fit`` call, each replaceable by a mutation."""

    arch: Arch
    layers: Callable[[], list]
    input_shape: tuple
    data: dict
    fit_kwargs: dict
    params: Callable[[object], object]  # net -> params
    schedule: Callable[[], Schedule]

    def __call__(self):
        net = network.build(self.layers(), self.input_shape)
        return net, network.fit(net, self.params(net), self.data, schedule=self.schedule(),
                                **self.fit_kwargs)


def _valid_run(rng, arch: Arch) -> Run:
    data = {"dtrain": (_inputs(rng, arch.n_train, arch.input_shape),
                       _labels(rng, arch.n_train, arch.output_shape, arch.loss))}
    if arch.n_val:
        data["dval"] = (_inputs(rng, arch.n_val, arch.input_shape),
                        _labels(rng, arch.n_val, arch.output_shape, arch.loss))
    lr = float(10 ** rng.uniform(-4, 3))
    numbers = {"decay_k": float(_pick(rng, (0.0, 0.01, 0.5))),
               "cycle_epochs": int(rng.integers(0, 3)),
               "cycle_descent": float(_pick(rng, (0.0, 0.3, 0.9)))}
    init_seed, scale = int(rng.integers(2**31)), float(_pick(rng, (1.0, 1.0, 1.0, 1e3)))

    def params(net):
        return jax.tree.map(lambda p: p * scale, network.init(net, jax.random.key(init_seed)))

    key = _pick(rng, (None, int(rng.integers(2**31)), jax.random.key(int(rng.integers(99)))))
    return Run(arch, arch.layers, arch.input_shape, data,
               {"epochs": 1, "loss": arch.loss, "metrics": arch.metrics,
                "batch_size": arch.batch_size, "key": key}, params,
               lambda: Schedule(lr, arch.schedule, **numbers))


# -- mutations: each breaks one thing; the error must name one of `names` ----------------


@dataclasses.dataclass(frozen=True)
class Mutation:
    what: str
    names: tuple[str, ...]
    apply: Callable  # (run, rng) -> None, edits the run


def _edit_layer(kinds: tuple[str, ...], field: str, values: tuple) -> Callable:
    """Set ``field`` of the first layer of one of ``kinds`` to one of ``values``."""

    def apply(run: Run, rng):
        specs = [list(s) for s in run.arch.specs]
        index = next(i for i, (name, _) in enumerate(specs) if name in kinds)
        value = _pick(rng, values)
        specs[index][1] = {**specs[index][1], field: value}
        run.layers = lambda: [getattr(layers, n)(**kw) for n, kw in specs]
        return f"{specs[index][0]}.{field}={value!r}"

    return apply


def _applicable(kinds: tuple[str, ...]) -> Callable[[Arch], bool]:
    return lambda arch: any(name in kinds for name, _ in arch.specs)


def _drop_flatten(run: Run, rng):
    specs = [s for s in run.arch.specs if s[0] != "Flatten"]
    run.layers = lambda: [getattr(layers, n)(**kw) for n, kw in specs]


def _replace_data(split_fn: Callable) -> Callable:
    def apply(run: Run, rng):
        X, Y = run.data["dtrain"]
        run.data = {**run.data, "dtrain": split_fn(np.array(X, copy=True), np.array(Y, copy=True),
                                                   rng)}

    return apply


def _poison(value: float, which: int) -> Callable:
    def fn(X, Y, rng):
        arr = (X, Y)[which].astype(np.float32)
        arr.reshape(-1)[int(rng.integers(arr.size))] = value
        return (arr, Y) if which == 0 else (X, arr)

    return fn


def _set_kwarg(name: str, values: tuple) -> Callable:
    def apply(run: Run, rng):
        value = _pick(rng, values)
        run.fit_kwargs = {**run.fit_kwargs, name: value}
        return f"{name}={value!r}"

    return apply


def _set_schedule(field: str, values: tuple) -> Callable:
    def apply(run: Run, rng):
        value = _pick(rng, values)
        run.schedule = lambda: Schedule(**{field: value})
        return f"Schedule({field}={value!r})"

    return apply


def _other_params(kind: str) -> Callable:
    def apply(run: Run, rng):
        original = run.params
        if kind == "none":
            run.params = lambda net: None
        elif kind == "short":
            run.params = lambda net: original(net)[:-1]
        elif kind == "foreign":
            run.params = lambda net: network.init(network.build(
                [layers.Dense(7), layers.Dense(3)], (9,)), jax.random.key(0))[:len(net.layers)]
        elif kind == "shape":
            def wrong(net):
                ps = list(original(net))
                i = next((i for i, p in enumerate(ps) if p), None)
                if i is None:  # no trainable layer: a parameter it does not have
                    return (*ps[:-1], {"W": jnp.zeros((1, 1))})
                k = sorted(ps[i])[0]
                ps[i] = {**ps[i], k: jnp.zeros((*ps[i][k].shape, 2))}
                return tuple(ps)
            run.params = wrong
        else:  # ints
            run.params = lambda net: jax.tree.map(lambda p: p.astype(jnp.int32), original(net))

    return apply


def ALWAYS(arch: Arch) -> bool:
    return True


MUTATIONS: tuple[tuple[Callable[[Arch], bool], Mutation], ...] = (
    (_applicable(("Dense",)), Mutation("bad units", ("Dense", "units"), _edit_layer(
        ("Dense",), "units", (0, -1, 2.5, True, "3", None)))),
    (_applicable(("Dense",)), Mutation("unknown activation", ("Dense", "activation"), _edit_layer(
        ("Dense",), "activate", ("softplus", "", "Sigmoid", 3, None, np.sinh)))),
    (_applicable(("Dense",)), Mutation("unknown initializer", ("Dense", "initializer"),
                                       _edit_layer(("Dense",), "initialization",
                                                   ("he", None, 0)))),
    (_applicable(("RNN", "LSTM", "GRU")), Mutation(
        "bad unit_cells", ("RNN", "LSTM", "GRU"), _edit_layer(
            ("RNN", "LSTM", "GRU"), "unit_cells", (0, -2, 1.5, "2", None)))),
    (_applicable(("RNN", "LSTM", "GRU")), Mutation(
        "bad recurrent activation", ("RNN", "LSTM", "GRU"), _edit_layer(
            ("RNN", "LSTM", "GRU"), "activate", ("softmax", "swish", 1)))),
    (_applicable(("RNN", "LSTM", "GRU")), Mutation(
        "bad recurrent flag", ("RNN", "LSTM", "GRU"), _edit_layer(
            ("RNN", "LSTM", "GRU"), "sequences", ("yes", 1, None)))),
    (_applicable(("Dropout",)), Mutation("bad drop_prob", ("Dropout",), _edit_layer(
        ("Dropout",), "drop_prob", (1.0, -0.1, float("nan"), "0.5", None, 1.5)))),
    (_applicable(("Dropout",)), Mutation("bad dropout axis", ("Dropout", "axis"), _edit_layer(
        ("Dropout",), "axis", (7, -9, "1", 1.5, (0.5,))))),
    (_applicable(("Convolution",)), Mutation(
        "bad filter", ("Convolution",), _edit_layer(
            ("Convolution",), "filter_size", (0, -1, (2,), (2, 2, 2), "3", 2.5, (9, 9))))),
    (_applicable(("Convolution",)), Mutation(
        "bad conv strides", ("Convolution",), _edit_layer(
            ("Convolution",), "strides", (0, (1, 0), -1, "2")))),
    (_applicable(("Convolution",)), Mutation(
        "bad padding", ("Convolution", "padding"), _edit_layer(
            ("Convolution",), "padding", (-1, 1.5, "1", None)))),
    (_applicable(("Convolution",)), Mutation(
        "bad conv option", ("Convolution",), _edit_layer(
            ("Convolution",), "impl", ("cuda", None, "")))),
    (_applicable(("Convolution",)), Mutation(
        "bad use_bias", ("Convolution", "use_bias"), _edit_layer(
            ("Convolution",), "use_bias", ("no", None, 2)))),
    (_applicable(("Pooling",)), Mutation("bad pooling", ("Pooling",), _edit_layer(
        ("Pooling",), "pool_size", (0, (9, 9), (2, 2, 2), "2")))),
    (_applicable(("Pooling",)), Mutation("unknown pool", ("Pooling", "pool"), _edit_layer(
        ("Pooling",), "pool", ("median", None, 2)))),
    (_applicable(("Flatten",)), Mutation("missing Flatten", ("Dense", "RNN", "LSTM", "GRU",
                                                              "rank", "Flatten"), _drop_flatten)),
    (ALWAYS, Mutation("bad input_shape", ("input_shape",), lambda run, rng: setattr(
        run, "input_shape", _pick(rng, ((0,), (-1, 2), (2.5,), "5", None, (3, None)))))),
    (ALWAYS, Mutation("no layers", ("layer",), lambda run, rng: setattr(
        run, "layers", lambda: []))),
    (ALWAYS, Mutation("not a layer", ("layer",), lambda run, rng: setattr(
        run, "layers", lambda: [*run.arch.layers()[:-1], _pick(rng, (layers.Dense, "Dense",
                                                                      None))]))),
    (ALWAYS, Mutation("NaN in X", ("X", "NaN"), _replace_data(_poison(float("nan"), 0)))),
    (ALWAYS, Mutation("inf in X", ("X", "NaN", "inf"), _replace_data(_poison(np.inf, 0)))),
    (ALWAYS, Mutation("NaN in Y", ("Y", "NaN"), _replace_data(_poison(float("nan"), 1)))),
    (ALWAYS, Mutation("X of another sample shape", ("X", "shape"), _replace_data(
        lambda X, Y, rng: (X.reshape(X.shape[0], -1)[:, None].repeat(2, 1), Y)))),
    (ALWAYS, Mutation("X without the batch axis", ("X", "shape"), _replace_data(
        lambda X, Y, rng: (X[0], Y)))),
    (ALWAYS, Mutation("Y of another sample shape", ("Y", "label", "shape"), _replace_data(
        lambda X, Y, rng: (X, np.concatenate([Y, Y], axis=-1))))),
    (ALWAYS, Mutation("Y as integer labels", ("Y", "label"), _replace_data(
        lambda X, Y, rng: (X, rng.integers(0, 2, (X.shape[0], 1, 1)))))),
    (ALWAYS, Mutation("fewer labels than samples", ("Y", "samples"), _replace_data(
        lambda X, Y, rng: (X, Y[:-1])))),
    (ALWAYS, Mutation("no samples", ("X", "samples"), _replace_data(
        lambda X, Y, rng: (X[:0], Y[:0])))),
    (ALWAYS, Mutation("text data", ("X", "numeric", "dtype"), _replace_data(
        lambda X, Y, rng: (X.astype(str), Y)))),
    (ALWAYS, Mutation("complex data", ("X", "numeric", "dtype", "complex"), _replace_data(
        lambda X, Y, rng: (X.astype(np.complex64), Y)))),
    (ALWAYS, Mutation("data not a mapping", ("data",), lambda run, rng: setattr(
        run, "data", list(run.data.values())))),
    (ALWAYS, Mutation("split not a pair", ("data", "pair"), lambda run, rng: setattr(
        run, "data", {**run.data, "dtrain": (*run.data["dtrain"], None)}))),
    (ALWAYS, Mutation("no training split", ("dtrain", "split"), lambda run, rng: setattr(
        run, "data", {"train": run.data["dtrain"]}))),
    (ALWAYS, Mutation("bad learning rate", ("learning_rate",), _set_schedule(
        "learning_rate", (-0.1, 0, float("nan"), float("inf"), "0.1", None)))),
    (ALWAYS, Mutation("unknown schedule", ("schedule",), _set_schedule(
        "schedule", ("cosine", None, "")))),
    (ALWAYS, Mutation("bad schedule numbers", ("decay_k", "cycle"), lambda run, rng: _pick(rng, (
        _set_schedule("decay_k", (-1.0, float("nan"), "0.1")),
        _set_schedule("cycle_descent", (1.0, -0.5)),
        _set_schedule("cycle_epochs", (-1, 2.5, None)),
    ))(run, rng))),
    (ALWAYS, Mutation("bad batch_size", ("batch_size",), _set_kwarg(
        "batch_size", (0, -2, 2.5, True, "4")))),
    (ALWAYS, Mutation("bad epochs", ("epochs",), lambda run, rng: setattr(
        run, "fit_kwargs", {**run.fit_kwargs, "epochs": _pick(rng, (0, -1, 1.5, None))}))),
    (ALWAYS, Mutation("unknown loss", ("loss",), _set_kwarg(
        "loss", ("Hinge", "", None, 3, "mse")))),
    (ALWAYS, Mutation("unknown metric", ("metric",), _set_kwarg(
        "metrics", (("auc",), (None,), 3, ("accuracy", 1.0))))),
    (ALWAYS, Mutation("bad key", ("key", "seed"), _set_kwarg(
        "key", (-1, "seed", 1.5, np.zeros(3), 2**70)))),
    (ALWAYS, Mutation("no params", ("params",), _other_params("none"))),
    (ALWAYS, Mutation("params of one layer too few", ("params",), _other_params("short"))),
    (ALWAYS, Mutation("params of another network", ("layer", "params"), _other_params("foreign"))),
    (ALWAYS, Mutation("a parameter of the wrong shape", ("layer", "params"),
                      _other_params("shape"))),
    (ALWAYS, Mutation("integer parameters", ("layer", "float"), _other_params("ints"))),
    (ALWAYS, Mutation("not an optimizer", ("optimizer",), _set_kwarg(
        "optimizer", ("sgd", optax.sgd, 0.1)))),
    (ALWAYS, Mutation("not a callback", ("callback",), _set_kwarg(
        "callbacks", ([1], [None])))),
    (ALWAYS, Mutation("unknown train_split", ("train_split", "split"), _set_kwarg(
        "train_split", ("train", "", None)))),
    (ALWAYS, Mutation("foreign opt_state", ("opt_state",), _set_kwarg(
        "opt_state", ((), {"count": 0}, optax.sgd(0.1).init({"w": jnp.zeros(3)}))))),
    (ALWAYS, Mutation("not a checkpoint policy", ("checkpoints",), _set_kwarg(
        "checkpoints", ("runs", 3, {"every": 1})))),
    (ALWAYS, Mutation("not a mesh", ("mesh",), _set_kwarg("mesh", ("cpu", 3, [], [None])))),
    (ALWAYS, Mutation("object data", ("X", "numeric", "dtype"), _replace_data(
        lambda X, Y, rng: (X.astype(object), Y)))),
    (_applicable(("Dense", "Convolution", "RNN", "LSTM", "GRU")), Mutation(
        "hpars not ActivationHPars", ("hpars", "ActivationHPars"), _edit_layer(
            ("Dense", "Convolution", "RNN", "LSTM", "GRU"), "hpars",
            ({"ELU_alpha": 0.5}, None, 1.0)))),
    (_applicable(("Dense", "Convolution", "RNN", "LSTM", "GRU")), Mutation(
        "bad activation hyperparameter", ("ELU_alpha", "LRELU_alpha", "softmax_temperature"),
        lambda run, rng: _bad_hpars(run, rng, ("Dense", "Convolution", "RNN", "LSTM", "GRU")))),
)


def _bad_hpars(run: Run, rng, kinds: tuple[str, ...]):
    """The first layer of one of ``kinds`` gets ``ActivationHPars(field=bad value)``."""
    field = _pick(rng, ("ELU_alpha", "LRELU_alpha", "softmax_temperature"))
    values = ("0.5", None, float("nan"), float("inf"), [1])
    value = _pick(rng, (*values, 0.0) if field == "softmax_temperature" else values)
    specs = run.arch.specs
    index = next(i for i, (name, _) in enumerate(specs) if name in kinds)

    def make():
        hp = ActivationHPars(**{field: value})
        return [getattr(layers, n)(**({**kw, "hpars": hp} if i == index else kw))
                for i, (n, kw) in enumerate(specs)]

    run.layers = make
    return f"{specs[index][0]}.hpars=ActivationHPars({field}={value!r})"


def _label_outside(run: Run, rng):
    X, Y = run.data["dtrain"]
    Y = np.array(Y, np.float32, copy=True)
    Y.reshape(-1)[0] = _pick(rng, (2.0, -1.0))
    run.data = {**run.data, "dtrain": (X, Y)}


LABEL_RANGE = (lambda arch: arch.loss in ("CCE", "BCE"),
               Mutation("labels outside [0, 1]", ("label", "[0, 1]", "Y"), _label_outside))


def _loss_mismatch(run: Run, rng):
    run.fit_kwargs = {**run.fit_kwargs, "loss": "CCE"}


LOSS_MISMATCH = (lambda arch: arch.specs[-1][0] == "Dense"
                 and arch.specs[-1][1]["activate"] != "softmax",
                 Mutation("CCE without softmax", ("CCE", "softmax"), _loss_mismatch))


# -- the cases ------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    seed: int
    arch: Arch
    mutation: Mutation | None
    detail: str | None
    run: Run

    def __str__(self) -> str:
        broken = (f"\n    INVALID: {self.mutation.what}" + (f" ({self.detail})" if self.detail
                                                              else "")
                  if self.mutation else "")
        return f"case {self.seed}: {self.arch}{broken}"


def make_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    arch = _pick(rng, pool())
    run = _valid_run(rng, arch)
    if rng.random() < 0.5:
        return Case(seed, arch, None, None, run)
    options = [m for ok, m in (*MUTATIONS, LABEL_RANGE, LOSS_MISMATCH) if ok(arch)]
    mutation = _pick(rng, options)
    detail = mutation.apply(run, rng)
    return Case(seed, arch, mutation, detail, run)


@dataclasses.dataclass
class Outcome:
    case: Case
    trained: bool = False
    error: BaseException | None = None
    problem: str | None = None  # why this outcome fails the test


def _raised_where(err: BaseException) -> traceback.FrameSummary:
    return traceback.extract_tb(err.__traceback__)[-1]


def _while_tracing_the_epoch(err: BaseException) -> bool:
    return any(frame.name in ("run_epoch", "_train_step", "guarded_train_step")
               for frame in traceback.extract_tb(err.__traceback__))


def run_case(case: Case) -> Outcome:
    out = Outcome(case)
    try:
        net, result = case.run()
    except Exception as err:  # noqa: BLE001 -- judged below
        out.error = err
        where = _raised_where(err)
        if not isinstance(err, DOCUMENTED):
            out.problem = "an undocumented exception"
        elif not where.filename.startswith(LIBRARY):
            out.problem = f"raised outside the library ({where.filename}:{where.lineno})"
        elif _while_tracing_the_epoch(err):
            out.problem = "raised while tracing the epoch, not before"
        elif case.mutation and not isinstance(err, NonFiniteError) and not any(
                re.search(rf"\b{re.escape(name)}", str(err)) for name in case.mutation.names):
            out.problem = f"the message names none of {case.mutation.names}"
        elif case.mutation and isinstance(err, NonFiniteError):
            out.problem = "invalid input reached training (NonFiniteError)"
        return out
    if case.mutation is not None:
        out.problem = "invalid input was accepted and trained"
        return out
    # Losses are finite; a ratio metric (precision, ...) may be NaN where it is 0/0.
    finite = all(math.isfinite(v) if name in LOSSES else (math.isfinite(v) or math.isnan(v))
                 for name, d in result.history.items() for vs in d.values() for v in vs)
    if result.epochs != 1 or not finite:
        out.problem = f"trained with history {result.history}"
        return out
    try:
        chex.assert_tree_all_finite(result.params)
    except AssertionError as err:
        out.problem = f"non-finite parameters after training: {err}"
        return out
    out.trained = True
    return out


@functools.lru_cache(maxsize=1)
def outcomes() -> tuple[Outcome, ...]:
    return tuple(run_case(make_case(seed)) for seed in SEEDS)


def _report(out: Outcome) -> str:
    err = out.error
    raised = ""
    if err is not None:
        where = _raised_where(err)
        raised = (f"\n    -> {type(err).__module__}.{type(err).__name__}: "
                  f"{str(err).splitlines()[0] if str(err) else ''}"
                  f"\n       at {where.filename}:{where.lineno} ({where.name})")
    return f"{out.case}\n    FAILED: {out.problem}{raised}"


def test_every_random_network_trains_or_raises_a_documented_error():
    bad = [out for out in outcomes() if out.problem]
    assert not bad, (f"{len(bad)} of {N_CASES} fuzz cases failed:\n\n"
                     + "\n\n".join(_report(out) for out in bad))


def test_the_fuzz_reaches_every_layer_and_both_outcomes():
    """The fuzz is only as good as what it reaches: most valid cases train, every layer
    kind is in a network that trained, and the invalid cases are refused."""
    outs = outcomes()
    trained = [out for out in outs if out.trained]
    refused = [out for out in outs if out.case.mutation and out.error and not out.problem]
    valid = [out for out in outs if out.case.mutation is None]
    assert len(outs) >= 300
    assert len(trained) >= 0.6 * len(valid), f"only {len(trained)} of {len(valid)} trained"
    assert len(refused) >= 0.3 * N_CASES
    kinds = {name for out in trained for name, _ in out.case.arch.specs}
    assert kinds >= {"Dense", "Dropout", "Flatten", "RNN", "LSTM", "GRU", "Convolution",
                     "Pooling", "Template"}, kinds
    assert len({out.case.mutation.what for out in refused}) >= 30


# -- what the fuzz found, each a regression test ----------------------------------------------


def _tiny_fit(**kwargs):
    net = network.build([layers.Dense(2, "softmax")], (3,))
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    return network.fit(net, network.init(net, jax.random.key(0)),
                       {"dtrain": (X, np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])},
                       **{"epochs": 1, **kwargs})


def test_metrics_that_are_not_names_are_refused_by_name():
    """Was: TypeError "'int' object is not iterable" from inside fit."""
    for bad in (3, None, b"accuracy", {"accuracy": 1}):
        with pytest.raises(TypeError, match="fit: metrics must be a metric name or a sequence"):
            _tiny_fit(metrics=bad)
    assert set(_tiny_fit(metrics="precision").history) == {"precision", "MSE"}


def test_a_checkpoint_policy_that_is_not_one_is_refused():
    """Was: AttributeError "'dict' object has no attribute 'start'" from inside fit."""
    for bad in ("runs", {"every": 1}, 3):
        with pytest.raises(TypeError, match="fit: checkpoints must be a checkpoint policy"):
            _tiny_fit(checkpoints=bad)


@pytest.mark.parametrize("make", [
    lambda hp: layers.Dense(2, hpars=hp), lambda hp: layers.LSTM(2, hpars=hp),
    lambda hp: layers.Convolution(2, 2, hpars=hp), lambda hp: layers.Template(hpars=hp),
], ids=["Dense", "LSTM", "Convolution", "Template"])
@pytest.mark.parametrize("hpars", [None, 1.0, {"ELU_alpha": 0.5}])
def test_layer_hpars_must_be_activation_hpars(make, hpars):
    """Was: AttributeError "'NoneType' object has no attribute 'ELU_alpha'" while tracing
    (and a float or dict silently kept, failing only where an activation read it)."""
    with pytest.raises(layers.LayerError, match=r"\w+: hpars must be an ActivationHPars"):
        make(hpars)


@pytest.mark.parametrize("field,value,error", [
    ("ELU_alpha", None, TypeError), ("LRELU_alpha", "0.3", TypeError),
    ("ELU_alpha", True, TypeError), ("ELU_alpha", float("nan"), ValueError),
    ("LRELU_alpha", float("inf"), ValueError), ("softmax_temperature", float("inf"), ValueError),
    ("softmax_temperature", 0.0, ValueError), ("softmax_temperature", [1], TypeError),
    ("epynn_softmax_grad", 1, TypeError),
])
def test_activation_hyperparameters_are_checked_where_made(field, value, error):
    """Was: NaN, inf and None accepted, then NaN outputs, or a layer trained with them
    because its activations never read them."""
    with pytest.raises(error, match=f"ActivationHPars: {field} must be"):
        ActivationHPars(**{field: value})
    assert ActivationHPars(ELU_alpha=np.float32(0.5), LRELU_alpha=2).LRELU_alpha == 2


@pytest.mark.parametrize("flag", ["no", None, 2, 1.0])
def test_convolution_use_bias_must_be_a_bool(flag):
    """Was: bool(use_bias), so use_bias='no' trained a bias."""
    with pytest.raises(layers.LayerError, match="Convolution: use_bias must be True or False"):
        layers.Convolution(2, 2, use_bias=flag)
