"""Several processes share one key file: a rotation by one is seen by the others."""

from __future__ import annotations

import uuid

import pytest

from labvault.crypto.envelope import dek_context, new_data_key
from labvault.crypto.keys import LocalKeyFile
from labvault.errors import InvalidCiphertext


def test_a_rotation_elsewhere_is_picked_up_before_wrapping(tmp_path):
    path = tmp_path / "master.key"
    LocalKeyFile.create(path)
    loader, rotator = LocalKeyFile.open(path), LocalKeyFile.open(path)
    ctx = dek_context(uuid.uuid4())
    old_version, old_wrapped = loader.wrap(new_data_key(), ctx)
    assert rotator.add_version() == 2
    version, wrapped = loader.wrap(new_data_key(), ctx)
    assert version == 2  # the loader did not keep wrapping under the version being retired
    rotator.retire(1)
    assert loader.unwrap(2, wrapped, ctx)
    assert old_version == 1
    with pytest.raises(InvalidCiphertext):  # the retired version is gone in every process
        loader.unwrap(1, old_wrapped, ctx)
    assert loader.versions() == [2]


def test_concurrent_rotations_do_not_overwrite_each_other(tmp_path):
    path = tmp_path / "master.key"
    LocalKeyFile.create(path)
    a, b = LocalKeyFile.open(path), LocalKeyFile.open(path)
    assert a.add_version() == 2
    assert b.add_version() == 3  # b saw a's version 2 before adding its own
    final = LocalKeyFile.open(path)
    assert final.versions() == [1, 2, 3]
    ctx = dek_context(uuid.uuid4())
    v, wrapped = a.wrap(new_data_key(), ctx)
    assert v == 3 and final.unwrap(v, wrapped, ctx)
