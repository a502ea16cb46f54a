"""Evaluation in chunks inside the compiled epoch: the metrics of one forward over each set,
memory bounded by the chunk, one trace of the forward per split."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.maths import losses
from epynn_jax.maths import metrics as metrics_lib
from epynn_jax.network import epoch

FORMULAS = {
    "recall": lambda tp, fp, tn, fn: tp / (tp + fn),
    "precision": lambda tp, fp, tn, fn: tp / (tp + fp),
    "fscore": lambda tp, fp, tn, fn: tp / (tp + 0.5 * (fp + fn)),
    "specificity": lambda tp, fp, tn, fn: tn / (tn + fp),
    "NPV": lambda tp, fp, tn, fn: tn / (tn + fn),
}
CLASSIFICATION = ["accuracy", *FORMULAS, *(f"{k}_macro" for k in FORMULAS)]


def reference(name: str, Y: np.ndarray, A: np.ndarray) -> float:
    """Metric ``name`` of the whole set in NumPy (EpyNN's definitions, see maths/metrics.py)."""
    if name in losses.LOSSES:  # the loss functions are tested on their own
        return float(np.mean(np.asarray(losses.loss(name, jnp.asarray(Y), jnp.asarray(A)))))
    Y2, A2 = Y.reshape(len(Y), -1), A.reshape(len(A), -1)
    if Y2.shape[1] > 1:
        P, y = A2.argmax(1), Y2.argmax(1)
    else:
        P, y = np.round(A2[:, 0]), Y2[:, 0]
    if name == "accuracy":
        return float(np.mean(P == y))
    with np.errstate(all="ignore"):
        if name in FORMULAS:
            counts = [np.sum((P == p) & (y == t)) for p, t in ((0, 0), (0, 1), (1, 1), (1, 0))]
            return float(FORMULAS[name](*np.array(counts, float)))
        values = []
        for c in range(max(Y2.shape[1], 2)):
            if not (np.any(P == c) or np.any(y == c)):
                continue
            pp, py = P == c, y == c
            counts = np.array([np.sum(pp & py), np.sum(pp & ~py), np.sum(~pp & ~py),
                               np.sum(~pp & py)], float)
            values.append(FORMULAS[name[: -len("_macro")]](*counts))
        return float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")


def _onehot_net():
    return network.build([layers.Dense(6, "tanh"), layers.Dense(3, "softmax")], (5,))


def _binary_net():
    return network.build([layers.Dense(6, "tanh"), layers.Dense(1, "sigmoid")], (5,))


def _data(m, units, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 5))
    Y = np.eye(units)[rng.integers(0, units, m)] if units > 1 else rng.integers(0, 2, (m, 1))
    return X, Y.astype(float)


CASES = [(_onehot_net, 3, "CCE"), (_binary_net, 1, "BCE")]


@pytest.mark.parametrize("make,units,loss", CASES)
@pytest.mark.parametrize("chunk", [1, 5, 7, 64])
def test_fit_scores_equal_one_forward_over_each_set(x64, make, units, loss, chunk):
    """Every metric and loss, splits of 23, 17 and 8 samples (not multiples of the chunk;
    the chunk also larger than every split), float64: the history after one epoch is the
    metric of one forward over each set with the trained parameters."""
    net = make()
    data = {"dtrain": _data(23, units, 0), "dval": _data(17, units, 1),
            "dtest": _data(8, units, 2)}
    names = [*CLASSIFICATION, *losses.LOSSES]
    result = network.fit(net, network.init(net, jax.random.key(0)), data, epochs=1,
                         batch_size=5, loss=loss, metrics=names, eval_chunk=chunk,
                         check_finite=False)  # an empty denominator's NaN is expected here
    for split, (X, Y) in data.items():
        A = np.asarray(network.predict(net, result.params, X))
        for name in names:
            got = result.history[name][split][0]
            np.testing.assert_allclose(got, reference(name, Y, A), rtol=1e-12, atol=1e-15,
                                       err_msg=f"{name} on {split} (chunk {chunk})")


@pytest.mark.parametrize("n,chunk", [(10, 3), (11, 3), (12, 4), (5, 2), (9, 100), (31, 8)])
def test_evaluate_counts_every_sample_once(x64, n, chunk):
    """Sums (the number of samples, correct decisions, the summed loss) are exact: each sample
    counted once, though the last chunk overlaps the one before."""
    net = _onehot_net()
    params = network.init(net, jax.random.key(1))
    X, Y = _data(n, 3, 3)
    got = jax.jit(lambda p: epoch.evaluate(net, p, X, Y, ("accuracy", "MSE", "recall_macro"),
                                           chunk))(params)
    A = np.asarray(network.predict(net, params, X))
    for name in ("accuracy", "MSE", "recall_macro"):
        np.testing.assert_allclose(float(got[name]), reference(name, Y, A), rtol=1e-13)


def test_statistics_of_parts_add_up_to_the_whole(x64):
    net = _onehot_net()
    X, Y = _data(30, 3, 4)
    A = network.predict(net, network.init(net, jax.random.key(2)), X)
    names = tuple(CLASSIFICATION) + ("MSE", "CCE")
    whole = metrics_lib.statistics(names, jnp.asarray(Y), A)
    mask = np.arange(30) % 3 == 0
    parts = [metrics_lib.statistics(names, jnp.asarray(Y), A, jnp.asarray(m))
             for m in (mask, ~mask)]
    summed = jax.tree.map(jnp.add, *parts)
    for key in whole:
        np.testing.assert_allclose(np.asarray(summed[key]), np.asarray(whole[key]), rtol=1e-13)
    assert int(whole["n"]) == 30 and int(parts[0]["n"]) == 10


def test_memory_is_bounded_by_the_chunk_not_the_set():
    """The compiled epoch's scratch memory (XLA's memory analysis) stays the same when the
    evaluated set grows 4x with a fixed chunk; in one forward over the set (the
    convolution's patches of every sample at once) it grows with the set."""
    net = network.build([layers.Convolution(4, (3, 3)), layers.Flatten(),
                         layers.Dense(3, "softmax")], (12, 12, 1))
    params = network.init(net, jax.random.key(0))
    opt = network.epynn_sgd(network.optim.Schedule(), 1, 1)
    state = network.TrainState(params, opt.init(params), jax.random.key(1))

    def arrays(n):
        return (jax.ShapeDtypeStruct((n, 12, 12, 1), jnp.float32),
                jax.ShapeDtypeStruct((n, 3), jnp.float32))

    def scratch(n, chunk):
        compiled = network.run_epoch.lower(net, opt.update, "MSE", ("accuracy", "MSE"), 64,
                                           state, arrays(64), {"dval": arrays(n)},
                                           eval_chunk=chunk).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    chunked = [scratch(n, 128) for n in (2048, 8192)]
    whole = [scratch(n, n) for n in (2048, 8192)]
    assert chunked[1] == chunked[0], chunked
    assert whole[1] > 3 * whole[0], whole           # the measure sees the set's size
    assert chunked[1] < whole[0] / 4, (chunked, whole)


def _traced_forwards(monkeypatch, net) -> list:
    """The input shapes of every evaluation forward traced from now on (a list that
    grows); the network's cached shape trace is taken first, out of the count."""
    epoch.eval_chunk(net)
    calls = []
    original = epoch.forward

    def counting(*args, **kwargs):
        calls.append(args[2].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(epoch, "forward", counting)
    return calls


def test_forward_is_traced_once_per_split_whatever_the_chunks(monkeypatch):
    """One fit with 3 chunks per split: the evaluation forward is traced once per split
    (inside the loop over chunks), not once per chunk."""
    net = network.build([layers.Dense(9, "relu"), layers.Dense(2, "softmax")], (5,))
    calls = _traced_forwards(monkeypatch, net)
    data = {"dtrain": _data(30, 2, 5), "dval": _data(20, 2, 6)}
    network.fit(net, network.init(net, jax.random.key(0)), data, epochs=2, batch_size=10,
                eval_chunk=10)
    assert calls == [(10, 5), (10, 5)]  # dtrain (3 chunks), dval (2 chunks): 10 rows each


def test_default_chunk_follows_the_byte_budget():
    net = network.build([layers.Dense(10, "relu"), layers.Dense(2, "softmax")], (100,))
    # one sample: X 100, fc of Dense(10): X 100, Z 10, A 10; of Dense(2): X 10, Z 2, A 2;
    # output 2 -> 236 floats
    per_sample = 236 * 4
    assert epoch.eval_chunk(net, budget=per_sample * 1000) == 1000
    assert epoch.eval_chunk(net, budget=10) == 1
    assert epoch.eval_chunk(net, platform="cpu") == epoch.EVAL_CHUNK_BYTES["cpu"] // per_sample
    assert epoch.eval_chunk(net, platform="gpu") == (epoch.EVAL_CHUNK_BYTES["default"]
                                                     // per_sample)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_chunk_is_a_clear_error(bad):
    net = _binary_net()
    with pytest.raises(ValueError, match="eval_chunk"):
        network.fit(net, network.init(net, jax.random.key(0)),
                    {"dtrain": _data(10, 1, 0)}, epochs=1, eval_chunk=bad)
    with pytest.raises(ValueError, match="chunk"):
        epoch.evaluate(net, network.init(net, jax.random.key(0)), *map(jnp.asarray,
                       _data(10, 1, 0)), ("accuracy",), bad)


@pytest.mark.parametrize("n,chunk", [(10, 3), (12, 4), (7, 100), (31, 8)])
def test_predict_in_chunks_is_the_output_of_one_forward(x64, n, chunk):
    net = _onehot_net()
    params = network.init(net, jax.random.key(4))
    X, _ = _data(n, 3, 7)
    whole = np.asarray(network.forward(net, params, jnp.asarray(X))[0])
    got = np.asarray(network.predict(net, params, X, chunk=chunk))
    assert got.shape == whole.shape
    np.testing.assert_allclose(got, whole, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="chunk"):
        network.predict(net, params, X, chunk=0)


RECURRENT = {"RNN": lambda: layers.RNN(4), "LSTM": lambda: layers.LSTM(4),
             "GRU": lambda: layers.GRU(4)}


def _recurrent_net(kind):
    return network.build([RECURRENT[kind](), layers.Dense(3, "softmax")], (6, 2))


def _sequences(m, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 6, 2)), np.eye(3)[rng.integers(0, 3, m)]


@pytest.mark.parametrize("kind", sorted(RECURRENT))
@pytest.mark.parametrize("chunk", [None, 20, 7])
def test_recurrent_splits_share_one_forward_with_the_same_scores(x64, kind, chunk):
    """A recurrent network's splits (23 + 17 + 8 samples) are evaluated as one set, their
    concatenation: in one forward (chunk None) or in chunks of 20 or 7 rows, some
    holding rows of two splits. Every metric is the one of a forward over each set, in
    float64."""
    net = _recurrent_net(kind)
    data = {"dtrain": _sequences(23, 0), "dval": _sequences(17, 1), "dtest": _sequences(8, 2)}
    names = ["accuracy", "precision_macro", "CCE", "MSE"]
    result = network.fit(net, network.init(net, jax.random.key(0)), data, epochs=1,
                         batch_size=5, loss="CCE", metrics=names, eval_chunk=chunk)
    for split, (X, Y) in data.items():
        A = np.asarray(network.predict(net, result.params, X))
        for name in names:
            np.testing.assert_allclose(result.history[name][split][0], reference(name, Y, A),
                                       rtol=1e-12, atol=1e-15, err_msg=f"{name} on {split}")


@pytest.mark.parametrize("chunk, shapes", [
    (None, [(40, 6, 2)]),   # both splits (25 + 15) in one forward
    (20, [(20, 6, 2)]),     # one loop over 2 chunks of 20 rows, for both splits
    (25, [(25, 6, 2), (15, 6, 2)]),  # each split one forward; sharing would add a loop
    (7, [(7, 6, 2)]),       # 6 chunks of 7 rows (the last overlapping), chunk 4 holds both
])
def test_recurrent_evaluation_is_traced_once_for_all_splits(monkeypatch, chunk, shapes):
    net = _recurrent_net("GRU")
    assert net.sequential and not _onehot_net().sequential
    calls = _traced_forwards(monkeypatch, net)
    data = {"dtrain": _sequences(25, 5), "dval": _sequences(15, 6)}
    network.fit(net, network.init(net, jax.random.key(0)), data, epochs=2, batch_size=5,
                loss="CCE", eval_chunk=chunk)
    assert calls == shapes


def test_only_the_recurrent_layers_are_sequential():
    flagged = {name for name in layers.__all__
               if isinstance(getattr(layers, name), type)
               and issubclass(getattr(layers, name), layers.Layer)
               and getattr(layers, name).sequential}
    assert flagged == {"RNN", "LSTM", "GRU"}
