"""Build the same EpyNN model with EpyNN 1.2.13 (the oracle) and with the facade."""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings

import numpy as np

LAYER_MODULES = {
    "Embedding": "embedding", "Dense": "dense", "RNN": "rnn", "LSTM": "lstm", "GRU": "gru",
    "Convolution": "convolution", "Pooling": "pooling", "Flatten": "flatten",
    "Dropout": "dropout", "Template": "template",
}


def lib(root: str):
    """Namespace of classes and helpers from ``root`` ('epynn' or 'epynn_jax.compat')."""
    class NS:
        pass

    ns = NS()
    for cls, mod in LAYER_MODULES.items():
        try:
            setattr(ns, cls, getattr(importlib.import_module(f"{root}.{mod}.models"), cls))
        except (ImportError, AttributeError):
            pass
    ns.EpyNN = importlib.import_module(f"{root}.network.models").EpyNN
    ns.maths = importlib.import_module(f"{root}.commons.maths")
    ns.Layer = importlib.import_module(f"{root}.commons.models").Layer
    return ns


def quiet_call(fn, *args, **kwargs):
    """Call ``fn`` with stdout swallowed and warnings ignored."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def run(ns, make_layers, X, Y, *, epochs=3, loss="MSE", seed=3, hpars=None, metrics=None,
        embedding_kw=None, predict_X=None):
    """Build, initialize, train; return a dict of everything to compare."""
    emb = ns.Embedding(X_data=X, Y_data=Y, **(embedding_kw or {}))
    layers = [emb, *make_layers(ns)]
    model = ns.EpyNN(layers=layers, name="parity")
    hp = dict(lib_defaults(ns))
    hp.update(hpars or {})
    quiet_call(model.initialize, loss=loss, seed=seed, se_hPars=hp,
               metrics=list(metrics or ["accuracy"]))
    init_p = [{k: np.array(v, dtype=np.float64) for k, v in layer.p.items()}
              for layer in model.layers]
    quiet_call(model.train, epochs=epochs, init_logs=False)
    out = {
        "init_p": init_p,
        "p": [{k: np.array(v, dtype=np.float64) for k, v in layer.p.items()}
              for layer in model.layers],
        "metrics": {k: [list(map(float, v)) for v in vals] for k, vals in model.metrics.items()},
        "lrate": [list(map(float, getattr(layer, "lrate", []))) for layer in model.layers],
        "model": model,
    }
    if predict_X is not None:
        dset = quiet_call(model.predict, predict_X)
        out["A"], out["P"] = np.asarray(dset.A, dtype=np.float64), np.asarray(dset.P)
    return out


def lib_defaults(ns) -> dict:
    return {"learning_rate": 0.1, "schedule": "steady", "decay_k": 0, "cycle_epochs": 0,
            "cycle_descent": 0, "ELU_alpha": 1, "LRELU_alpha": 0.3, "softmax_temperature": 1}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        a, b = a.reshape(-1), b.reshape(-1)
    return float(np.max(np.abs(a - b) / (np.abs(b) + 1e-9))) if a.size else 0.0


def assert_same(ours: dict, theirs: dict, tol: float = 1e-6) -> None:
    """Same initial weights, rates, metric history, trained weights (and predictions)."""
    for i, (pa, pb) in enumerate(zip(ours["init_p"], theirs["init_p"])):
        assert set(pa) == set(pb), (i, set(pa), set(pb))
        for k in pa:
            assert rel_err(pa[k], pb[k]) < 1e-12, f"initial {k} of layer {i}"
    for la, lb in zip(ours["lrate"], theirs["lrate"]):
        if la and lb:
            np.testing.assert_allclose(la, lb, rtol=1e-12)
    assert set(ours["metrics"]) == set(theirs["metrics"])
    for k in ours["metrics"]:
        for va, vb in zip(ours["metrics"][k], theirs["metrics"][k]):
            np.testing.assert_allclose(va, vb, rtol=tol, atol=1e-12, err_msg=f"metric {k}")
    for i, (pa, pb) in enumerate(zip(ours["p"], theirs["p"])):
        for k in pa:
            assert rel_err(pa[k], pb[k]) < tol, f"trained {k} of layer {i}"
    if "A" in ours:
        assert rel_err(ours["A"], theirs["A"]) < tol
        np.testing.assert_array_equal(ours["P"], theirs["P"])
