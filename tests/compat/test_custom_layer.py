"""A NumPy custom layer written the EpyNN way trains identically under the facade and EpyNN."""

from __future__ import annotations

import numpy as np
import pytest

from tests.compat import helpers

RNG = np.random.default_rng(1)
X = RNG.normal(size=(40, 4))
Y = (X[:, 0] * X[:, 1] > 0).astype(int)


def make_affine(Layer, xp=np):
    """A layer with two parameters: A = tanh(X * s + t), s and t of shape (1, n).

    ``xp`` is the array module its methods use (NumPy, or jax.numpy to be compiled).
    """

    class Affine(Layer):
        def __init__(self):
            super().__init__()
            self.trainable = True

        def compute_shapes(self, A):
            self.fs["X"] = A.shape
            self.d["m"], self.d["n"] = A.shape
            self.fs["s"] = self.fs["t"] = (1, self.d["n"])

        def initialize_parameters(self):
            self.p["s"] = 1.0 + 0.1 * self.np_rng.standard_normal(self.fs["s"])
            self.p["t"] = 0.1 * self.np_rng.standard_normal(self.fs["t"])

        def forward(self, A):
            self.compute_shapes(A)
            X = self.fc["X"] = A
            Z = self.fc["Z"] = X * self.p["s"] + self.p["t"]
            A = self.fc["A"] = xp.tanh(Z)
            self.update_shapes(self.fc, self.fs)
            return A

        def backward(self, dX):
            dA = self.bc["dA"] = dX
            dZ = self.bc["dZ"] = dA * (1 - xp.tanh(self.fc["Z"]) ** 2)
            dX = self.bc["dX"] = dZ * self.p["s"]
            self.update_shapes(self.bc, self.bs)
            return dX

        def compute_gradients(self):
            self.g["ds"] = xp.sum(self.bc["dZ"] * self.fc["X"], axis=0, keepdims=True)
            self.g["dt"] = xp.sum(self.bc["dZ"], axis=0, keepdims=True)

        def update_parameters(self):
            if self.trainable:
                for k, g in self.g.items():
                    self.p[k[1:]] -= self.lrate[self.e] * g

    return Affine


def trained_alike(make) -> dict:
    """The model of ``make(ns)`` trained 3 epochs by EpyNN and by the facade: the same
    numbers (:func:`helpers.assert_same`); returns the facade's run."""
    kw = dict(epochs=3, loss="MSE", seed=11, hpars={"learning_rate": 0.05},
              embedding_kw={"relative_size": (3, 1, 0), "batch_size": 10, "Y_encode": True},
              predict_X=X[:5])
    theirs = helpers.run(helpers.lib("epynn"), make, X, Y, **kw)
    ours = helpers.run(helpers.lib("epynn_jax.compat"), make, X, Y, **kw)
    helpers.assert_same(ours, theirs)
    ours["theirs"] = theirs
    return ours


@pytest.mark.parametrize("position,xp", [("first", "numpy"), ("middle", "numpy"),
                                         ("middle", "jax.numpy")])
def test_custom_layer_parity(position, xp, epynn, x64):
    """EpyNN runs the NumPy layer; the facade runs it eagerly, or compiled when written in jnp."""
    import importlib

    def make(ns):
        mod = importlib.import_module(xp) if ns.Layer.__module__.startswith("epynn_jax") else np
        custom = make_affine(ns.Layer, mod)()
        dense1, dense2 = ns.Dense(5, ns.maths.relu), ns.Dense(2, ns.maths.softmax)
        return [custom, dense1, dense2] if position == "first" else [dense1, custom, dense2]

    ours = trained_alike(make)
    i = 1 if position == "first" else 2
    # the custom layer really trained (its parameters moved), in both
    assert helpers.rel_err(ours["p"][i]["s"], ours["init_p"][i]["s"]) > 1e-6
    mode, reason = ours["model"].layers[i]._mode
    assert mode == ("compiled" if xp == "jax.numpy" else "eager"), reason


def test_init_logs_name_the_mode(x64):
    from epynn_jax.compat.network.logs import init_report

    ns = helpers.lib("epynn_jax.compat")
    emb = ns.Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=10)
    model = ns.EpyNN([emb, make_affine(ns.Layer)(), ns.Dense(2, ns.maths.softmax)],
                     verbose=False)
    model.initialize(seed=2)
    model.train(1, init_logs=False)
    text = init_report(model)
    assert "eager NumPy" in text and "custom layer" in text and "compiled" in text


def test_traced_custom_layer_opt_out_and_rng_guard(x64):
    import jax.numpy as jnp

    ns = helpers.lib("epynn_jax.compat")
    emb = ns.Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=10)
    off = make_affine(ns.Layer, jnp)()
    off.jit = False

    class Noisy(make_affine(ns.Layer, jnp)):
        def forward(self, A):  # draws from np_rng: must not be frozen into compiled code
            return super().forward(A * self.np_rng.uniform(0.9, 1.1, size=A.shape))

    noisy = Noisy()
    model = ns.EpyNN([emb, off, noisy, ns.Dense(2, ns.maths.softmax)], verbose=False)
    model.initialize(seed=2)
    assert off._mode == ("eager", "jit = False")
    assert noisy._mode[0] == "eager"
    model.train(1, init_logs=False)


def make_variant(kind: str, Layer, xp=np):
    """An Affine layer (above) that also does what a compiled epoch cannot reproduce:
    reads the epoch, counts its calls, keeps a momentum buffer, or names its gradients
    its own way. Written with ``xp`` (jax.numpy: it traces, yet must run eagerly)."""
    Base = make_affine(Layer, xp)

    class Variant(Base):
        def scale(self):
            if kind == "epoch":
                return 1.0 + 0.1 * getattr(self, "e", 0)
            return 1.0 + 0.01 * getattr(self, "calls", 0) if kind == "counter" else 1.0

        def forward(self, A):
            if kind == "counter":
                self.calls = getattr(self, "calls", 0) + 1
            return super().forward(A * self.scale())

        def backward(self, dX):
            return super().backward(dX) * self.scale()

        def compute_gradients(self):
            if kind == "gkey":
                self.g = {}
            super().compute_gradients()
            if kind == "gkey":
                self.g = {"grad_" + k[1:]: v for k, v in self.g.items()}

        def update_parameters(self):
            if kind == "momentum":
                v = self.__dict__.setdefault("v", {})
                for k, g in self.g.items():
                    v[k] = 0.5 * v.get(k, 0.0) + g
                    self.p[k[1:]] = self.p[k[1:]] - self.lrate[self.e] * v[k]
            elif kind == "gkey":
                for k, g in self.g.items():
                    self.p[k[5:]] = self.p[k[5:]] - self.lrate[self.e] * g
            else:
                super().update_parameters()

    return Variant


@pytest.mark.parametrize("kind, reason", [("epoch", "use the epoch e (beyond lrate[e])"),
                                          ("counter", "keep state on the layer (calls)"),
                                          ("momentum", "keep state on the layer (v)"),
                                          ("gkey", "not keyed 'd' + parameter name")])
def test_a_layer_a_compiled_epoch_cannot_reproduce_runs_eagerly_with_epynns_numbers(
        kind, reason, epynn, x64):
    import jax.numpy as jnp

    def make(ns):
        xp = jnp if ns.Layer.__module__.startswith("epynn_jax") else np
        return [ns.Dense(5, ns.maths.relu), make_variant(kind, ns.Layer, xp)(),
                ns.Dense(2, ns.maths.softmax)]

    ours = trained_alike(make)
    mode, why = ours["model"].layers[2]._mode
    assert mode == "eager" and reason in why, why
    if kind in ("counter", "momentum"):  # the probe's trace left nothing in the object
        layer, other = ours["model"].layers[2], ours["theirs"]["model"].layers[2]
        assert getattr(layer, "calls", None) == getattr(other, "calls", None)
        assert all(np.asarray(v).dtype.kind == "f" for v in getattr(layer, "v", {}).values())


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the NumPy layer's NaN
def test_an_eager_models_divergence_stops_with_one_line(capsys):
    ns = helpers.lib("epynn_jax.compat")
    emb = ns.Embedding(X_data=X * 1e3, Y_data=Y, Y_encode=True, batch_size=10)
    model = ns.EpyNN([emb, make_affine(ns.Layer)(), ns.Dense(2, ns.maths.identity)],
                     verbose=False)
    model.initialize(loss="MSE", seed=2, se_hPars={**helpers.lib_defaults(ns),
                                                  "learning_rate": 1e30})
    model.train(2, init_logs=False)
    assert model.diverged is not None and model.diverged.epoch == 0
    assert capsys.readouterr().err.count("EpyNN.train: stopped at epoch 0") == 1


def test_a_backward_that_returns_another_shape_is_named():
    ns = helpers.lib("epynn_jax.compat")

    class Slice(make_affine(ns.Layer)):
        def backward(self, dX):
            return super().backward(dX)[:, :-1]

    emb = ns.Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=10)
    model = ns.EpyNN([emb, ns.Dense(4, ns.maths.tanh), Slice(), ns.Dense(2, ns.maths.softmax)],
                     verbose=False)
    with pytest.raises(ValueError, match=r"layer 2 \(Slice\)\.backward returned dX of shape "
                                         r"\(10, 3\); its input had shape \(10, 4\)"):
        model.initialize(seed=1)


def test_a_subclass_of_a_builtin_that_overrides_its_methods_is_refused():
    ns = helpers.lib("epynn_jax.compat")
    with pytest.raises(TypeError, match="Double subclasses the built-in layer Template and "
                                        "overrides forward"):
        class Double(ns.Template):
            def forward(self, A):
                return 2 * A

    class Quiet(ns.Template):  # a constructor of its own is fine
        def __init__(self):
            super().__init__()
            self.note = "mine"

    assert Quiet().note == "mine"


def test_a_read_model_restores_a_custom_layers_dimensions(tmp_path):
    from epynn_jax.compat.commons.library import read_model

    ns = helpers.lib("epynn_jax.compat")

    class Dims(make_affine(ns.Layer)):
        def forward(self, A):  # reads d, which compute_shapes filled (EpyNN's convention)
            assert self.d["n"] == A.shape[1]
            return super().forward(A)

        def compute_shapes(self, A):
            super().compute_shapes(A)

    emb = ns.Embedding(X_data=X, Y_data=Y, Y_encode=True, batch_size=10)
    model = ns.EpyNN([emb, Dims(), ns.Dense(2, ns.maths.softmax)], verbose=False)
    model.initialize(seed=1)
    model.train(1, init_logs=False)
    before = model.predict(X[:4]).A
    model.write(str(tmp_path / "m.epynn"))
    again = read_model(str(tmp_path / "m.epynn"), custom_layers={"Dims": Dims})
    assert again.layers[1].d["n"] == 4
    np.testing.assert_allclose(again.predict(X[:4]).A, before, rtol=1e-6)


def test_the_trace_probe_sees_and_undoes_containers_changed_in_place():
    from epynn_jax.compat import _traced

    class Obj:
        pass

    o = Obj()
    seen, table, count = [1], {"a": 1}, 3
    o.seen, o.table, o.count, o.p = seen, table, count, {}
    before = _traced._snapshot(o)
    o.seen.append(2)
    o.table["b"] = 2
    o.extra, o.p = "new", {"W": 1}  # p is one of EpyNN's dicts: swapped, not watched
    assert _traced._changed(before, o) == ["extra", "seen", "table"]
    _traced._restore(o, before)
    assert o.seen is seen and seen == [1] and o.table is table and table == {"a": 1}
    assert not hasattr(o, "extra") and _traced._changed(before, o) == []
