"""Data utilities against EpyNN's rules: split sizes, encodings, scaling, padding, batches."""

from __future__ import annotations

import numpy as np
import pytest

from epynn_jax.data import dataset as ds


@pytest.fixture(scope="module")
def E():
    from conftest import load_epynn

    load_epynn()
    from epynn.commons import io
    from epynn.embedding import dataset

    return dict(io=io, dataset=dataset)


def _epynn_split(E, n, rel):
    se = {"dtrain_relative": rel[0], "dval_relative": rel[1], "dtest_relative": rel[2]}
    return [len(part) for part in E["dataset"].split_dataset(list(range(n)), se)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10, 33, 50, 99, 100, 101, 480, 1024])
@pytest.mark.parametrize("rel", [(2, 1, 0), (1, 1, 1), (3, 1, 1), (1, 0, 0), (2, 1, 1),
                                 (0.7, 0.2, 0.1), (5, 3, 2), (1, 2, 1)])
def test_split_sizes_match_epynn(E, n, rel):
    expected = _epynn_split(E, n, rel)
    if expected[0] == 0:
        with pytest.raises(ValueError, match="gives no training sample"):
            ds.split_dataset(np.arange(n), np.arange(n), rel)
        return
    X = np.arange(n)
    out = ds.split_dataset(X, X * 10, rel)
    sizes = [len(out[k].X) if k in out else 0 for k in ("dtrain", "dval", "dtest")]
    assert sizes == expected
    # In order, no shuffle, X and Y aligned.
    np.testing.assert_array_equal(np.concatenate([out[k].X for k in out]), X)
    for part in out.values():
        np.testing.assert_array_equal(part.Y, part.X * 10)


def test_split_two_sizes_and_bankers_rounding():
    out = ds.split_dataset(np.arange(5), np.arange(5), (1, 1))
    # round(2.5) == 2 for both (half to even, as EpyNN); the remainder goes to dtest even
    # though its relative size is 0 (EpyNN's rule: test = the rest).
    assert [len(out[k].X) for k in ("dtrain", "dval", "dtest")] == [2, 2, 1]


@pytest.mark.parametrize("rel,match", [((1, -1, 0), "non-negative"), ((0, 0, 0), "positive sum"),
                                       ((1,), "2 or 3"), ((1, float("nan"), 0), "non-negative")])
def test_split_bad_relative_sizes(rel, match):
    with pytest.raises(ValueError, match=match):
        ds.split_dataset(np.arange(4), np.arange(4), rel)


def test_split_errors():
    with pytest.raises(ValueError, match="X has 4 samples but Y has 3"):
        ds.split_dataset(np.arange(4), np.arange(3))
    with pytest.raises(ValueError, match="X has no samples"):
        ds.split_dataset(np.zeros((0, 2)), np.zeros(0))


def test_vocabulary_sorted_like_epynn(E):
    X = np.array([list("TGCA"), list("GATT"), list("CCGA")])
    e2i, i2e, size = ds.index_elements(X)
    assert (e2i, i2e, size) == E["io"].index_elements_auto(X)
    assert list(e2i) == ["A", "C", "G", "T"] and size == 4


def test_one_hot_sequences_match_epynn(E):
    rng = np.random.default_rng(0)
    X = rng.choice(list("ATGC"), (5, 7))
    enc, e2i = ds.one_hot_sequences(X)
    theirs = np.array(E["io"].encode_dataset(X, *E["io"].index_elements_auto(X)[0::2]))
    assert enc.shape == (5, 7, 4)
    np.testing.assert_array_equal(enc, theirs)
    assert ds.decode_sequences(enc, {i: e for e, i in e2i.items()}) == X.tolist()


def test_one_hot_sequences_with_vocabulary_and_errors():
    enc, _ = ds.one_hot_sequences([["a", "b"]], {"a": 0, "b": 1, "c": 2})
    np.testing.assert_array_equal(enc, [[[1, 0, 0], [0, 1, 0]]])
    with pytest.raises(ValueError, match="element 'z' is not in the vocabulary"):
        ds.one_hot_sequences([["a", "z"]], {"a": 0})
    with pytest.raises(ValueError, match=r"expected \(m, steps\) sequences"):
        ds.one_hot_sequences(np.zeros((2, 3, 4)))


def test_one_hot_labels():
    Y, classes = ds.one_hot_labels([1, 0, 1, 1])
    np.testing.assert_array_equal(Y, np.eye(2)[[1, 0, 1, 1]])
    assert classes == [0, 1]
    # Labels are mapped through their sorted order (EpyNN would need 0..K-1).
    Y, classes = ds.one_hot_labels(np.array([[2], [7], [2]]))
    np.testing.assert_array_equal(Y, [[1, 0], [0, 1], [1, 0]])
    assert classes == [2, 7]
    Y, _ = ds.one_hot_labels(["b", "a"], classes=["a", "b", "c"])
    np.testing.assert_array_equal(Y, [[0, 1, 0], [1, 0, 0]])


def test_one_hot_labels_errors():
    with pytest.raises(ValueError, match=r"labels \[5\] not in classes \[0, 1\]"):
        ds.one_hot_labels([0, 5], classes=[0, 1])
    with pytest.raises(ValueError, match=r"expected labels of shape \(m,\)"):
        ds.one_hot_labels(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        ds.one_hot_labels([0.0, np.nan])


def test_one_hot_labels_match_epynn_for_0_to_k():
    y = np.random.default_rng(1).integers(0, 4, 30)
    y[:4] = [0, 1, 2, 3]
    np.testing.assert_array_equal(ds.one_hot_labels(y)[0], np.eye(4)[y])


def test_scale_features_matches_epynn(E):
    X = np.random.default_rng(2).normal(3, 2, (6, 5, 2))
    np.testing.assert_allclose(ds.scale_features(X), E["io"].scale_features(X), rtol=1e-15)
    assert ds.scale_features(X).min() == 0 and ds.scale_features(X).max() == 1


def test_scale_features_bounds_constant_and_errors():
    np.testing.assert_allclose(ds.scale_features([2.0, 4.0], bounds=(0.0, 8.0)), [0.25, 0.5])
    np.testing.assert_array_equal(ds.scale_features(np.full((2, 2), 3.0)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        ds.scale_features([1.0, np.inf])


@pytest.mark.parametrize("pad", [1, 2])
def test_padding_matches_epynn(E, pad):
    X = np.random.default_rng(3).standard_normal((2, 4, 5, 3))
    padded = ds.padding(X, pad)
    np.testing.assert_array_equal(padded, E["io"].padding(X, pad))
    assert padded.shape == (2, 4 + 2 * pad, 5 + 2 * pad, 3)
    np.testing.assert_array_equal(ds.padding(padded, pad, forward=False), X)
    np.testing.assert_array_equal(ds.padding(padded, pad, forward=False),
                                  E["io"].padding(padded, pad, forward=False))


def test_padding_zero_and_errors():
    X = np.ones((1, 2, 2, 1))
    np.testing.assert_array_equal(ds.padding(X, 0), X)
    np.testing.assert_array_equal(ds.padding(X, 0, forward=False), X)
    with pytest.raises(ValueError, match=r"expected \(m, h, w, \.\.\.\)"):
        ds.padding(np.ones((2, 3)), 1)
    with pytest.raises(ValueError, match="pad must be >= 0"):
        ds.padding(X, -1)


@pytest.mark.parametrize("n,bs,nb", [(40, 16, 2), (23, 5, 4), (10, 10, 1), (7, 20, 1),
                                     (9, None, 1)])
def test_batches_drop_remainder(n, bs, nb):
    X = np.arange(n)
    out = ds.batches(X, X * 2, bs, np.random.default_rng(0))
    size = n if bs is None else min(bs, n)
    assert len(out) == nb and all(len(b.X) == size for b in out)
    seen = np.concatenate([b.X for b in out])
    assert len(set(seen.tolist())) == len(seen)            # no sample twice
    assert len(seen) == nb * size                          # the remainder is dropped
    for b in out:
        np.testing.assert_array_equal(b.Y, b.X * 2)


def test_batches_shuffle_with_generator():
    X = np.arange(50)
    a = ds.batches(X, X, 10, np.random.default_rng(5))
    b = ds.batches(X, X, 10, np.random.default_rng(5))
    c = ds.batches(X, X, 10, np.random.default_rng(6))
    assert all(np.array_equal(x.X, y.X) for x, y in zip(a, b))
    assert not all(np.array_equal(x.X, y.X) for x, y in zip(a, c))
    assert not np.array_equal(np.concatenate([x.X for x in a]), X)


def test_batches_errors():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ds.batches(np.arange(3), np.arange(3), 0)


def test_embed_pipeline_like_epynn():
    rng = np.random.default_rng(4)
    X = rng.choice(list("ATGC"), (12, 5))
    y = rng.integers(0, 2, 12)
    splits, info = ds.embed(X, y, relative_size=(2, 1, 1), X_encode=True, Y_encode=True)
    assert [len(splits[k].X) for k in ("dtrain", "dval", "dtest")] == [6, 3, 3]
    assert splits["dtrain"].X.shape == (6, 5, 4) and splits["dtrain"].Y.shape == (6, 2)
    assert list(info["element_to_idx"]) == ["A", "C", "G", "T"] and info["classes"] == [0, 1]
    np.testing.assert_array_equal(splits["dval"].Y.argmax(1), y[6:9])
    # Without Y_encode 1-D labels become a column, as EpyNN's dataSet does.
    splits, info = ds.embed(rng.standard_normal((6, 3)) * 5, y[:6], relative_size=(1, 0, 0),
                            X_scale=True)
    assert splits["dtrain"].Y.shape == (6, 1)
    assert splits["dtrain"].X.min() == 0 and splits["dtrain"].X.max() == 1
    assert set(info) == {"scale_bounds"}


# -- bad input is refused with an error naming the function and the argument ------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["X", "Y"])
def test_embed_refuses_nan_and_inf(where, bad):
    X, Y = np.ones((3, 2)), np.array([0.0, 1.0, 0.0])
    (X if where == "X" else Y)[1] = bad
    with pytest.raises(ValueError, match=f"embed: {where} contains NaN or inf"):
        ds.embed(X, Y)


def test_embed_refuses_none_in_an_object_array():
    X = np.array([[None, 1], [2, 3], [4, 5]], dtype=object)
    with pytest.raises(ValueError, match="embed: X contains None"):
        ds.embed(X, [0, 1, 0])
    with pytest.raises(ValueError, match="embed: Y contains None"):
        ds.embed(np.ones((3, 1)), [0, None, 1])


def test_embed_refuses_non_numeric_and_ragged_data_without_encoding():
    with pytest.raises(TypeError, match="embed: X must be numeric.*X_encode=True"):
        ds.embed(np.array([["a", "b"]] * 3), [0, 1, 0])
    with pytest.raises(TypeError, match="embed: Y must be numeric.*Y_encode=True"):
        ds.embed(np.ones((3, 2)), ["x", "y", "x"])
    with pytest.raises(TypeError, match="embed: X holds a non-numeric value 'a'.*X_encode"):
        ds.embed(np.array([["a", 1]] * 3, dtype=object), [0, 1, 0])
    with pytest.raises(ValueError, match="embed: X must be a rectangular array"):
        ds.embed(([1, 2], [3]), [0, 1])
    # The same data is fine when it is encoded.
    splits, _ = ds.embed(np.array([["a", "b"]] * 3), ["x", "y", "x"], relative_size=(1, 0, 0),
                         X_encode=True, Y_encode=True)
    assert splits["dtrain"].X.shape == (3, 2, 2) and splits["dtrain"].Y.shape == (3, 2)


def test_embed_refuses_values_beyond_float32():
    with pytest.raises(ValueError, match="embed: X has values beyond float32's range"):
        ds.embed(np.array([[1e300], [1.0], [2.0]]), [0, 1, 0])


def test_complex_data_is_refused_not_truncated():
    with pytest.raises(TypeError, match=r"embed: X is complex \(complex128\)"):
        ds.embed(np.array([[1 + 5j, 1], [2, 3], [4, 5]]), [0, 1, 0])
    with pytest.raises(TypeError, match="embed: X holds a complex value"):
        ds.embed(np.array([[1 + 5j, 1], [2, 3], [4, 5]], dtype=object), [0, 1, 0])
    with pytest.raises(TypeError, match="embed: Y is complex"):
        ds.embed(np.ones((2, 1)), np.array([1j, 1]))
    with pytest.raises(TypeError, match="scale_features: X is complex"):
        ds.scale_features(np.array([1 + 5j, 2 - 7j]))
    with pytest.raises(TypeError, match="embed: X is complex"):
        ds.embed(np.array([[1 + 5j], [2], [3]]), [0, 1, 0], X_scale=True)


def test_batches_rng_is_a_generator_an_int_seed_or_none():
    X = np.arange(40)
    order = [np.concatenate([b.X for b in ds.batches(X, X, 10, rng=seed)]) for seed in (0, 0, 42)]
    np.testing.assert_array_equal(order[0], order[1])          # seed 0 is a seed, not "none"
    assert not np.array_equal(order[0], order[2])
    # An int seed gives what a Generator seeded with it gives.
    expected = np.random.default_rng(42).permutation(40)
    np.testing.assert_array_equal(order[2], expected)
    assert len(ds.batches(X, X, 10, rng=None)) == 4
    for bad in (1.5, "0", True, np.random.RandomState(0)):
        with pytest.raises(TypeError, match="batches: rng must be a numpy Generator, an int "
                                            "seed or None"):
            ds.batches(X, X, 10, rng=bad)
    with pytest.raises(ValueError, match="batches: the rng seed must be >= 0"):
        ds.batches(X, X, 10, rng=-1)


def test_scale_features_needs_numbers_and_bounds_with_a_span():
    with pytest.raises(TypeError, match="scale_features: X must be numeric, got None"):
        ds.scale_features(None)
    with pytest.raises(TypeError, match="scale_features: X must be numeric, got dtype <U"):
        ds.scale_features(["a", "b"])
    with pytest.raises(ValueError, match=r"bounds \(5.0, 5.0\) have no span.*spans \[-3.0, 10.0\]"):
        ds.scale_features([1.0, 10.0, -3.0], bounds=(5.0, 5.0))
    # Bounds of a constant training set still scale that constant, to zeros.
    np.testing.assert_array_equal(ds.scale_features([5.0, 5.0], bounds=(5.0, 5.0)), [0.0, 0.0])
    with pytest.raises(ValueError, match="min <= max"):
        ds.scale_features([1.0, 2.0], bounds=(2.0, 1.0))


def test_scale_features_bounds_of_mixed_types_compare_as_floats():
    """A float32 bound against an int beyond float32 (found by the fuzz test: NumPy cast
    the int to float32, with an overflow warning, to compare them); an int beyond every
    float is a ValueError naming the bounds (it was NumPy's TypeError from isfinite)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(
            ds.scale_features([1.0, 3.0], bounds=(np.float32(1.0), 10**40)), [0.0, 2e-40])
    with pytest.raises(ValueError, match=r"bounds must be \(min, max\) finite numbers"):
        ds.scale_features([1.0, 2.0], bounds=(0, 10**400))


def test_index_elements_refuses_empty_input_and_nan():
    for empty in ([], np.zeros((0, 3))):
        with pytest.raises(ValueError, match="index_elements: X is empty"):
            ds.index_elements(empty)
    with pytest.raises(ValueError, match="index_elements: elements contain NaN"):
        ds.index_elements(np.array([np.nan, 1.0, np.nan]))
    with pytest.raises(ValueError, match="one_hot_sequences: elements contain NaN"):
        ds.one_hot_sequences(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="one_hot_labels: labels contain NaN or inf"):
        ds.one_hot_labels(np.array([np.nan, 1.0], dtype=object))


@pytest.mark.parametrize("bad,error,match", [
    (0, TypeError, "classes must be a list, tuple or 1-D array"),
    ("ab", TypeError, "classes must be a list, tuple or 1-D array"),
    (np.zeros((2, 2)), TypeError, "classes must be a list, tuple or 1-D array"),
    ([[0], [1]], TypeError, r"classes must hold hashable labels, got \[0\]"),
    ([], ValueError, "classes must be distinct, non-NaN and non-empty"),
    ([0, 1, 0], ValueError, "classes must be distinct, non-NaN and non-empty"),
    ([0, float("nan")], ValueError, "classes must be distinct, non-NaN and non-empty"),
])
def test_one_hot_labels_refuses_bad_classes(bad, error, match):
    with pytest.raises(error, match=f"one_hot_labels: {match}"):
        ds.one_hot_labels([0, 1], classes=bad)


def test_one_hot_labels_classes_as_an_array_or_range():
    Y, classes = ds.one_hot_labels([2, 0], classes=np.array([0, 1, 2]))
    np.testing.assert_array_equal(Y, [[0, 0, 1], [1, 0, 0]])
    assert classes == [0, 1, 2]
    assert ds.one_hot_labels([1], classes=range(3))[1] == [0, 1, 2]


def _peak_bytes(fn) -> int:
    """Peak memory traced (NumPy's buffers included) while ``fn()`` runs."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_one_hot_memory_is_the_results_not_a_k_by_k_identity():
    k = 4000  # np.eye(k) in float32 is 64 MB; the results below are 16 KB and 48 KB
    Y, classes = ds.one_hot_labels([0], classes=range(k))
    assert Y.shape == (1, k) and Y.dtype == np.float32 and Y[0, 0] == 1 and Y.sum() == 1
    assert _peak_bytes(lambda: ds.one_hot_labels([0], classes=range(k))) < 4e6
    vocab = {i: i for i in range(k)}
    X, _ = ds.one_hot_sequences([[1, 2, 3]], vocab)
    assert X.shape == (1, 3, k) and X.dtype == np.float32
    np.testing.assert_array_equal(X.argmax(-1), [[1, 2, 3]])
    assert X.sum() == 3
    assert _peak_bytes(lambda: ds.one_hot_sequences([[1, 2, 3]], vocab)) < 4e6


@pytest.mark.parametrize("flag", ["X_encode", "Y_encode", "X_scale"])
@pytest.mark.parametrize("bad", ["no", 1, 0, None])
def test_embed_flags_must_be_bools(flag, bad):
    X, Y = np.ones((3, 2)), np.array([0, 1, 0])
    with pytest.raises(TypeError, match=f"embed: {flag} must be True or False, got {bad!r}"):
        ds.embed(X, Y, **{flag: bad})
    # NumPy bools are bools.
    assert "dtrain" in ds.embed(X, Y, **{flag: np.bool_(False)})[0]


@pytest.mark.parametrize("bad", ["no", 0, None])
def test_padding_forward_must_be_a_bool(bad):
    with pytest.raises(TypeError, match=f"padding: forward must be True or False, got {bad!r}"):
        ds.padding(np.ones((1, 3, 3, 1)), 1, forward=bad)
    assert ds.padding(np.ones((1, 3, 3, 1)), 1, forward=np.bool_(False)).shape == (1, 1, 1, 1)


@pytest.mark.parametrize("labels", [[0, "a", 1], ("a", 2.5), [["a"], [1]], [b"a", "b"]])
def test_one_hot_labels_refuses_mixed_kinds_like_index_elements(labels):
    # NumPy would turn the numbers into strings: [0, "a", 1] -> classes ["0", "1", "a"].
    with pytest.raises(TypeError, match="index_elements: elements must be hashable and of one "
                                        "sortable kind"):
        ds.index_elements([1, "a"])
    with pytest.raises(TypeError, match="one_hot_labels: elements must be hashable and of one "
                                        "sortable kind"):
        ds.one_hot_labels(labels)
    assert ds.one_hot_labels(("b", "a"))[1] == ["a", "b"]  # one kind is fine


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, np.float32(np.inf)])
@pytest.mark.parametrize("classes", [None, [1, 2]])
def test_one_hot_labels_refuses_nan_and_inf_in_object_arrays(bad, classes):
    y = np.array([1, bad], dtype=object)
    with pytest.raises(ValueError, match="one_hot_labels: labels contain NaN or inf"):
        ds.one_hot_labels(y, classes=classes)
    Y, cls = ds.one_hot_labels(np.array([1, 2.5, 1], dtype=object))  # finite ones are labels
    assert cls == [1, 2.5] and Y.argmax(1).tolist() == [0, 1, 0]


@pytest.mark.parametrize("rel,match", [
    ((1e308, 1e308, 1e308), r"sums beyond float64's range"),
    ((1.5e308, 1e308), r"sums beyond float64's range"),
    ((10**400, 1, 0), "finite, non-negative numbers"),
    ((1, float("inf"), 0), "finite, non-negative numbers"),
])
def test_split_refuses_overflowing_or_infinite_relative_sizes(rel, match):
    # The overflowing sum made every ratio 0: "gives no training sample out of 6".
    with pytest.raises(ValueError, match=f"split_dataset: relative_size.*{match}"):
        ds.split_dataset(np.arange(6), np.arange(6), rel)
    with pytest.raises(ValueError, match=f"embed: relative_size.*{match}"):
        ds.embed(np.ones((6, 1)), np.arange(6), relative_size=rel)
    # Large but summable sizes are only ratios.
    out = ds.split_dataset(np.arange(6), np.arange(6), (5e307, 5e307, 5e307))
    assert [len(out[k].X) for k in ("dtrain", "dval", "dtest")] == [2, 2, 2]


@pytest.mark.parametrize("call,error,match", [
    (lambda: ds.decode_sequences(np.ones((1, 2, 3)), None), TypeError,
     "decode_sequences: idx_to_element must be a dict"),
    (lambda: ds.decode_sequences(np.full((1, 2, 3), "a"), {0: "a"}), TypeError,
     "decode_sequences: X_encoded must be real numbers, got dtype <U1"),
    (lambda: ds.decode_sequences([[[1, 0]], [[1]]], {0: "a"}), ValueError,
     "decode_sequences: X_encoded must be a rectangular array"),
    (lambda: ds.decode_sequences(np.eye(3)[None, [0, 2]], ["a", "b"]), ValueError,
     "decode_sequences: index 2 is not in idx_to_element"),
    (lambda: ds.padding([[[1, 2], [3]]], 1), ValueError,
     "padding: X must be a rectangular array"),
    (lambda: ds.padding(np.full((1, 2, 2), "a"), 1), TypeError,
     "padding: X must be numeric .*got dtype <U1"),
    (lambda: ds.padding(np.full((1, 2, 2), "a", dtype=object), 1), TypeError,
     "padding: X must be numeric .*got dtype object"),
    (lambda: ds.index_elements(None), TypeError,
     "index_elements: X must be an array or a .*sequence of elements, got None"),
    (lambda: ds.index_elements(5), TypeError,
     "index_elements: X must be an array or a .*sequence of elements, got 5"),
    (lambda: ds.index_elements(x for x in "ab"), TypeError,
     "index_elements: X must be an array or a .*sequence of elements, got <generator"),
])
def test_bad_arguments_get_errors_naming_the_function(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_decode_and_padding_still_take_what_they_took():
    enc = np.eye(3)[None, [0, 2]]
    assert ds.decode_sequences(enc, {0: "a", 1: "b", 2: "c"}) == [["a", "c"]]
    assert ds.decode_sequences(enc, ["a", "b", "c"]) == [["a", "c"]]       # a list maps too
    assert ds.decode_sequences(enc.astype(object), ["a", "b", "c"]) == [["a", "c"]]
    out = ds.padding(np.ones((1, 2, 2), dtype=bool), 1)
    assert out.dtype == bool and out.shape == (1, 4, 4) and out.sum() == 4
    np.testing.assert_array_equal(ds.padding(np.ones((1, 1, 1), dtype=object), 1)[0],
                                  [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
