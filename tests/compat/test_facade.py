"""Facade objects: dicts after training, files, fixed EpyNN bugs, imports, quiet mode."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import network
from epynn_jax.compat import commons, install, installed, set_quiet, uninstall
from epynn_jax.compat.commons.library import ModelFileError, read_model
from epynn_jax.compat.commons.maths import relu, sigmoid, softmax
from epynn_jax.compat.dense.models import Dense
from epynn_jax.compat.dropout.models import Dropout
from epynn_jax.compat.embedding.models import Embedding
from epynn_jax.compat.flatten.models import Flatten
from epynn_jax.compat.network.models import EpyNN
from epynn_jax.layers.base import gradients_to_params
from epynn_jax.maths import losses
from epynn_jax.testing import check_layer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RNG = np.random.default_rng(2)
X = RNG.normal(size=(30, 3, 2))
Y = (X[:, 0, 0] > 0).astype(int)


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def small_model(seed=5, epochs=None, hp=None, batch=6, dropout=False):
    emb = Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=batch)
    layers = [emb, Flatten(), Dense(4, relu)]
    if dropout:
        layers.append(Dropout(0.5))
    layers.append(Dense(2, softmax))
    model = EpyNN(layers, name="small")
    model.initialize(loss="MSE", seed=seed, se_hPars=hp or {**commons_defaults(),
                                                              "learning_rate": 0.05})
    if epochs:
        model.train(epochs, init_logs=False)
    return model


def commons_defaults():
    from epynn_jax.compat.settings import se_hPars
    return dict(se_hPars)


def test_dicts_after_a_step_equal_the_functional_api(x64):
    """One batch, one epoch: p is the functional SGD step; fc, bc, g that step's caches."""
    model = small_model(batch=None)
    p0 = [{k: jnp.asarray(v) for k, v in layer.p.items()} for layer in model.layers]
    model.train(1, init_logs=False)
    net = network.Network(tuple(layer.to_functional() for layer in model.layers))
    Xb = jnp.asarray(model.embedding.dtrain.X[np.asarray(model.embedding._order)])
    Yb = jnp.asarray(model.embedding.dtrain.Y[np.asarray(model.embedding._order)])
    A, fcs = network.forward(net, tuple(p0), Xb, None, True)
    _, gs, bcs = network.backward(net, tuple(p0), fcs, losses.loss_deriv("MSE", Yb, A))
    for i, layer in enumerate(model.layers):
        gp = gradients_to_params(p0[i], gs[i])
        for k in layer.p:
            np.testing.assert_allclose(layer.p[k], p0[i][k] - 0.05 * gp[k], rtol=1e-10)
        for mine, theirs in ((layer.fc, fcs[i]), (layer.bc, bcs[i]), (layer.g, gs[i])):
            assert set(mine) == set(theirs)
            for k in mine:
                np.testing.assert_allclose(mine[k], theirs[k], rtol=1e-10, atol=1e-14)


def test_assigned_weights_are_used_by_the_next_train(x64):
    model = small_model()
    model.layers[2].p["W"] = np.zeros_like(model.layers[2].p["W"])
    model.layers[3].p["W"] = np.zeros_like(model.layers[3].p["W"])
    model.train(1, init_logs=False)
    # all-zero weights: relu layer gets no gradient, its W stays exactly zero
    assert np.all(model.layers[2].p["W"] == 0)


def test_caches_of_the_last_batch_of_several(x64):
    """fc, bc and g come from the epoch's last batch, with the parameters before its step
    (replayed by plain functional SGD steps over the epoch's batches here)."""
    model = small_model(batch=6, epochs=1)
    params = tuple({k: jnp.asarray(v) for k, v in layer.p.items()} for layer in model.layers)
    model.train(1, init_logs=False)
    n_batches = len(model.embedding.dtrain.ids) // 6
    assert n_batches > 1
    order = np.asarray(model.embedding._order)
    net = network.Network(tuple(layer.to_functional() for layer in model.layers))
    for b in range(n_batches):
        rows = order[b * 6:(b + 1) * 6]
        Xb = jnp.asarray(model.embedding.dtrain.X[rows])
        Yb = jnp.asarray(model.embedding.dtrain.Y[rows])
        A, fcs = network.forward(net, params, Xb, None, True)
        _, gs, _ = network.backward(net, params, fcs, losses.loss_deriv("MSE", Yb, A))
        if b < n_batches - 1:
            params = tuple({k: p[k] - 0.05 * gradients_to_params(p, g)[k] for k in p}
                           for p, g in zip(params, gs))
    np.testing.assert_allclose(model.layers[2].fc["X"], fcs[2]["X"], rtol=1e-12)
    np.testing.assert_allclose(model.layers[3].g["dW"], gs[3]["dW"], rtol=1e-10)
    np.testing.assert_allclose(model.layers[0].fc["X"], Xb, rtol=0)
    assert model.layers[2].d["m"] == 6


def test_weights_assigned_between_trains_are_used(x64):
    """The device copy of the parameters is reused only while p holds the arrays the
    last training left there; an assignment is picked up by the next train."""
    model = small_model(epochs=1)
    for layer, k in ((2, "W"), (2, "b"), (3, "W")):  # trained biases are no longer zero
        model.layers[layer].p[k] = np.zeros_like(model.layers[layer].p[k])
    model.train(1, init_logs=False)
    assert np.all(model.layers[2].p["W"] == 0)
    kept = model.layers[3].p["W"]
    model.train(1, init_logs=False)
    assert model.layers[3].p["W"] is not kept


def test_trained_parameters_and_data_are_read_only():
    """In-place edits raise (they could not reach the device copies); assignment works."""
    model = small_model(epochs=1)
    with pytest.raises(ValueError, match="read-only"):
        model.layers[2].p["W"] *= 0.5
    with pytest.raises(ValueError, match="read-only"):
        model.embedding.dtrain.X[0] = 0.0


def test_new_data_arrays_are_used_by_the_next_train(x64):
    model = small_model(epochs=1)
    new_X = -model.embedding.dtrain.X
    model.embedding.dtrain.X = new_X
    model.train(1, init_logs=False)
    # dtrain's outputs after training are the trained model's outputs on the new data
    np.testing.assert_allclose(model.embedding.dtrain.A, model.predict(new_X).A, rtol=1e-12)


def test_later_train_calls_reuse_the_compiled_epoch(epoch_traces):
    """A new epoch count, new weights or new data of the same shapes: no new trace."""
    model = small_model(epochs=1)
    traces = epoch_traces(splits=len(model._device_data()))
    traces.allow(0)
    model.train(3, init_logs=False)
    model.layers[2].p["W"] = model.layers[2].p["W"] * 0.5
    model.embedding.dtrain.X = model.embedding.dtrain.X + 1.0
    model.train(2, init_logs=False)
    # The budget does see the facade's epoch: a batch size no other test uses traces once.
    traces.exactly_once(lambda: small_model(batch=7).train(1, init_logs=False))


@pytest.mark.parametrize("make_rng", [lambda: np.random.default_rng(7),
                                      lambda: np.random.RandomState(7)])
def test_an_index_array_shuffles_like_epynns_list(make_rng):
    """The facade shuffles an index array; EpyNN shuffles a list of samples: same order."""
    as_list, as_array = list(range(50)), np.arange(50)
    rng_a, rng_b = make_rng(), make_rng()
    for _ in range(3):
        rng_a.shuffle(as_list)
        rng_b.shuffle(as_array)
        assert as_list == as_array.tolist()


def test_check_layer_on_a_facade_layer(x64):
    model = small_model()
    report = check_layer(model.layers[2], (6,))
    assert report.passed, str(report)
    assert model.layers[2].to_functional().units == 4


def test_write_read_round_trip(tmp_path, x64):
    model = small_model(epochs=2)
    path = tmp_path / "m.epynn"
    model.write(str(path))
    assert path.stat().st_size < 20_000
    back = read_model(str(path))
    for a, b in zip(model.layers, back.layers):
        assert type(a) is type(b)
        for k in a.p:
            np.testing.assert_array_equal(a.p[k], b.p[k])
    assert back.metrics == model.metrics and back.uname == model.uname
    np.testing.assert_allclose(back.predict(X[:4]).A, model.predict(X[:4]).A, rtol=1e-12)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def halves(shape, rng=None):
    """A user's initializer: every weight 0.5."""
    return np.full(shape, 0.5)


def test_a_users_initializer_is_honoured_and_named_in_files(tmp_path):
    emb = Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=6)
    model = EpyNN([emb, Flatten(), Dense(2, softmax, initialization=halves)])
    model.initialize(loss="MSE", seed=1)
    assert np.all(model.layers[2].p["W"] == 0.5)
    model.train(1, init_logs=False)
    path = tmp_path / "m.epynn"
    model.write(str(path))
    back = read_model(str(path))
    np.testing.assert_array_equal(back.layers[2].p["W"], model.layers[2].p["W"])
    assert back.layers[2].initialization.__name__ == "halves"
    with pytest.raises(ValueError, match="saved with the initializer 'halves'"):
        back.layers[2].initialization((2, 2))


def test_vocabulary_round_trip(tmp_path, x64):
    words = np.array([list("ACGT"), list("GGCA"), list("TTAC"), list("CAGT")] * 3)
    emb = Embedding(X_data=words, Y_data=[0, 1, 0, 1] * 3, X_encode=True, Y_encode=True)
    model = EpyNN([emb, Flatten(), Dense(2, softmax)])
    model.initialize(seed=1)
    model.train(1, init_logs=False)
    model.write(str(tmp_path / "w.epynn"))
    back = read_model(str(tmp_path / "w.epynn"))
    assert back.embedding.e2i == emb.e2i
    np.testing.assert_allclose(back.predict(words[:2], X_encode=True).A,
                               model.predict(words[:2], X_encode=True).A)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        back.predict(np.array([list("ACGX")]), X_encode=True)


def test_pickle_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "old.pickle"
    path.write_bytes(pickle.dumps({"model": "an EpyNN model"}))
    with pytest.raises(ModelFileError, match="pickle"):
        read_model(str(path))
    (tmp_path / "junk").write_bytes(b"hello")
    with pytest.raises(ModelFileError):
        read_model(str(tmp_path / "junk"))


# -- EpyNN bugs that the facade fixes ---------------------------------------------------------


def test_seed_zero_seeds_each_layer_differently():
    model = small_model(seed=0)
    assert [layer.o["seed"] for layer in model.layers] == [1, 2, 3, 4]
    again = small_model(seed=0)
    np.testing.assert_array_equal(model.layers[2].p["W"], again.layers[2].p["W"])


def test_continued_training_does_not_repeat_an_epoch():
    model = small_model(epochs=3)
    model.train(2, init_logs=False)
    assert len(model.metrics["accuracy"][0]) == 5 and model.epochs == 5 and model.e == 4


def test_caller_hyperparameters_are_not_mutated():
    hp = {**commons_defaults(), "schedule": "exp_decay"}
    before = dict(hp)
    small_model(epochs=2, hp=hp)
    assert hp == before
    assert commons_defaults()["decay_k"] == 0


def test_dropout_is_off_at_prediction_and_evaluation():
    model = small_model(epochs=2, dropout=True)
    a = model.predict(X[:5]).A
    b = model.predict(X[:5]).A
    np.testing.assert_array_equal(a, b)
    model.evaluate()
    first = model.metrics["MSE"][0][-1]
    model.evaluate()
    assert model.metrics["MSE"][0][-1] == first


def test_bad_dropout_axis_is_named_at_construction():
    from epynn_jax.layers.base import LayerError

    with pytest.raises(LayerError, match="Dropout: axis must be an int or a tuple of ints"):
        Dropout(0.5, axis=None)
    assert Dropout(0.5, axis=[1]).to_functional().axis == (1,)


def test_initialization_failure_raises_instead_of_exiting():
    emb = Embedding(X_data=X, Y_data=Y, Y_encode=True)
    model = EpyNN([emb, Dense(2, softmax)])  # Dense needs a Flatten before 3-D data
    with pytest.raises(ValueError, match="Flatten"):
        model.initialize()


def test_plot_to_a_path(tmp_path):
    pytest.importorskip("matplotlib")
    model = small_model(epochs=2)
    model.plot(path=str(tmp_path / "sub" / "fig.png"))
    assert (tmp_path / "sub" / "fig.png").stat().st_size > 0


# -- imports, printing -------------------------------------------------------------------------


def test_install_aliases_epynn_and_uninstall_restores():
    install()
    try:
        assert installed()
        import epynn.dense.models
        import epynn.initialize  # noqa: F401
        assert epynn.dense.models.Dense is Dense
        from epynn.commons.models import Layer
        assert Layer is commons.models.Layer
    finally:
        uninstall()
    assert not installed() and "epynn.dense.models" not in sys.modules or \
        sys.modules["epynn.dense.models"] is not Dense.__module__


def test_initialize_module_has_no_side_effects(tmp_path):
    code = ("import os, sys; hook = sys.excepthook; os.chdir(sys.argv[1]); "
            "import epynn_jax.compat.initialize; "
            "assert sys.excepthook is hook; assert not os.listdir('.')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True,
                   env={**os.environ, "PYTHONPATH": ROOT})


def test_quiet_and_verbose(capsys):
    set_quiet(False)
    emb = Embedding(X_data=X, Y_data=Y, Y_encode=True)
    model = EpyNN([emb, Flatten(), Dense(2, sigmoid)], verbose=False)
    model.train(2)
    assert capsys.readouterr().out == ""
    model = EpyNN([emb, Flatten(), Dense(2, sigmoid)])
    model.train(2)
    out = capsys.readouterr().out
    assert "EpyNN Check" in out and "accuracy" in out and "dtrain" in out and "dval" in out


def test_epoch_table_headers_with_three_sets(capsys):
    set_quiet(False)
    emb = Embedding(X_data=X, Y_data=Y, Y_encode=True, relative_size=(2, 1, 1))
    model = EpyNN([emb, Flatten(), Dense(2, sigmoid)])
    model.initialize(seed=1)
    model.train(1, init_logs=False)
    head = [line for line in capsys.readouterr().out.splitlines() if "dtrain" in line][-1]
    assert head.count("dtrain") == 2 and head.count("dval") == 2 and head.count("dtest") == 2


def test_jax_arrays_are_float32_outside_x64():
    if jax.config.jax_enable_x64:
        pytest.skip("x64 is on in this process")
    model = small_model(epochs=1)
    assert model.layers[2].p["W"].dtype == np.float32


def test_runner_sets_argv_path_and_aliases(tmp_path):
    (tmp_path / "helper_mod.py").write_text("VALUE = 42\n")
    (tmp_path / "script.py").write_text(
        "import sys\n"
        "from helper_mod import VALUE\n"
        "import epynn.network.models as m\n"
        "import epynn_jax.compat.network.models as c\n"
        "assert m.EpyNN is c.EpyNN\n"
        "print('ARGS', sys.argv, VALUE, __name__)\n")
    out = subprocess.run([sys.executable, "-m", "epynn_jax.compat", "script.py", "a", "b"],
                         cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": ROOT, "EPYNN_JAX_NO_CACHE": "1"})
    assert "ARGS ['script.py', 'a', 'b'] 42 __main__" in out.stdout


def test_initialize_refuses_metrics_that_are_not_names():
    """Was: "'int' object is not iterable" (found by the functional API's fuzz)."""
    emb = Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=6)
    model = EpyNN([emb, Flatten(), Dense(2, softmax)], name="metrics")
    with pytest.raises(TypeError, match="EpyNN.initialize: metrics must be a metric name"):
        model.initialize(loss="MSE", metrics=3)
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        model.initialize(loss="MSE", metrics=["auc"])
