"""The example data sets: generator rules, and the real loaders on small fixture archives."""

from __future__ import annotations

import functools
import http.server
import io
import sys
import tarfile
import threading

import numpy as np
import pytest

from epynn_jax.data import examples as ex

from . import fixtures

# -- synthetic generators ---------------------------------------------------------------------


@pytest.mark.parametrize("gen", [ex.dummy_boolean, ex.dummy_string, ex.dummy_time,
                                 ex.dummy_image, ex.ptm_protein_synthetic,
                                 ex.captcha_mnist_synthetic])
def test_generators_are_pure_functions_of_the_seed(gen):
    X1, y1 = gen(n=40, seed=3)
    X2, y2 = gen(n=40, seed=3)
    X3, _ = gen(n=40, seed=4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert X1.shape[0] == y1.shape[0] == 40


def test_dummy_boolean_label_rule():
    X, y = ex.dummy_boolean(n=200, seed=1)
    assert X.shape == (200, 11) and X.dtype == bool
    np.testing.assert_array_equal(y == 0, X.sum(axis=1) >= 6)
    assert 0 < (y == 0).mean() < 1


def test_dummy_string_label_rule():
    X, y = ex.dummy_string(n=300, seed=1)
    assert X.shape == (300, 12) and set(np.unique(X)) == set("ATGC")
    np.testing.assert_array_equal(y == 0, X[:, 0] == X[:, -1])


def test_dummy_time_positive_series_carry_more_power():
    X, y = ex.dummy_time(n=400, steps=64, seed=2)
    assert X.shape == (400, 64, 1)
    power = (X[..., 0] ** 2).mean(axis=1)
    # noise alone: 0.25; noise + unit sine: 0.25 + 0.5
    assert power[y == 1].mean() == pytest.approx(0.25, rel=0.15)
    assert power[y == 0].mean() == pytest.approx(0.75, rel=0.15)


def test_dummy_image_masks_a_row_and_a_column_of_the_positives_only():
    X, y = ex.dummy_image(n=60, size=12, seed=5)
    img = X[..., 0]
    zero_rows = (img == 0).all(axis=2).any(axis=1)
    zero_cols = (img == 0).all(axis=1).any(axis=1)
    np.testing.assert_array_equal(zero_rows & zero_cols, y == 0)
    assert img.max() <= 15 and img.min() >= 0


def test_ptm_synthetic_motif_and_centre():
    X, y = ex.ptm_protein_synthetic(n=500, seed=0)
    assert set(X[:, 10]) <= {"S", "T"}
    assert (X[y == 0, 11] == "P").mean() > 0.75 > 0.2 > (X[y == 1, 11] == "P").mean()


def test_author_music_synthetic_levels():
    X, y = ex.author_music_synthetic(n=20, samples=300, seed=0)
    assert X.shape == (20, 300) and X.min() >= 0 and X.max() <= 15
    assert X.dtype.kind == "i" and set(np.unique(y)) <= {0, 1}


def test_captcha_synthetic_classes_differ():
    X, y = ex.captcha_mnist_synthetic(n=200, seed=0)
    assert X.shape == (200, 28, 28, 1) and 0 <= X.min() and X.max() <= 255
    means = np.stack([X[y == k].mean(axis=0) for k in range(10)])
    assert np.min([np.abs(means[i] - means[j]).max() for i in range(10) for j in range(i)]) > 20


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_generators_refuse_bad_sizes(bad):
    with pytest.raises(ValueError, match="n must be a positive int"):
        ex.dummy_boolean(n=bad)


def test_prepare_splits_two_to_one_and_encodes():
    data, info = ex.prepare("dummy_string", seed=0, quick=True)
    assert data["dtrain"][0].shape == (320, 12, 4) and data["dval"][1].shape == (160, 2)
    assert sorted(info["element_to_idx"]) == list("ACGT")
    with pytest.raises(ValueError, match="unknown example"):
        ex.prepare("nope")


# -- downloads: fetch, checksum, safe extraction, readers -----------------------------------


def test_fetch_verifies_the_checksum_and_caches(tmp_path):
    archive = fixtures.ptm_archive(tmp_path)
    digest = ex.sha256_of(archive)
    cache = tmp_path / "cache"
    remote = ex.REMOTES["ptm_protein"]
    path = ex.fetch(remote, cache, url=fixtures.url(archive), sha256=digest)
    assert path == cache / remote.filename and ex.sha256_of(path) == digest
    # second call: no download (the URL is now wrong), the cached file is re-verified
    assert ex.fetch(remote, cache, url="file:///nonexistent", sha256=digest) == path
    with pytest.raises(ex.DataError, match="does not match"):
        ex.fetch(remote, cache, sha256="0" * 64)


def test_fetch_rejects_a_download_with_the_wrong_checksum(tmp_path):
    archive = fixtures.ptm_archive(tmp_path)
    with pytest.raises(ex.DataError, match="expected"):
        ex.fetch(ex.REMOTES["ptm_protein"], tmp_path / "c", url=fixtures.url(archive),
                 sha256="f" * 64)
    assert not any((tmp_path / "c").iterdir())  # no partial file left behind


def test_fetch_records_a_checksum_when_none_is_pinned(tmp_path):
    archive = fixtures.ptm_archive(tmp_path)
    cache = tmp_path / "c"
    path = ex.fetch(ex.REMOTES["ptm_protein"], cache, url=fixtures.url(archive))
    record = path.with_name(path.name + ".sha256")
    assert record.read_text().split()[0] == ex.sha256_of(archive)
    path.write_bytes(b"tampered")
    with pytest.raises(ex.DataError, match="does not match"):
        ex.fetch(ex.REMOTES["ptm_protein"], cache)


def test_fetch_reports_an_unreachable_source(tmp_path):
    with pytest.raises(ex.DataUnavailable, match="could not download"):
        ex.fetch(ex.REMOTES["author_music"], tmp_path, url=fixtures.url(tmp_path / "missing"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines on stderr
        pass


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """``(folder, base URL)``: ``folder`` served over HTTP on 127.0.0.1 for the test."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # never through a proxy from the environment
    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_fetch_over_http_verifies_and_records(http_server, tmp_path):
    folder, base = http_server
    archive = fixtures.ptm_archive(folder)
    digest = ex.sha256_of(archive)
    remote = ex.REMOTES["ptm_protein"]
    pinned = ex.fetch(remote, tmp_path / "a", url=f"{base}/{archive.name}", sha256=digest)
    assert ex.sha256_of(pinned) == digest
    # nothing pinned: the first download's checksum is recorded, and then enforced
    path = ex.fetch(remote, tmp_path / "b", url=f"{base}/{archive.name}", retries=0)
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == digest
    path.write_bytes(b"tampered")
    with pytest.raises(ex.DataError, match="does not match"):
        ex.fetch(remote, tmp_path / "b", url=f"{base}/{archive.name}")


def test_fetch_over_http_refuses_a_wrong_checksum_and_keeps_nothing(http_server, tmp_path):
    folder, base = http_server
    archive = fixtures.ptm_archive(folder)
    with pytest.raises(ex.DataError, match="SHA-256"):
        ex.fetch(ex.REMOTES["ptm_protein"], tmp_path / "c", url=f"{base}/{archive.name}",
                 sha256="0" * 64, retries=0)
    assert not any((tmp_path / "c").iterdir())


def test_fetch_over_http_reports_a_missing_file(http_server, tmp_path):
    _, base = http_server
    with pytest.raises(ex.DataUnavailable, match="could not download.*404"):
        ex.fetch(ex.REMOTES["ptm_protein"], tmp_path / "c", url=f"{base}/missing.tar",
                 retries=0)
    assert not any((tmp_path / "c").iterdir())


def test_fetch_refuses_an_unknown_url_scheme(tmp_path):
    with pytest.raises(ex.DataUnavailable, match="https://, http://, ftp:// or file://"):
        ex.fetch(ex.REMOTES["ptm_protein"], tmp_path, url="gopher://example.org/x.tar")


def test_without_pooch_a_download_says_which_extra_to_install(tmp_path, monkeypatch):
    archive = fixtures.ptm_archive(tmp_path)
    digest = ex.sha256_of(archive)
    cache = tmp_path / "c"
    ex.fetch(ex.REMOTES["ptm_protein"], cache, url=fixtures.url(archive), sha256=digest)
    monkeypatch.setitem(sys.modules, "pooch", None)  # import pooch now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'epynn-jax\[examples\]'") as info:
        ex.fetch(ex.REMOTES["author_music"], cache, url=fixtures.url(archive))
    assert isinstance(info.value, ex.DataUnavailable)  # the example scripts' message and exit
    # the cache needs no pooch
    assert ex.fetch(ex.REMOTES["ptm_protein"], cache, sha256=digest).exists()


def _evil(tmp_path, name, kind=tarfile.REGTYPE):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return path


@pytest.mark.parametrize("name,kind", [
    ("/abs/file", tarfile.REGTYPE),
    ("data/../../escape", tarfile.REGTYPE),
    ("data/link", tarfile.SYMTYPE),
    ("data/hard", tarfile.LNKTYPE),
    ("data/fifo", tarfile.FIFOTYPE),
])
def test_extract_refuses_unsafe_members(tmp_path, name, kind):
    with pytest.raises(ex.DataError):
        ex.extract(_evil(tmp_path, name, kind), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_reports_a_corrupt_archive(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar file at all" * 40)
    with pytest.raises(ex.DataError, match="not a readable tar"):
        ex.extract(bad, tmp_path / "out")


def test_load_real_ptm_from_fixture(tmp_path):
    archive = fixtures.ptm_archive(tmp_path, n_pos=30, n_neg=45)
    X, y = ex.load_real("ptm_protein", cache=tmp_path / "c", url=fixtures.url(archive),
                        sha256=ex.sha256_of(archive))
    assert X.shape == (60, 21)  # negatives cut to the number of positives
    assert (y == 0).sum() == 30 and (X[y == 0, 11] == "P").all()
    # the same call again reads the extracted cache
    X2, _ = ex.load_real("ptm_protein", cache=tmp_path / "c")
    np.testing.assert_array_equal(X, X2)


def test_load_real_music_from_fixture(tmp_path):
    archive = fixtures.music_archive(tmp_path)
    X, y = ex.load_real("author_music", cache=tmp_path / "c", url=fixtures.url(archive))
    assert X.shape == (8, 10000)  # 4 files x 2 whole seconds, 20 kHz -> 10 kHz
    assert X.min() >= 0 and X.max() <= 15 and sorted(np.bincount(y)) == [4, 4]
    # a pure sine sits at the extremes more than noise does
    extreme = ((X == 0) | (X == 15)).mean(axis=1)
    assert extreme[y == 0].min() > extreme[y == 1].max()


def test_load_real_mnist_from_fixture(tmp_path):
    archive = fixtures.mnist_archive(tmp_path, n=40)
    X, y = ex.load_real("captcha_mnist", 25, cache=tmp_path / "c", url=fixtures.url(archive))
    assert X.shape == (25, 28, 28, 1) and X.dtype == np.float32
    for img, label in zip(X[..., 0], y):
        assert img[2 * label: 2 * label + 4].min() == 255 and img.sum() == 255 * 4 * 28


def test_read_mnist_rejects_a_non_idx_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-images-idx3-ubyte.gz").write_bytes(
        fixtures.idx_bytes(np.zeros((2, 2)), 1234))
    with pytest.raises(ex.DataError, match="not an IDX"):
        ex.read_mnist(tmp_path)
