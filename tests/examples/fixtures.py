"""Small archives shaped like EpyNN's downloads, built in a temporary folder."""

from __future__ import annotations

import gzip
import io
import tarfile
import wave
from pathlib import Path

import numpy as np

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, payload in files.items():
            _add(tar, name, payload)
    return path


def ptm_archive(folder: Path, n_pos: int = 30, n_neg: int = 45, seed: int = 0) -> Path:
    """``data/21_positive.dat`` (a P after the centre) and ``data/21_negative.dat``."""
    rng = np.random.default_rng(seed)

    def peptides(n, motif):
        rows = rng.choice(list(AMINO), (n, 21))
        if motif:
            rows[:, 11] = "P"
        return "\n".join("".join(r) for r in rows) + "\n"

    return _tar(folder / "ptm_prediction_data.tar", {
        "data/21_positive.dat": peptides(n_pos, True).encode(),
        "data/21_negative.dat": peptides(n_neg, False).encode(),
    })


def wav_bytes(signal: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(signal, "<i2").tobytes())
    return buf.getvalue()


def music_archive(folder: Path, rate: int = 20000, seconds: float = 2.5) -> Path:
    """Two WAV files per class; each yields 2 one-second clips at 10 kHz."""
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(0)
    files = {}
    for i in range(2):
        files[f"data/true/clip{i}.wav"] = wav_bytes(8000 * np.sin(2 * np.pi * 220 * t), rate)
        files[f"data/false/clip{i}.wav"] = wav_bytes(rng.normal(0, 3000, t.size), rate)
    return _tar(folder / "author_music.tar", files)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(head + array.astype(np.uint8).tobytes())


def mnist_archive(folder: Path, n: int = 40) -> Path:
    """IDX images whose brightness encodes the label, and the labels."""
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    for i, y in enumerate(labels):
        images[i, 2 * y: 2 * y + 4, :] = 255
    return _tar(folder / "mnist_database.tar", {
        "data/train-images-idx3-ubyte.gz": idx_bytes(images, 2051),
        "data/train-labels-idx1-ubyte.gz": idx_bytes(labels, 2049),
    })


def url(path: Path) -> str:
    return path.resolve().as_uri()
