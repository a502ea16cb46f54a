"""Every array in a model file carries the SHA-256 of its .npy member, checked on load.

Files written before checksums existed (epynn_jax 0.1) have none: they load unverified,
with a warning; a file where only some arrays have one is refused.
"""

from __future__ import annotations

import hashlib
import warnings

import archive
import jax
import numpy as np
import pytest

from epynn_jax import layers, network
from epynn_jax.errors import ModelFileError
from epynn_jax.io import load_model, save_model


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    net = network.build([layers.LSTM(3), layers.Dense(2, "softmax")], (4, 2))
    params = network.init(net, jax.random.key(0))
    path = save_model(tmp_path_factory.mktemp("sums") / "lstm.epynn", net, params)
    return path, params




def _same(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def test_index_holds_the_sha256_of_every_member(lstm):
    path, _ = lstm
    doc, members = archive.members(path)
    assert len(doc["arrays"]) == 14
    for entry in doc["arrays"].values():
        assert entry["sha256"] == hashlib.sha256(members[entry["file"]]).hexdigest()


def test_swapping_two_same_shape_gate_arrays_is_detected(lstm, tmp_path):
    path, _ = lstm
    doc, members = archive.members(path)
    a, b = doc["arrays"]["params/0/Uf"]["file"], doc["arrays"]["params/0/Ug"]["file"]
    assert doc["arrays"]["params/0/Uf"]["shape"] == doc["arrays"]["params/0/Ug"]["shape"]
    members[a], members[b] = members[b], members[a]  # the members renamed, the index kept
    with pytest.raises(ModelFileError, match=r"array 'params/0/U[fg]'.*checksum"):
        load_model(archive.write(tmp_path / "swapped.epynn", doc, members))


def test_changed_bytes_with_a_valid_zip_crc_are_detected(lstm, tmp_path):
    path, _ = lstm
    doc, members = archive.members(path)
    name = doc["arrays"]["params/1/W"]["file"]
    data = bytearray(members[name])
    data[-1] ^= 0x01  # a finite float still: only the checksum can tell
    members[name] = bytes(data)
    with pytest.raises(ModelFileError, match=r"array 'params/1/W'.*checksum"):
        load_model(archive.write(tmp_path / "flipped.epynn", doc, members))


def test_a_file_without_checksums_loads_with_a_warning(lstm, tmp_path):
    path, params = lstm
    doc, members = archive.members(path)
    for entry in doc["arrays"].values():
        del entry["sha256"]
    old = archive.write(tmp_path / "old.epynn", doc, members)
    with pytest.warns(UserWarning, match="no checksums.*re-save"):
        m = load_model(old)
    assert _same(m.params, params)


def test_a_file_with_only_some_checksums_is_refused(lstm, tmp_path):
    path, _ = lstm
    doc, members = archive.members(path)
    del doc["arrays"]["params/0/Vf"]["sha256"]
    with pytest.raises(ModelFileError, match=r"array 'params/0/Vf'.*no sha256"):
        load_model(archive.write(tmp_path / "some.epynn", doc, members))


def test_a_current_file_loads_without_warning(lstm):
    path, params = lstm
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = load_model(path)
    assert _same(m.params, params)
