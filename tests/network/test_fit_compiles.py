"""What one ``init``, ``fit`` and ``predict`` call compiles: one XLA program each, nothing
twice, nothing op by op (``jax.log_compiles`` names every program XLA compiles)."""

from __future__ import annotations

import contextlib
import logging
import re

import jax
import numpy as np

from epynn_jax import layers, network, testing


class _Compiles(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record):
        match = re.match(r"Compiling (\S+)", record.getMessage())
        if match:
            self.names.append(match.group(1))


@contextlib.contextmanager
def compiled():
    """The names of the programs compiled inside the block (``jit(run_epoch)``, ...)."""
    handler, logger = _Compiles(), logging.getLogger("jax")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            yield handler.names
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _data(m, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 6)), np.eye(3)[rng.integers(0, 3, m)]


def test_one_fit_compiles_one_program():
    # Units 11 and 13: a network no other test builds, so every cache starts cold for it.
    net = network.build([layers.Dense(11, "relu"), layers.Dense(13, "tanh"),
                         layers.Dense(3, "softmax")], (6,))
    key = jax.random.key(3)  # made outside: a process's first key compiles its seeding
    data = {"dtrain": _data(50, 0), "dval": _data(21, 1), "dtest": _data(9, 2)}
    kw = dict(epochs=3, batch_size=8, loss="CCE", metrics=("accuracy", "fscore_macro", "MSE"))
    with compiled() as names:
        params = network.init(net, key)
    # one program splits the keys (and one hands them out), one per distinct layer draws
    assert names[0] == "jit(_split)" and names.count("jit(_draw_layer)") == 3, names
    assert len(names) <= 5, names
    with compiled() as names:
        result = network.fit(net, params, data, **kw)
    # the compiled epoch, evaluation of the three splits inside it; nothing else: no
    # program per data array (conversion, fingerprint, label check) or optimizer state
    assert names == ["jit(run_epochs)"], names
    with compiled() as names:
        network.fit(net, result.params, data, **kw)
    assert names == []                        # the same shapes: nothing compiles again
    with compiled() as names:
        network.predict(net, result.params, data["dval"][0])
        network.predict(net, result.params, data["dval"][0])
    assert names == ["jit(predict_jit)"]


def test_equal_layers_share_one_compiled_draw():
    """A deep stack of equal layers compiles one draw, whatever its depth (one program of
    every layer's draws took 8 s to compile for 100 layers)."""
    net = network.build([layers.Dense(5, "tanh")] * 40, (5,))
    with compiled() as names:
        params = network.init(net, 7)
    assert names.count("jit(_draw_layer)") == 1, names
    assert len({np.asarray(p["W"]).tobytes() for p in params}) == 40  # each its own key


def test_init_draws_what_op_by_op_draws():
    """init's compiled draws are the parameters the layers draw op by op (bitwise)."""
    from epynn_jax.network import model

    for net in (network.build([layers.Dense(7, "relu"), layers.Dense(2, "softmax")], (4,)),
                network.build([layers.LSTM(5), layers.Dense(2, "softmax")], (6, 3)),
                network.build([layers.Convolution(3, (2, 2)), layers.Flatten(),
                               layers.Dense(2, "softmax")], (6, 6, 1))):
        for seed in (0, 1):
            eager = model._draw(net, jax.random.key(seed))
            once = network.init(net, seed)
            for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(once), strict=True):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fits_under_x64_do_not_make_a_later_fit_compile_twice():
    """fit places its epoch counts once per process; a count placed while 64-bit mode was
    on (int64) and passed after it was switched off missed the compiled epoch's cache."""
    from epynn_jax.network import fitting

    fitting._count.cache_clear()  # as in a process whose first fits ran under x64
    data = {"dtrain": _data(12, 0)}
    kw = dict(batch_size=4, loss="CCE", metrics=("accuracy",))
    with testing.x64(True):
        net = network.build([layers.Dense(3, "softmax")], (6,))
        for epochs in (1, 2, 3):  # the first calls run 1 epoch each, later ones more
            network.fit(net, network.init(net, 0), data, epochs=epochs, **kw)
    net = network.build([layers.Dense(17, "relu"), layers.Dense(3, "softmax")], (6,))
    params = network.init(net, 0)
    with compiled() as names:  # calls of 1, 1 then more epochs (the counts cached above)
        network.fit(net, params, data, epochs=6, **kw)
    assert names == ["jit(run_epochs)"], names
    with compiled() as names:
        network.fit(net, params, data, epochs=9, **kw)
    assert names == [], names
