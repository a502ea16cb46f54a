"""The example data: generators refuse arguments they cannot honour; cached downloads that are
inconsistent (short label files, broken checksum records) give a DataError, not a traceback."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from epynn_jax.data import examples as ex


@pytest.mark.parametrize("call,error,match", [
    (lambda: ex.dummy_time(n=3, steps=2), ValueError,
     "dummy_time: steps must be an int >= 4 .*got 2"),
    (lambda: ex.dummy_image(n=3, tones=1), ValueError,
     "dummy_image: tones must be an int >= 2 .*got 1"),
    (lambda: ex.author_music_synthetic(n=3, samples=50, levels=1), ValueError,
     "author_music_synthetic: levels must be an int >= 2"),
    (lambda: ex.dummy_string(n=3, alphabet="AA"), ValueError,
     "dummy_string: alphabet must be a str of at least 2 distinct letters"),
    (lambda: ex.ptm_protein_synthetic(n=3, length=4), ValueError,
     "ptm_protein_synthetic: length must be an int >= 5"),
    (lambda: ex.captcha_mnist_synthetic(n=3, size=13), ValueError,
     "captcha_mnist_synthetic: size must be an int >= 14"),
    (lambda: ex.dummy_boolean(n=0), ValueError, "dummy_boolean: n must be a positive int"),
])
def test_generators_refuse_sizes_their_rule_cannot_use(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("noise,error", [(-1, ValueError), (float("nan"), ValueError),
                                         (float("inf"), ValueError), ("0.5", TypeError),
                                         (True, TypeError)])
def test_dummy_time_refuses_bad_noise(noise, error):
    with pytest.raises(error, match="dummy_time: noise must be a"):
        ex.dummy_time(n=3, steps=8, noise=noise)


def test_dummy_time_accepts_zero_noise():
    X, y = ex.dummy_time(n=20, steps=8, noise=0, seed=1)
    assert np.all(X[y == 1] == 0) and np.any(X[y == 0] != 0)   # noise-only series are silent


@pytest.mark.parametrize("gen", [ex.dummy_boolean, ex.dummy_string, ex.dummy_time,
                                 ex.dummy_image, ex.ptm_protein_synthetic,
                                 ex.author_music_synthetic, ex.captcha_mnist_synthetic])
def test_generators_need_an_int_seed(gen):
    with pytest.raises(TypeError, match=f"{gen.__name__}: seed must be an int >= 0"):
        gen(n=3, seed=None)
    with pytest.raises(ValueError, match=f"{gen.__name__}: seed must be an int >= 0"):
        gen(n=3, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        gen(n=3, seed=1.0)


def test_raw_data_needs_an_int_seed():
    with pytest.raises(TypeError, match="raw_data: seed must be an int >= 0"):
        ex.raw_data("dummy_boolean", seed=None)


def _idx(array: np.ndarray, magic: int) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(head + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("n_samples", [None, 15])
def test_read_mnist_names_a_label_file_shorter_than_the_images(tmp_path, n_samples):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-images-idx3-ubyte.gz").write_bytes(
        _idx(np.zeros((20, 28, 28)), 2051))
    labels = tmp_path / "data" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(_idx(np.arange(10), 2049))
    count = 20 if n_samples is None else 15
    with pytest.raises(ex.DataError, match=f"{labels}.* holds 10 labels for {count} images"):
        ex.read_mnist(tmp_path, n_samples)


@pytest.mark.parametrize("record", ["", "\n", "abc  file.tar\n", "z" * 64 + "\n"])
def test_an_empty_or_malformed_checksum_record_is_a_data_error(tmp_path, record):
    remote = ex.REMOTES["ptm_protein"]
    (tmp_path / remote.filename).write_bytes(b"an archive")
    (tmp_path / (remote.filename + ".sha256")).write_text(record)
    with pytest.raises(ex.DataError, match="checksum record is empty or malformed"):
        ex.fetch(remote, tmp_path)


def test_a_valid_record_in_upper_case_still_verifies(tmp_path):
    remote = ex.REMOTES["ptm_protein"]
    archive = tmp_path / remote.filename
    archive.write_bytes(b"an archive")
    digest = ex.sha256_of(archive)
    (tmp_path / (remote.filename + ".sha256")).write_text(digest.upper() + "\n")
    assert ex.fetch(remote, tmp_path) == archive


def test_the_checksum_record_is_written_atomically(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"an archive")
    record = tmp_path / "a.tar.sha256"

    def interrupted(src, dst):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ex.os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ex._verify(archive, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]  # no record, no temp file
    ex._verify(archive, None)
    assert record.read_text() == f"{ex.sha256_of(archive)}  a.tar\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "a.tar.sha256"]


@pytest.mark.parametrize("fn", [ex.raw_data, ex.prepare])
@pytest.mark.parametrize("flag", ["quick", "synthetic"])
@pytest.mark.parametrize("bad", ["no", 1, None])
def test_example_flags_must_be_bools(fn, flag, bad):
    with pytest.raises(TypeError, match=f"{fn.__name__}: {flag} must be True or False, "
                                        f"got {bad!r}"):
        fn("dummy_boolean", **{flag: bad})


@pytest.mark.parametrize("fn,what", [(ex.raw_data, "dummy_boolean"), (ex.prepare, "dummy_boolean"),
                                     (ex.load_real, "ptm_protein")])
def test_example_names_must_be_strings(fn, what):
    with pytest.raises(TypeError, match=f"{fn.__name__}: name must be a str, one of .*{what}"):
        fn([what])
    with pytest.raises(ValueError, match=f"{fn.__name__}: unknown .* 'nope'; known: .*{what}"):
        fn("nope")
