"""Property tests: every public entry point either works or raises a clear ValueError/TypeError.

Random shapes, dtypes, label sets, vocabularies, batch sizes, empty splits and
relative sizes go into the data utilities, ``network.build`` and ``fit``.
"Clear" means a ``ValueError``/``TypeError`` (``LayerError`` is one) whose
message names the function or layer that refused, raised before tracing.
``fit`` runs with its compiled epoch replaced by a stub that only *traces* the
real epoch (``jax.eval_shape``), so hundreds of random cases cost no compile.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epynn_jax import layers, network
from epynn_jax.data import dataset
from epynn_jax.layers.base import LayerError

# EPYNN_PROP_EXAMPLES=1000 searches harder (the default keeps the suite fast).
PROPS = settings(max_examples=int(os.environ.get("EPYNN_PROP_EXAMPLES", 40)), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
CLEAR = (ValueError, TypeError)


def _call(fn, *args, name: str, **kwargs):
    """``fn(...)``, or the clear error it raised (its message must name ``name``)."""
    try:
        return fn(*args, **kwargs)
    except CLEAR as err:
        assert name in str(err), f"unclear error from {name}: {type(err).__name__}: {err}"
        return err


ODD_NUMBERS = st.one_of(
    st.integers(-3, 12), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([np.int64(3), np.float32(0.5), True, None, "2", (1,), 2.5]),
)


# -- data utilities -------------------------------------------------------------------------


@PROPS
@given(n=st.integers(0, 12), dy=st.sampled_from([0, 0, 0, 1, -1]),
       rel=st.lists(ODD_NUMBERS, min_size=0, max_size=4) | ODD_NUMBERS)
def test_split_dataset(n, dy, rel):
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    Y = np.arange(max(n + dy, 0), dtype=np.float32)
    out = _call(dataset.split_dataset, X, Y, rel, name="split_dataset")
    if isinstance(out, Exception):
        return
    assert out["dtrain"].X.shape[0] >= 1
    parts = [out[k] for k in ("dtrain", "dval", "dtest") if k in out]
    assert all(p.X.shape[0] >= 1 for p in parts)  # empty splits are left out
    np.testing.assert_array_equal(np.concatenate([p.X for p in parts]), X)
    np.testing.assert_array_equal(np.concatenate([p.Y for p in parts]), Y)


LABELS = st.one_of(
    st.lists(st.integers(-2, 4), max_size=10),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=10),
    st.lists(st.floats(allow_nan=True, allow_infinity=False, width=32), max_size=6),
    st.lists(st.one_of(st.integers(0, 2), st.sampled_from(["a"])), max_size=6),
)


@PROPS
@given(y=LABELS, shape=st.sampled_from(["flat", "column", "row"]),
       classes=st.none() | st.lists(st.integers(-2, 4), max_size=5, unique=True))
def test_one_hot_labels(y, shape, classes):
    arr = np.asarray(y)
    arr = {"flat": arr, "column": arr.reshape(-1, 1), "row": arr.reshape(1, -1)}[shape]
    out = _call(dataset.one_hot_labels, arr, classes, name="one_hot_labels")
    if isinstance(out, Exception):
        return
    encoded, cls = out
    assert encoded.shape == (len(y), len(cls)) and len(cls) >= 1
    assert np.all(encoded.sum(axis=1) == 1)
    assert [cls[i] for i in encoded.argmax(axis=1)] == [c for c in np.asarray(y).tolist()]


SEQUENCES = st.lists(st.lists(st.sampled_from("ACGT") | st.integers(0, 3), min_size=0,
                              max_size=5), max_size=5)


@PROPS
@given(seqs=SEQUENCES, vocab=st.none() | st.lists(st.sampled_from("ACGT"), unique=True))
def test_one_hot_sequences_round_trip(seqs, vocab):
    e2i = None if vocab is None else {e: i for i, e in enumerate(vocab)}
    lengths = {len(s) for s in seqs}
    X = np.array(seqs, dtype=object) if len(lengths) <= 1 else seqs
    out = _call(dataset.one_hot_sequences, X, e2i, name="one_hot_sequences")
    if isinstance(out, Exception):
        return
    encoded, used = out
    assert encoded.shape == (len(seqs), len(seqs[0]) if seqs else 0, len(used))
    i2e = {i: e for e, i in used.items()}
    assert dataset.decode_sequences(encoded, i2e) == [list(s) for s in seqs]


@PROPS
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=8),
       bounds=st.none() | st.tuples(ODD_NUMBERS, ODD_NUMBERS))
def test_scale_features(values, bounds):
    out = _call(dataset.scale_features, np.asarray(values, dtype=np.float32), bounds,
                name="scale_features")
    if isinstance(out, Exception):
        return
    assert out.shape == (len(values),) and np.all(np.isfinite(out))
    if bounds is None:
        assert np.all((out >= 0) & (out <= 1))


@PROPS
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=5), pad=ODD_NUMBERS,
       forward=st.booleans())
def test_padding(shape, pad, forward):
    X = np.ones(shape, dtype=np.float32)
    out = _call(dataset.padding, X, pad, forward, name="padding")
    if isinstance(out, Exception):
        return
    p = int(pad)
    if forward:
        assert out.shape == (shape[0], shape[1] + 2 * p, shape[2] + 2 * p, *shape[3:])
        np.testing.assert_array_equal(dataset.padding(out, p, forward=False), X)
    else:
        assert out.shape == (shape[0], shape[1] - 2 * p, shape[2] - 2 * p, *shape[3:])
        assert min(out.shape[1:3]) >= 1


@PROPS
@given(n=st.integers(0, 10), dy=st.sampled_from([0, 0, 1]), batch_size=ODD_NUMBERS)
def test_batches(n, dy, batch_size):
    X = np.arange(n, dtype=np.float32).reshape(n, 1)
    Y = np.arange(n + dy, dtype=np.float32)
    out = _call(dataset.batches, X, Y, batch_size, np.random.default_rng(0), name="batches")
    if isinstance(out, Exception):
        return
    bs = n if batch_size is None else min(int(batch_size), n)
    assert len(out) == max(n // bs, 1)
    assert all(b.X.shape[0] == bs and np.array_equal(b.X[:, 0], b.Y) for b in out)


@PROPS
@given(n=st.integers(0, 8), rel=st.sampled_from([(2, 1, 0), (1, 1, 1), (0, 1, 0), (1e-9, 1, 0)]),
       X_encode=st.booleans(), Y_encode=st.booleans(), X_scale=st.booleans())
def test_embed(n, rel, X_encode, Y_encode, X_scale):
    rng = np.random.default_rng(n)
    X = rng.integers(0, 3, size=(n, 4)) if not X_scale or X_encode else rng.normal(size=(n, 4))
    Y = rng.integers(0, 2, size=n)
    out = _call(dataset.embed, X, Y, relative_size=rel, X_encode=X_encode, Y_encode=Y_encode,
                X_scale=X_scale, name="")
    if isinstance(out, Exception):
        return
    splits, info = out
    assert sum(s.X.shape[0] for s in splits.values()) == n


# -- network construction -----------------------------------------------------------------------


LAYER = st.one_of(
    st.builds(lambda u, a: ("Dense", u, a), ODD_NUMBERS,
              st.sampled_from(["relu", "softmax", "tanh", "nope", 3])),
    st.builds(lambda p: ("Dropout", p, None), ODD_NUMBERS),
    st.just(("Flatten", None, None)),
    st.just(("Embedding", None, None)),
)


def _make(spec):
    kind, a, b = spec
    if kind == "Dense":
        return layers.Dense(a, b)
    if kind == "Dropout":
        return layers.Dropout(a)
    return getattr(layers, kind)()


@PROPS
@given(specs=st.lists(LAYER, max_size=4),
       input_shape=st.lists(ODD_NUMBERS, max_size=3) | ODD_NUMBERS)
def test_build(specs, input_shape):
    built = []
    for spec in specs:
        layer = _call(_make, spec, name=spec[0])
        if isinstance(layer, Exception):
            return
        built.append(layer)
    net = _call(network.build, built, input_shape, name="")
    if isinstance(net, Exception):
        assert isinstance(net, LayerError) or "input_shape" in str(net) or "layer" in str(net)
        return
    assert all(isinstance(s, int) and s >= 1 for s in net.output_shape)
    assert net.input_shape == tuple(input_shape)
    for layer in net.layers:
        assert all(all(s >= 1 for s in shape) for shape in layer.param_shapes().values())


# -- fit ----------------------------------------------------------------------------------


class Reached(Exception):
    """Raised by the stub once validation has passed and the real epoch has traced."""


def _traced_epochs(net, update, loss, metric_names, batch_size, state, train, splits,
                   check_finite, mesh, eval_chunk, k, pacer):
    def epoch(state, train, splits):
        return network.epoch.run_epochs(net, update, loss, metric_names, batch_size, state,
                                        train, splits, k, guard=True)

    jax.eval_shape(epoch, state, train, splits)
    raise Reached


NET = network.build([layers.Flatten(), layers.Dense(2, "softmax")], (3, 2))
PARAMS = network.init(NET, jax.random.key(0))
DTYPES = st.sampled_from([np.float32, np.float64, np.int32, np.bool_, object, np.complex64,
                          np.float16])


@st.composite
def split(draw, n_max: int):
    n = draw(st.integers(0, n_max))
    xshape = draw(st.sampled_from([(3, 2), (3, 2), (6,), (3, 2, 1)]))
    ycols = draw(st.sampled_from([2, 2, 2, 1, 3]))
    X = draw(st.sampled_from([1.0, 1e300, np.nan, 0.5])) * np.ones((n, *xshape))
    Y = np.zeros((n + draw(st.sampled_from([0, 0, 0, 1])), ycols))
    Y[:, 0] = draw(st.sampled_from([1.0, 1.0, 2.0, -1.0]))
    xdt, ydt = draw(DTYPES), draw(DTYPES)
    with np.errstate(all="ignore"):
        return (X.astype(xdt), Y.astype(ydt))


@PROPS
@given(train=split(10), val=st.none() | split(4),
       batch_size=ODD_NUMBERS, epochs=ODD_NUMBERS,
       loss=st.sampled_from(["MSE", "CCE", "BCE", "nope"]),
       key=st.sampled_from(["key", "raw", 0, None, "bad"]),
       callback=st.sampled_from([None, print, 3]),
       schedule=st.sampled_from(["default", {"learning_rate": 0.1}]),
       params=st.sampled_from(["ok", "short", "shape"]))
def test_fit_works_or_refuses_before_tracing(train, val, batch_size, epochs, loss, key, callback,
                                             schedule, params):
    data = {"dtrain": train} if val is None else {"dtrain": train, "dval": val}
    kw = {"batch_size": batch_size, "epochs": epochs, "loss": loss}
    kw["key"] = {"key": jax.random.key(1), "raw": jax.random.PRNGKey(1), "bad": "seed"}.get(
        key, key)
    if callback is not None:
        kw["callbacks"] = [callback]
    if schedule != "default":
        kw["schedule"] = schedule
    p = {"ok": PARAMS, "short": PARAMS[:1],
         "shape": (PARAMS[0], {"W": PARAMS[1]["W"][:3], "b": PARAMS[1]["b"]})}[params]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(network.fitting, "_epochs", _traced_epochs)
        try:
            network.fit(NET, p, data, **kw)
        except Reached:
            return
        except CLEAR as err:
            assert "fit" in str(err) or "X" in str(err) or "Y" in str(err) or "loss" in str(err) \
                or "Dense" in str(err), f"unclear: {type(err).__name__}: {err}"
            return
    pytest.fail("fit returned without running an epoch")


def test_fit_valid_case_reaches_the_epoch():
    X = np.ones((4, 3, 2), np.float32)
    Y = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
    with pytest.MonkeyPatch.context() as mp, pytest.raises(Reached):
        mp.setattr(network.fitting, "_epochs", _traced_epochs)
        network.fit(NET, PARAMS, {"dtrain": (X, Y)}, epochs=np.int64(2), batch_size=10,
                    loss="CCE")
