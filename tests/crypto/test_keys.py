"""Tests of labvault.crypto.keys.LocalKeyFile, against real files and real AES-GCM / Argon2id.

Passphrase-protected files use FAST_KDF (8 MiB, one pass) so the suite stays fast; the format
stores its KDF parameters, so reopening uses them too.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from db_support import FAST_KDF
from labvault.crypto.envelope import dek_context, new_data_key
from labvault.crypto.keys import (
    KEY_BYTES,
    KEYFILE_FORMAT,
    SEALED_KEYFILE_FORMAT,
    Argon2Params,
    LocalKeyFile,
)
from labvault.errors import InvalidCiphertext, KeyProviderError
from labvault.secret import MASK, Secret

PASSPHRASE = Secret("correct horse battery staple")
PATIENT_A = uuid.UUID("6f1c2a9e-8d3b-4c55-9a0e-1b2c3d4e5f60")
PATIENT_B = uuid.UUID("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def all_encodings(key: bytes) -> list[bytes]:
    """Forms a key could leak under: raw, base64, hex (both cases)."""
    return [key, b64(key), key.hex().encode(), key.hex().upper().encode()]


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "master.key"


@pytest.fixture
def provider(key_path: Path) -> LocalKeyFile:
    return LocalKeyFile.create(key_path)


@pytest.fixture
def sealed_provider(key_path: Path) -> LocalKeyFile:
    return LocalKeyFile.create(key_path, passphrase=PASSPHRASE, kdf=FAST_KDF)


def test_fast_kdf_is_the_cheap_one() -> None:
    assert Argon2Params(memory_cost_kib=8192, iterations=1, lanes=1) == FAST_KDF


# -- file creation and permissions -----------------------------------------------------------
def test_create_writes_file_0600_in_new_directory_0700(key_path: Path) -> None:
    assert not key_path.parent.exists()
    LocalKeyFile.create(key_path)
    assert key_path.is_file()
    assert mode_of(key_path) == 0o600
    assert mode_of(key_path.parent) == 0o700
    # the temporary file used for the atomic replace is gone
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["master.key"]


def test_create_with_passphrase_also_writes_0600(key_path: Path) -> None:
    LocalKeyFile.create(key_path, passphrase=PASSPHRASE, kdf=FAST_KDF)
    assert mode_of(key_path) == 0o600
    assert mode_of(key_path.parent) == 0o700


def test_create_refuses_to_overwrite_existing_key_file(provider: LocalKeyFile, key_path: Path) -> None:
    before = key_path.read_bytes()
    with pytest.raises(KeyProviderError, match="already exists"):
        LocalKeyFile.create(key_path)
    with pytest.raises(KeyProviderError):
        LocalKeyFile.create(key_path, passphrase=PASSPHRASE, kdf=FAST_KDF)
    assert key_path.read_bytes() == before


def test_create_refuses_to_overwrite_any_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(b"not a key file")
    with pytest.raises(KeyProviderError):
        LocalKeyFile.create(path)
    assert path.read_bytes() == b"not a key file"


def test_open_missing_file_raises_key_provider_error(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="not found"):
        LocalKeyFile.open(tmp_path / "nope.key")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o620, 0o602, 0o610, 0o601, 0o777])
def test_open_refuses_file_readable_or_writable_by_group_or_others(
    provider: LocalKeyFile, key_path: Path, mode: int
) -> None:
    os.chmod(key_path, mode)
    with pytest.raises(KeyProviderError, match="chmod 600"):
        LocalKeyFile.open(key_path)
    # the refusal is about the mode only: restoring 0600 makes the file usable again
    os.chmod(key_path, 0o600)
    assert LocalKeyFile.open(key_path).versions() == [1]


def test_open_refuses_protected_file_with_wide_mode_even_with_passphrase(
    sealed_provider: LocalKeyFile, key_path: Path
) -> None:
    os.chmod(key_path, 0o644)
    with pytest.raises(KeyProviderError):
        LocalKeyFile.open(key_path, PASSPHRASE)


def test_open_accepts_stricter_mode_0400(provider: LocalKeyFile, key_path: Path) -> None:
    os.chmod(key_path, 0o400)
    assert LocalKeyFile.open(key_path).active_version() == 1


def test_open_refuses_non_json_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"\x00\xffgarbage")
    os.close(fd)
    with pytest.raises(KeyProviderError):
        LocalKeyFile.open(path)


def test_open_refuses_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({"format": "something-else/9"}).encode())
    os.close(fd)
    with pytest.raises(KeyProviderError, match="unknown format"):
        LocalKeyFile.open(path)


@pytest.mark.parametrize("doc", [
    {"format": KEYFILE_FORMAT, "active": 1, "index_root": "AA=="},
    {"format": KEYFILE_FORMAT, "active": 1, "kek": {"1": "!not base64!"}, "index_root": "AA=="},
    [1, 2, 3],
], ids=["missing-kek", "bad-base64", "not-an-object"])
def test_open_corrupt_key_file_raises_key_provider_error(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps(doc).encode())
    os.close(fd)
    with pytest.raises(KeyProviderError):
        LocalKeyFile.open(path)


# -- wrap / unwrap ----------------------------------------------------------------------------
def test_wrap_unwrap_round_trip(provider: LocalKeyFile, key_path: Path) -> None:
    dek = new_data_key()
    version, wrapped = provider.wrap(dek, dek_context(PATIENT_A))
    assert version == 1
    assert dek.reveal() not in wrapped
    assert len(wrapped) == 12 + KEY_BYTES + 16  # nonce + ciphertext + tag
    opened = provider.unwrap(version, wrapped, dek_context(PATIENT_A))
    assert isinstance(opened, Secret)
    assert opened.reveal() == dek.reveal()
    # and through a freshly opened provider (the KEK really is persisted)
    reopened = LocalKeyFile.open(key_path)
    assert reopened.unwrap(version, wrapped, dek_context(PATIENT_A)).reveal() == dek.reveal()


def test_wrapping_twice_gives_different_ciphertexts(provider: LocalKeyFile) -> None:
    dek = new_data_key()
    ctx = dek_context(PATIENT_A)
    _, w1 = provider.wrap(dek, ctx)
    _, w2 = provider.wrap(dek, ctx)
    assert w1 != w2
    assert w1[:12] != w2[:12]


def test_unwrap_with_other_patient_context_fails(provider: LocalKeyFile) -> None:
    version, wrapped = provider.wrap(new_data_key(), dek_context(PATIENT_A))
    with pytest.raises(InvalidCiphertext):
        provider.unwrap(version, wrapped, dek_context(PATIENT_B))
    with pytest.raises(InvalidCiphertext):
        provider.unwrap(version, wrapped, b"")


def test_unwrap_with_any_flipped_byte_fails(provider: LocalKeyFile) -> None:
    version, wrapped = provider.wrap(new_data_key(), dek_context(PATIENT_A))
    for i in range(len(wrapped)):
        for mask in (0x01, 0x80):
            tampered = bytearray(wrapped)
            tampered[i] ^= mask
            with pytest.raises(InvalidCiphertext):
                provider.unwrap(version, bytes(tampered), dek_context(PATIENT_A))


@pytest.mark.parametrize("version", [0, 2, -1, 99])
def test_unwrap_with_unknown_version_fails(provider: LocalKeyFile, version: int) -> None:
    _, wrapped = provider.wrap(new_data_key(), dek_context(PATIENT_A))
    with pytest.raises(InvalidCiphertext):
        provider.unwrap(version, wrapped, dek_context(PATIENT_A))


def test_unwrap_under_wrong_existing_version_fails(provider: LocalKeyFile) -> None:
    v1, w1 = provider.wrap(new_data_key(), dek_context(PATIENT_A))
    v2 = provider.add_version()
    _, w2 = provider.wrap(new_data_key(), dek_context(PATIENT_A))
    with pytest.raises(InvalidCiphertext):
        provider.unwrap(v2, w1, dek_context(PATIENT_A))
    with pytest.raises(InvalidCiphertext):
        provider.unwrap(v1, w2, dek_context(PATIENT_A))


def test_unwrap_truncated_or_extended_fails(provider: LocalKeyFile) -> None:
    version, wrapped = provider.wrap(new_data_key(), dek_context(PATIENT_A))
    for n in range(8, len(wrapped)):
        with pytest.raises(InvalidCiphertext):
            provider.unwrap(version, wrapped[:n], dek_context(PATIENT_A))
    with pytest.raises(InvalidCiphertext):
        provider.unwrap(version, wrapped + b"\x00", dek_context(PATIENT_A))


@pytest.mark.parametrize("length", [0, 1, 7])
def test_unwrap_very_short_blob_fails_with_invalid_ciphertext(provider: LocalKeyFile, length: int) -> None:
    version, wrapped = provider.wrap(new_data_key(), dek_context(PATIENT_A))
    with pytest.raises(InvalidCiphertext):
        provider.unwrap(version, wrapped[:length], dek_context(PATIENT_A))


def test_unwrap_with_other_key_file_fails(tmp_path: Path, provider: LocalKeyFile) -> None:
    other = LocalKeyFile.create(tmp_path / "other" / "master.key")
    version, wrapped = provider.wrap(new_data_key(), dek_context(PATIENT_A))
    assert version == other.active_version()
    with pytest.raises(InvalidCiphertext):
        other.unwrap(version, wrapped, dek_context(PATIENT_A))


# -- passphrase-protected files ----------------------------------------------------------------
def test_protected_file_opens_with_right_passphrase(sealed_provider: LocalKeyFile, key_path: Path) -> None:
    dek = new_data_key()
    version, wrapped = sealed_provider.wrap(dek, dek_context(PATIENT_A))
    reopened = LocalKeyFile.open(key_path, Secret("correct horse battery staple"))
    assert reopened.versions() == [1]
    assert reopened.unwrap(version, wrapped, dek_context(PATIENT_A)).reveal() == dek.reveal()
    assert reopened.index_key("x").reveal() == sealed_provider.index_key("x").reveal()


def test_protected_file_records_its_kdf_parameters(sealed_provider: LocalKeyFile, key_path: Path) -> None:
    doc = json.loads(key_path.read_bytes())
    assert doc["format"] == SEALED_KEYFILE_FORMAT
    assert doc["kdf"]["name"] == "argon2id"
    assert doc["kdf"]["params"] == {"memory_cost_kib": 8192, "iterations": 1, "lanes": 1}
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 16


def test_protected_file_refuses_wrong_passphrase(sealed_provider: LocalKeyFile, key_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="wrong passphrase") as exc:
        LocalKeyFile.open(key_path, Secret("correct horse battery stapl"))
    assert "horse" not in str(exc.value)
    with pytest.raises(KeyProviderError):
        LocalKeyFile.open(key_path, Secret(""))


def test_protected_file_refuses_missing_passphrase(sealed_provider: LocalKeyFile, key_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="passphrase"):
        LocalKeyFile.open(key_path)


def test_unprotected_file_stores_keys_in_clear_base64(provider: LocalKeyFile, key_path: Path) -> None:
    """Control for the protected-file test below: the white-box key lookup does find keys."""
    data = key_path.read_bytes()
    assert b64(provider._kek[1]) in data
    assert b64(provider._index_root) in data


def test_protected_file_does_not_contain_the_keys(sealed_provider: LocalKeyFile, key_path: Path) -> None:
    sealed_provider.add_version()
    data = key_path.read_bytes()
    secrets = [*sealed_provider._kek.values(), sealed_provider._index_root]
    assert len(secrets) == 3
    for key in secrets:
        assert len(key) == KEY_BYTES
        for form in all_encodings(key):
            assert form not in data
    assert b"correct horse" not in data
    assert b"index_root" not in data and b'"kek"' not in data
    # still protected and still openable after the rewrite
    assert mode_of(key_path) == 0o600
    with pytest.raises(KeyProviderError):
        LocalKeyFile.open(key_path)
    assert LocalKeyFile.open(key_path, PASSPHRASE).versions() == [1, 2]


def test_protected_file_is_resealed_with_fresh_salt_and_nonce(
    sealed_provider: LocalKeyFile, key_path: Path
) -> None:
    first = json.loads(key_path.read_bytes())
    sealed_provider.add_version()
    second = json.loads(key_path.read_bytes())
    assert first["kdf"]["salt"] != second["kdf"]["salt"]
    assert first["nonce"] != second["nonce"]


def test_unprotected_file_index_root_is_distinct_from_every_kek(
    provider: LocalKeyFile, key_path: Path
) -> None:
    provider.add_version()
    provider.add_version()
    doc = json.loads(key_path.read_bytes())
    assert doc["format"] == KEYFILE_FORMAT
    assert doc["active"] == 3
    keks = {int(v): base64.b64decode(k) for v, k in doc["kek"].items()}
    root = base64.b64decode(doc["index_root"])
    assert sorted(keks) == [1, 2, 3]
    assert len(root) == KEY_BYTES
    assert all(len(k) == KEY_BYTES for k in keks.values())
    assert root not in keks.values()
    assert len(set(keks.values())) == 3


# -- index keys --------------------------------------------------------------------------------
def test_index_key_is_deterministic_across_reopen(provider: LocalKeyFile, key_path: Path) -> None:
    k1 = provider.index_key("patient.nir")
    assert isinstance(k1, Secret)
    assert len(k1.reveal()) == KEY_BYTES
    assert provider.index_key("patient.nir").reveal() == k1.reveal()
    assert LocalKeyFile.open(key_path).index_key("patient.nir").reveal() == k1.reveal()


def test_index_key_differs_per_name(provider: LocalKeyFile) -> None:
    names = ["patient.nir", "patient.last_name+birth_date", "patient.nir ", "", "a", "b"]
    keys = [provider.index_key(n).reveal() for n in names]
    assert len(set(keys)) == len(names)


def test_index_key_differs_from_kek_and_index_root(provider: LocalKeyFile) -> None:
    provider.add_version()
    key = provider.index_key("patient.nir").reveal()
    assert key not in provider._kek.values()
    assert key != provider._index_root


def test_index_key_differs_between_key_files(tmp_path: Path, provider: LocalKeyFile) -> None:
    other = LocalKeyFile.create(tmp_path / "other" / "master.key")
    assert other.index_key("patient.nir").reveal() != provider.index_key("patient.nir").reveal()


def test_index_key_is_unchanged_by_kek_rotation(provider: LocalKeyFile, key_path: Path) -> None:
    before = provider.index_key("patient.nir").reveal()
    provider.add_version()
    provider.retire(1)
    assert LocalKeyFile.open(key_path).index_key("patient.nir").reveal() == before


# -- rotation and retirement -------------------------------------------------------------------
def test_add_version_activates_new_version_and_old_keys_still_open(
    provider: LocalKeyFile, key_path: Path
) -> None:
    dek_old, dek_new = new_data_key(), new_data_key()
    v1, w_old = provider.wrap(dek_old, dek_context(PATIENT_A))
    assert provider.add_version() == 2
    assert provider.active_version() == 2
    assert provider.versions() == [1, 2]
    assert provider._kek[1] != provider._kek[2]
    v2, w_new = provider.wrap(dek_new, dek_context(PATIENT_B))
    assert (v1, v2) == (1, 2)
    for p in (provider, LocalKeyFile.open(key_path)):
        assert p.active_version() == 2
        assert p.versions() == [1, 2]
        assert p.unwrap(v1, w_old, dek_context(PATIENT_A)).reveal() == dek_old.reveal()
        assert p.unwrap(v2, w_new, dek_context(PATIENT_B)).reveal() == dek_new.reveal()


def test_retire_makes_keys_wrapped_under_it_unreadable_and_persists(
    provider: LocalKeyFile, key_path: Path
) -> None:
    dek_old, dek_new = new_data_key(), new_data_key()
    v1, w_old = provider.wrap(dek_old, dek_context(PATIENT_A))
    provider.add_version()
    v2, w_new = provider.wrap(dek_new, dek_context(PATIENT_A))
    provider.retire(v1)
    assert provider.versions() == [2]
    reopened = LocalKeyFile.open(key_path)
    assert reopened.versions() == [2]
    assert reopened.active_version() == 2
    stored = json.loads(key_path.read_bytes())["kek"]
    assert list(stored) == ["2"]
    assert base64.b64decode(stored["2"]) == provider._kek[2]
    for p in (provider, reopened):
        with pytest.raises(InvalidCiphertext):
            p.unwrap(v1, w_old, dek_context(PATIENT_A))
        assert p.unwrap(v2, w_new, dek_context(PATIENT_A)).reveal() == dek_new.reveal()


def test_retire_on_protected_file_persists(sealed_provider: LocalKeyFile, key_path: Path) -> None:
    v1, w_old = sealed_provider.wrap(new_data_key(), dek_context(PATIENT_A))
    sealed_provider.add_version()
    sealed_provider.retire(v1)
    reopened = LocalKeyFile.open(key_path, PASSPHRASE)
    assert reopened.versions() == [2]
    with pytest.raises(InvalidCiphertext):
        reopened.unwrap(v1, w_old, dek_context(PATIENT_A))


def test_retiring_the_active_version_is_refused(provider: LocalKeyFile, key_path: Path) -> None:
    dek = new_data_key()
    v1, wrapped = provider.wrap(dek, dek_context(PATIENT_A))
    with pytest.raises(KeyProviderError, match="active"):
        provider.retire(1)
    provider.add_version()
    with pytest.raises(KeyProviderError):
        provider.retire(2)
    for p in (provider, LocalKeyFile.open(key_path)):
        assert p.versions() == [1, 2]
        assert p.unwrap(v1, wrapped, dek_context(PATIENT_A)).reveal() == dek.reveal()


# -- representations ---------------------------------------------------------------------------
def test_provider_repr_shows_no_key_material(provider: LocalKeyFile, key_path: Path) -> None:
    provider.add_version()
    index_key = provider.index_key("patient.nir").reveal()
    text = repr(provider) + str(provider)
    assert "LocalKeyFile" in text and "versions=[1, 2]" in text
    for key in (*provider._kek.values(), provider._index_root, index_key):
        for form in all_encodings(key):
            assert form.decode("latin-1") not in text
        assert repr(key) not in text


def test_protected_provider_repr_does_not_show_passphrase(sealed_provider: LocalKeyFile) -> None:
    assert "horse" not in repr(sealed_provider)


def test_secret_repr_str_and_format_are_masked(provider: LocalKeyFile) -> None:
    key = provider.index_key("patient.nir")
    raw = key.reveal()
    for text in (repr(key), str(key), f"{key}", f"{key!r}", f"{key:>40}", repr([key]), repr({"k": key})):
        assert MASK in text
        assert raw.hex() not in text
        assert repr(raw) not in text
        assert b64(raw).decode() not in text
    assert repr(key) == f"Secret('{MASK}')"
    assert repr(PASSPHRASE) == f"Secret('{MASK}')"
    assert "horse" not in f"{PASSPHRASE} {PASSPHRASE!s}"
