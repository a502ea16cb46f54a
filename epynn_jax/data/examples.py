"""The data sets of the examples: synthetic generators and loaders for the real ones.

Synthetic generators are pure functions of a seed and sizes (a NumPy
``default_rng(seed)`` is their only randomness, ``seed`` an int >= 0: ``None``
is refused, since it would give different data at each call); sizes too small
for a generator's rule are refused with the argument and the valid range, as
is a negative or non-finite ``noise``. Each returns ``(X, y)`` with
``y`` the integer labels, where, as in EpyNN's examples, label 0 is the
"positive" pattern and 1 the negative one (MNIST-like data: the digit).

========================  ===========================  ======================================
generator                 X                            label
========================  ===========================  ======================================
``dummy_boolean``         (n, 11) bool                 0 if more True than False
``dummy_string``          (n, 12) letters of ATGC      0 if first letter == last letter
``dummy_time``            (n, 128, 1) float            0 if noise + a sine, 1 if noise only
``dummy_image``           (n, 28, 28, 1) float 0..15   0 if one row and one column are blanked
``ptm_protein_synthetic`` (n, 21) amino-acid letters   0 if a proline/valine motif is present
``author_music_synthetic`` (n, samples) int 0..15      0 if a clean harmonic tone, 1 if noisy
``captcha_mnist_synthetic`` (n, 28, 28, 1) 0..255      the digit (seven-segment glyphs)
========================  ===========================  ======================================

The real data sets (``ptm_protein``, ``author_music``, ``captcha_mnist``) are
tar archives on the EpyNN authors' S3 bucket. :func:`fetch` downloads one with
`pooch <https://www.fatiando.org/pooch>`_ (the ``examples`` extra) into a
cache directory (``$EPYNN_JAX_DATA`` or ``~/.cache/epynn_jax``), checking its
SHA-256, and :func:`extract` unpacks it refusing absolute paths, ``..``
components and links. The published archives carry no checksum; until one is
pinned in :data:`REMOTES`, the first download records it next to the archive
and later runs verify against that record (pass ``sha256=`` to pin one); an
empty or malformed record is a :class:`DataError`, like a mismatch.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import numbers
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import wave
from pathlib import Path, PurePosixPath

import numpy as np

from epynn_jax.data.dataset import _flag

__all__ = [
    "dummy_boolean",
    "dummy_string",
    "dummy_time",
    "dummy_image",
    "ptm_protein_synthetic",
    "author_music_synthetic",
    "captcha_mnist_synthetic",
    "digits",
    "DataUnavailable",
    "MissingExtra",
    "DataError",
    "Remote",
    "REMOTES",
    "cache_dir",
    "sha256_of",
    "fetch",
    "extract",
    "read_ptm",
    "read_music",
    "read_mnist",
    "load_real",
]

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def _positive_int(value: int, what: str, where: str, minimum: int = 1, why: str = "") -> int:
    """An int >= ``minimum`` (``ValueError`` naming ``where``, ``what`` and the range)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{where}: {what} must be {wanted}{why}, got {value!r}")
    return int(value)


def _seed(seed: int, where: str) -> int:
    """A seed: an int >= 0 (``None`` is refused: the data must be reproducible)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{where}: seed must be an int >= 0 (the data is a pure function of "
                        f"it), got {seed!r}")
    if seed < 0:
        raise ValueError(f"{where}: seed must be an int >= 0, got {seed!r}")
    return int(seed)


def _name(name, known: dict, where: str, what: str) -> str:
    """``name`` if it is one of ``known``'s keys (``TypeError`` for a non-str, whose lookup
    would fail as unhashable, ``ValueError`` for an unknown str)."""
    if not isinstance(name, str):
        raise TypeError(f"{where}: name must be a str, one of {', '.join(known)}; got "
                        f"{name!r:.80}")
    if name not in known:
        raise ValueError(f"{where}: unknown {what} {name!r}; known: {', '.join(known)}")
    return name


def _noise(noise: float, where: str) -> float:
    """A standard deviation: a finite real number >= 0."""
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise TypeError(f"{where}: noise must be a number, got {noise!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"{where}: noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


# -- synthetic data sets --------------------------------------------------------------------


def dummy_boolean(n: int = 50, features: int = 11, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random booleans (n, features); label 0 when True outnumbers False, else 1.

    >>> X, y = dummy_boolean(n=4, seed=0)
    >>> X.shape, y.shape
    ((4, 11), (4,))
    >>> bool(np.all((X.sum(axis=1) > 5.5) == (y == 0)))
    True
    """
    where = "dummy_boolean"
    n, features = _positive_int(n, "n", where), _positive_int(features, "features", where)
    X = np.random.default_rng(_seed(seed, where)).integers(0, 2, (n, features)).astype(bool)
    y = np.where(X.sum(axis=1) > features / 2, 0, 1)
    return X, y


def dummy_string(n: int = 480, length: int = 12, alphabet: str = "ATGC",
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random strings (n, length) of ``alphabet`` letters; label 0 when first == last letter."""
    where = "dummy_string"
    n, length = _positive_int(n, "n", where), _positive_int(length, "length", where)
    if not isinstance(alphabet, str) or len(set(alphabet)) < 2:
        raise ValueError(f"{where}: alphabet must be a str of at least 2 distinct letters, "
                         f"got {alphabet!r}")
    X = np.random.default_rng(_seed(seed, where)).choice(np.array(list(alphabet)), (n, length))
    y = np.where(X[:, 0] == X[:, -1], 0, 1)
    return X, y


def dummy_time(n: int = 1024, steps: int = 128, noise: float = 0.5,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One-second series sampled ``steps`` times, shape (n, steps, 1).

    Every series is white noise (standard deviation ``noise``); the positive
    ones (label 0, about half) add a unit sine of random frequency below the
    Nyquist half, ``steps / 4`` Hz, and random phase; so ``steps >= 4``.
    """
    where = "dummy_time"
    n = _positive_int(n, "n", where)
    steps = _positive_int(steps, "steps", where, 4, " (the sine's frequency is drawn from 1 Hz "
                          "to steps / 4 Hz)")
    noise = _noise(noise, where)
    rng = np.random.default_rng(_seed(seed, where))
    t = np.arange(steps) / steps
    y = rng.integers(0, 2, n)
    freq = rng.uniform(1.0, steps / 4, (n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1))
    X = rng.normal(0.0, noise, (n, steps)) + (y == 0)[:, None] * np.sin(2 * np.pi * freq * t
                                                                          + phase)
    return X[..., None].astype(np.float32), y


def dummy_image(n: int = 750, size: int = 28, tones: int = 16,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey images (n, size, size, 1) of random tones 1..tones-1 (so ``tones >= 2``).

    About half are "masked" (label 0): one random row and one random column
    are set to 0.
    """
    where = "dummy_image"
    n, size = _positive_int(n, "n", where), _positive_int(size, "size", where)
    tones = _positive_int(tones, "tones", where, 2, " (pixels take tones 1 to tones - 1)")
    rng = np.random.default_rng(_seed(seed, where))
    X = rng.integers(1, tones, (n, size, size, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    rows, cols = rng.integers(0, size, n), rng.integers(0, size, n)
    masked = np.flatnonzero(y == 0)
    X[masked, rows[masked], :, :] = 0
    X[masked, :, cols[masked], :] = 0
    return X, y


def ptm_protein_synthetic(n: int = 1280, length: int = 21,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Peptides (n, length) of amino-acid letters centred on a serine or threonine.

    A stand-in for the O-GlcNAcylation data of the same shape: the positive
    peptides (label 0, about half) carry, each with probability 0.8, a
    proline right after the centre and a valine two residues before it.
    """
    where = "ptm_protein_synthetic"
    n = _positive_int(n, "n", where)
    length = _positive_int(length, "length", where, 5, " (the motif spans 4 residues around "
                           "the centre)")
    rng = np.random.default_rng(_seed(seed, where))
    X = rng.choice(np.array(list(AMINO_ACIDS)), (n, length))
    c = length // 2
    X[:, c] = rng.choice(np.array(["S", "T"]), n)
    y = rng.integers(0, 2, n)
    for offset, residue in ((1, "P"), (-2, "V")):
        motif = (y == 0) & (rng.uniform(size=n) < 0.8)
        X[motif, c + offset] = residue
    return X, y


def _digitize(signal: np.ndarray, levels: int) -> np.ndarray:
    """Min-max normalize each row to [0, 1], then quantize to ``levels`` integer levels."""
    lo = signal.min(axis=-1, keepdims=True)
    span = np.maximum(signal.max(axis=-1, keepdims=True) - lo, 1e-12)
    return np.rint((signal - lo) / span * (levels - 1)).astype(np.int64)


def author_music_synthetic(n: int = 256, samples: int = 10000, levels: int = 16,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clips (n, samples) digitized to ``levels`` levels, like one second at 10 kHz.

    Positive clips (label 0) are a clean plucked tone (a fundamental and two
    harmonics under a decay); negative ones bury the same kind of tone in
    loud noise. Each clip is normalized on its own, as the real loader does.
    """
    where = "author_music_synthetic"
    n, samples = _positive_int(n, "n", where), _positive_int(samples, "samples", where)
    levels = _positive_int(levels, "levels", where, 2, " (one level is a constant clip)")
    rng = np.random.default_rng(_seed(seed, where))
    t = np.arange(samples) / samples
    y = rng.integers(0, 2, n)
    f0 = rng.uniform(5.0, max(6.0, samples / 50), (n, 1))
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3)) * np.exp(-t)
    noise = rng.normal(0.0, 1.0, (n, samples)) * np.where(y == 0, 0.05, 1.5)[:, None]
    return _digitize(tone + noise, levels), y


_SEGMENTS = {  # seven-segment glyphs: which of a..g is lit for each digit
    0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg",
    5: "acdfg", 6: "acdefg", 7: "abc", 8: "abcdefg", 9: "abcdfg",
}


def _glyph(digit: int, size: int, top: int, left: int, thick: int) -> np.ndarray:
    """A seven-segment drawing of ``digit`` in a (size, size) canvas of zeros and ones."""
    img = np.zeros((size, size), np.float32)
    h, w = size * 5 // 7, size * 3 // 7
    mid = top + h // 2
    boxes = {
        "a": (top, top + thick, left, left + w), "g": (mid, mid + thick, left, left + w),
        "d": (top + h - thick, top + h, left, left + w),
        "f": (top, mid + thick, left, left + thick), "b": (top, mid + thick, left + w - thick,
                                                          left + w),
        "e": (mid, top + h, left, left + thick), "c": (mid, top + h, left + w - thick, left + w),
    }
    for s in _SEGMENTS[digit]:
        r0, r1, c0, c1 = boxes[s]
        img[max(r0, 0):r1, max(c0, 0):c1] = 1.0
    return img


def captcha_mnist_synthetic(n: int = 750, size: int = 28,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digit images (n, size, size, 1), values 0..255 like MNIST, labels 0..9.

    Seven-segment digits near the centre (shifted by up to ``size // 10``
    pixels), with a random stroke width and brightness, plus noise: a
    stand-in for MNIST of the same shape.
    """
    where = "captcha_mnist_synthetic"
    n = _positive_int(n, "n", where)
    size = _positive_int(size, "size", where, 14, " (smaller glyphs lose their segments)")
    rng = np.random.default_rng(_seed(seed, where))
    y = rng.integers(0, 10, n)
    X = np.empty((n, size, size, 1), np.float32)
    top, left = (size - size * 5 // 7) // 2, (size - size * 3 // 7) // 2
    jitter = max(size // 10, 1)
    for i in range(n):
        r, c = rng.integers(-jitter, jitter + 1, 2)
        img = _glyph(int(y[i]), size, top + int(r), left + int(c),
                     int(rng.integers(1, 3 + size // 28)))
        img = img * rng.uniform(150, 255) + rng.uniform(0, 40, (size, size))
        X[i, :, :, 0] = np.clip(img, 0, 255)
    return X, y


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: X (1797, 8, 8, 1) values 0..16, y the digit.

    Needs scikit-learn (the ``examples`` extra); no download.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingExtra(
            "the digits example needs scikit-learn: pip install 'epynn-jax[examples]'"
        ) from None
    data = load_digits()
    return data.images[..., None].astype(np.float32), data.target.astype(np.int64)


# -- real data sets: download, verify, extract, read -------------------------------------------


class DataUnavailable(RuntimeError):
    """A real data set is not on this machine and cannot be fetched."""


class MissingExtra(DataUnavailable, ImportError):
    """A package of the ``examples`` extra (pooch, scikit-learn) is not installed.

    Both a :class:`DataUnavailable` (the data cannot be had: the example scripts
    say so and suggest ``--synthetic``) and an ``ImportError``.
    """


class DataError(ValueError):
    """A downloaded file is wrong: bad checksum, unsafe archive, unreadable content."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """Where a real data set lives and how to check it."""

    name: str
    url: str
    filename: str
    sha256: str | None = None


REMOTES = {
    "ptm_protein": Remote("ptm_protein",
                          "https://synthase.s3.us-west-2.amazonaws.com/ptm_prediction_data.tar",
                          "ptm_prediction_data.tar"),
    "author_music": Remote("author_music",
                           "https://synthase.s3.us-west-2.amazonaws.com/author_music.tar",
                           "author_music.tar"),
    "captcha_mnist": Remote("captcha_mnist",
                            "https://synthase.s3.us-west-2.amazonaws.com/mnist_database.tar",
                            "mnist_database.tar"),
}


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The download cache: ``path``, else ``$EPYNN_JAX_DATA``, else ``~/.cache/epynn_jax``."""
    if path is None:
        path = os.environ.get("EPYNN_JAX_DATA") or Path.home() / ".cache" / "epynn_jax"
    return Path(path).expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_record(record: Path) -> str:
    """The SHA-256 in a checksum record; :class:`DataError` when it is empty or malformed."""
    words = record.read_text(errors="replace").split()
    digest = words[0].lower() if words else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise DataError(f"{record}: the checksum record is empty or malformed, so the archive "
                        "next to it cannot be verified; delete both to download it again")
    return digest


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    An interrupted write leaves no half-written ``path`` behind.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verify(path: Path, expected: str | None) -> None:
    """Check ``path`` against ``expected`` or, when None, against the recorded checksum."""
    record = path.with_name(path.name + ".sha256")
    actual = sha256_of(path)
    if expected is None and record.exists():
        expected = _read_record(record)
    if expected is None:
        _write_atomic(record, f"{actual}  {path.name}\n")
        return
    if actual != expected.lower():
        raise DataError(f"{path}: SHA-256 {actual} does not match the expected {expected}; "
                        "delete the file to download it again")


def _pooch():
    """The ``pooch`` module, or :class:`MissingExtra` saying how to install it."""
    try:
        import pooch
    except ImportError:
        raise MissingExtra("downloading the real data sets needs pooch: "
                           "pip install 'epynn-jax[examples]'") from None
    return pooch


def _copy_file_url(url: str, output_file, pooch_=None) -> None:
    """A pooch downloader for ``file://`` URLs (local mirrors, tests), which pooch lacks."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if hasattr(output_file, "write"):
        with open(source, "rb") as f:
            shutil.copyfileobj(f, output_file)
    else:
        shutil.copyfile(source, output_file)


def _downloader(pooch, source: str, timeout: float):
    """pooch's downloader for ``source``: HTTP(S) and FTP with ``timeout``, ``file://`` by
    :func:`_copy_file_url`; ``None`` for any other scheme."""
    scheme = urllib.parse.urlparse(source).scheme
    if scheme == "file":
        return _copy_file_url
    if scheme in ("http", "https"):
        return pooch.HTTPDownloader(timeout=timeout)
    if scheme == "ftp":
        return pooch.FTPDownloader(timeout=timeout)
    return None


def fetch(remote: Remote, cache: str | os.PathLike | None = None, *, url: str | None = None,
          sha256: str | None = None, timeout: float = 60.0, retries: int = 2) -> Path:
    """The path of ``remote``'s archive in the cache, downloading it if absent.

    The download is pooch's: into a temporary file in the cache, moved into
    place only after its SHA-256 matches ``sha256`` (else the remote's pinned
    one; with neither, the first download's checksum is recorded next to it
    and the cached file is verified against that record on later calls),
    retried up to ``retries`` times over the network. ``url`` overrides the
    remote's address (``file://`` URLs work, for mirrors and tests). A cached
    file whose checksum does not match is refused, never silently replaced;
    so is one whose record is empty or malformed. The record is written to a
    temporary file renamed into place, so an interrupted run leaves none.

    Raises :class:`DataUnavailable` when it cannot be downloaded
    (:class:`MissingExtra`, also an ``ImportError``, when pooch is not
    installed) and :class:`DataError` on a checksum mismatch.
    """
    folder = cache_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.filename
    expected = sha256 or remote.sha256
    if target.exists():  # no pooch needed to use the cache
        _verify(target, expected)
        return target
    pooch = _pooch()
    import requests  # pooch's own dependency: its HTTP errors

    source = url or remote.url
    downloader = _downloader(pooch, source, timeout)
    if downloader is None:
        raise DataUnavailable(f"{remote.name}: cannot download {source!r} (the URL must start "
                              "with https://, http://, ftp:// or file://)")
    store = pooch.create(
        path=folder, base_url="",
        registry={remote.filename: f"sha256:{expected}" if expected else None},
        urls={remote.filename: source},
        retry_if_failed=0 if downloader is _copy_file_url else int(retries))
    try:
        store.fetch(remote.filename, downloader=downloader)
    except ValueError as err:  # pooch's checksum mismatch; the download is deleted
        raise DataError(f"{remote.name}: the file downloaded from {source} failed its "
                        f"SHA-256 check ({err})") from None
    except (requests.RequestException, OSError) as err:
        raise DataUnavailable(f"{remote.name}: could not download {source} ({err})") from None
    _verify(target, expected)  # records the checksum of a first download
    return target


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse anything but plain files and folders with relative, inward paths."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise DataError(f"{archive}: unsafe path {name!r} in archive")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{archive}: refusing {name!r} (links and special files are not "
                        "extracted)")


def extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpack a tar archive into ``dest`` safely; return ``dest``.

    Every member is checked first (no absolute paths, no ``..``, only
    regular files and folders); Python's ``filter='data'`` is used on top
    where available. (pooch's ``Untar`` processor is not used: it relies on
    that filter alone, which Python before 3.12 does not apply.)
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # Python < 3.10.12 without extraction filters: members were checked above
                tar.extractall(dest, members=members)  # noqa: S202
    except tarfile.TarError as err:
        raise DataError(f"{archive}: not a readable tar archive ({err})") from None
    return dest


def read_ptm(folder: str | os.PathLike, n_samples: int | None = None,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Peptides from ``data/21_positive.dat`` (label 0) and ``data/21_negative.dat`` (label 1).

    One sequence per line. Negatives are subsampled to the number of
    positives (balanced), the whole shuffled with ``seed`` and cut to
    ``n_samples``. Returns X (n, 21) letters and y (n,).
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    sets = []
    for label, fname in ((0, "21_positive.dat"), (1, "21_negative.dat")):
        path = folder / "data" / fname
        if not path.is_file():
            raise DataError(f"ptm_protein: missing {path}")
        lines = [s.strip() for s in path.read_text().splitlines() if s.strip()]
        sets.append((label, [lines[i] for i in rng.permutation(len(lines))]))
    (_, pos), (_, neg) = sets
    neg = neg[: len(pos)]
    seqs = pos + neg
    labels = [0] * len(pos) + [1] * len(neg)
    if not seqs or len({len(s) for s in seqs}) != 1:
        raise DataError("ptm_protein: peptides must all have the same length")
    order = rng.permutation(len(seqs))[:n_samples]
    X = np.array([list(seqs[i]) for i in order])
    return X, np.array(labels)[order]


def _read_wav(path: Path) -> tuple[int, np.ndarray]:
    """Sampling rate and the first channel of a PCM WAV file (8, 16 or 32-bit)."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as err:
        raise DataError(f"author_music: cannot read {path} ({err})") from None
    dtype = {1: np.uint8, 2: "<i2", 4: "<i4"}.get(width)
    if dtype is None:
        raise DataError(f"author_music: {path} has unsupported sample width {width}")
    return rate, np.frombuffer(raw, dtype=dtype).reshape(-1, channels)[:, 0].astype(np.float64)


def read_music(folder: str | os.PathLike, n_samples: int | None = None, seed: int = 0,
               seconds: int = 1, rate: int = 10000,
               levels: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Clips from ``data/true/*.wav`` (label 0) and ``data/false/*.wav`` (label 1).

    Each file is normalized to [0, 1] and quantized to ``levels`` levels,
    downsampled to about ``rate`` Hz by taking every k-th sample, and cut
    into clips of ``seconds`` seconds. Returns X (n, rate*seconds) ints and y.
    """
    folder = Path(folder)
    clips, labels = [], []
    width = rate * seconds
    for label, sub in ((0, "true"), (1, "false")):
        for path in sorted((folder / "data" / sub).glob("*.wav")):
            file_rate, signal = _read_wav(path)
            signal = _digitize(signal[None, :], levels)[0]
            resampled = signal[:: max(file_rate // rate, 1)]
            for i in range(len(resampled) // width):
                clips.append(resampled[i * width:(i + 1) * width])
                labels.append(label)
    if not clips:
        raise DataError(f"author_music: no clips of {seconds} s in {folder / 'data'}")
    order = np.random.default_rng(seed).permutation(len(clips))[:n_samples]
    return np.stack([clips[i] for i in order]), np.array(labels)[order]


def _read_idx(path: Path, magic: int, n: int | None) -> tuple[tuple[int, ...], np.ndarray]:
    if not path.is_file():
        raise DataError(f"captcha_mnist: missing {path}")
    with gzip.open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or int.from_bytes(head, "big") != magic:
            raise DataError(f"captcha_mnist: {path} is not an IDX file (magic {magic})")
        ndim = magic & 0xFF
        dims = tuple(int.from_bytes(f.read(4), "big") for _ in range(ndim))
        count = dims[0] if n is None else min(n, dims[0])
        size = count * int(np.prod(dims[1:], dtype=np.int64))
        data = np.frombuffer(f.read(size), dtype=np.uint8)
    if data.size != size:
        raise DataError(f"captcha_mnist: {path} is truncated")
    return (count, *dims[1:]), data


def read_mnist(folder: str | os.PathLike, n_samples: int | None = 750,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_samples`` MNIST images and labels from the gzipped IDX files.

    Reads ``data/train-images-idx3-ubyte.gz`` and
    ``data/train-labels-idx1-ubyte.gz``; returns X (n, 28, 28, 1) float32
    0..255 and y (n,) shuffled with ``seed``.
    """
    folder = Path(folder) / "data"
    shape, pixels = _read_idx(folder / "train-images-idx3-ubyte.gz", 2051, n_samples)
    label_file = folder / "train-labels-idx1-ubyte.gz"
    _, labels = _read_idx(label_file, 2049, shape[0])
    if labels.size < shape[0]:
        raise DataError(f"captcha_mnist: {label_file} holds {labels.size} labels for "
                        f"{shape[0]} images")
    X = pixels.reshape(*shape, 1).astype(np.float32)
    order = np.random.default_rng(seed).permutation(shape[0])
    return X[order], labels[order].astype(np.int64)


_READERS = {"ptm_protein": read_ptm, "author_music": read_music, "captcha_mnist": read_mnist}


def load_real(name: str, n_samples: int | None = None, seed: int = 0, *,
              cache: str | os.PathLike | None = None, url: str | None = None,
              sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fetch, verify, extract (once) and read the real data set ``name``.

    Raises :class:`DataUnavailable` when it is absent and cannot be
    downloaded (say, offline), :class:`DataError` when it is corrupt.
    """
    _name(name, REMOTES, "load_real", "real data set")
    seed = _seed(seed, "load_real")
    archive = fetch(REMOTES[name], cache, url=url, sha256=sha256)
    folder = cache_dir(cache) / name
    stamp = folder / ".extracted"
    if not stamp.exists() or stamp.read_text() != sha256_of(archive):
        extract(archive, folder)
        _write_atomic(stamp, sha256_of(archive))
    return _READERS[name](folder, n_samples, seed)


# -- ready-to-train splits of every example ------------------------------------------------------

#: Example name -> (generator, full-size kwargs, quick kwargs, embed kwargs).
DATASETS = {
    "dummy_boolean": (dummy_boolean, {"n": 50}, {"n": 50}, {}),
    "dummy_string": (dummy_string, {"n": 480}, {"n": 480},
                     {"X_encode": True, "Y_encode": True}),
    "dummy_time": (dummy_time, {"n": 1024, "steps": 128}, {"n": 384, "steps": 32},
                   {"Y_encode": True}),
    "dummy_image": (dummy_image, {"n": 750}, {"n": 300}, {"X_scale": True, "Y_encode": True}),
    "ptm_protein": (ptm_protein_synthetic, {"n": 1280}, {"n": 480},
                    {"X_encode": True, "Y_encode": True}),
    "author_music": (author_music_synthetic, {"n": 256, "samples": 10000},
                     {"n": 192, "samples": 200}, {"X_encode": True, "Y_encode": True}),
    "captcha_mnist": (captcha_mnist_synthetic, {"n": 750}, {"n": 400},
                      {"X_scale": True, "Y_encode": True}),
    "digits": (None, {}, {}, {"Y_encode": True}),
}


def raw_data(name: str, *, seed: int = 0, quick: bool = False, synthetic: bool = False,
             cache: str | os.PathLike | None = None, url: str | None = None,
             sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of example ``name``, before encoding and splitting.

    The download examples (:data:`REMOTES`) read the real data unless
    ``synthetic``; ``quick`` picks the small sizes used by tests and CI.
    """
    _name(name, DATASETS, "raw_data", "example")
    seed = _seed(seed, "raw_data")
    quick, synthetic = _flag(quick, "quick", "raw_data"), _flag(synthetic, "synthetic", "raw_data")
    generator, full, small, _ = DATASETS[name]
    sizes = small if quick else full
    if name == "digits":  # shuffled like EpyNN's examples shuffle before the in-order split
        X, y = digits()
        order = np.random.default_rng(seed).permutation(len(y))
        return X[order], y[order]
    if name in REMOTES and not synthetic:
        n = sizes.get("n")
        X, y = load_real(name, n, seed, cache=cache, url=url, sha256=sha256)
        if name == "author_music" and quick:
            X = X[:, : sizes["samples"]]
        return X, y
    return generator(**sizes, seed=seed)


def prepare(name: str, *, seed: int = 0, quick: bool = False, synthetic: bool = False,
            cache: str | os.PathLike | None = None, url: str | None = None,
            sha256: str | None = None) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Train/validation splits ``{'dtrain': (X, Y), 'dval': (X, Y)}`` of example ``name``.

    The data of :func:`raw_data` goes through EpyNN's pipeline
    (:func:`epynn_jax.data.embed`: scaling, one-hot encoding, a 2:1 split in
    order). Returns the splits and the ``info`` dict of ``embed``.
    """
    from epynn_jax.data.dataset import embed

    _name(name, DATASETS, "prepare", "example")
    quick, synthetic = _flag(quick, "quick", "prepare"), _flag(synthetic, "synthetic", "prepare")
    X, y = raw_data(name, seed=seed, quick=quick, synthetic=synthetic, cache=cache, url=url,
                    sha256=sha256)
    if name == "digits":
        X = X / 16.0
    splits, info = embed(X, y, relative_size=(2, 1, 0), **DATASETS[name][3])
    return {k: (v.X, v.Y) for k, v in splits.items()}, info
