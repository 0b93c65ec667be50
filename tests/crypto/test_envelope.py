"""Tests of labvault.crypto.envelope: field sealing bound to table, column, record and key version."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from labvault.crypto.envelope import (
    DEK_BYTES,
    FORMAT_AES_GCM,
    AesGcmFieldCipher,
    Sealed,
    dek_context,
    field_aad,
    new_data_key,
)
from labvault.errors import InvalidCiphertext
from labvault.secret import Secret

HEADER = 5  # format byte + 4-byte big-endian key version
NONCE = 12
TAG = 16

DEK = new_data_key()
CIPHER = AesGcmFieldCipher(DEK, 1)
RID = uuid.UUID("12345678-1234-4678-9234-567812345678")

names = st.text(min_size=1, max_size=40)
plaintexts = st.binary(max_size=512)


def seal_one(plaintext: bytes = b"DUPONT Marie") -> Sealed:
    return CIPHER.seal("patient", "last_name", RID, plaintext)


# -- round trip ---------------------------------------------------------------------------------
@given(table=names, column=names, record_id=st.uuids(), plaintext=plaintexts)
def test_seal_open_round_trip(table: str, column: str, record_id: uuid.UUID, plaintext: bytes) -> None:
    sealed = CIPHER.seal(table, column, record_id, plaintext)
    assert isinstance(sealed, Sealed)
    assert len(sealed.blob) == HEADER + NONCE + len(plaintext) + TAG
    assert sealed.blob[0] == FORMAT_AES_GCM
    assert sealed.key_version == 1
    assert CIPHER.open(table, column, record_id, sealed) == plaintext
    # the stored form goes through bytes (as in a database column)
    assert CIPHER.open(table, column, record_id, Sealed(bytearray(sealed.blob))) == plaintext


@given(plaintext=st.binary(min_size=16, max_size=256))
def test_sealed_blob_does_not_contain_plaintext(plaintext: bytes) -> None:
    assert plaintext not in seal_one(plaintext).blob


@given(version=st.integers(min_value=0, max_value=2**32 - 1), plaintext=plaintexts)
def test_round_trip_under_any_key_version(version: int, plaintext: bytes) -> None:
    cipher = AesGcmFieldCipher(DEK, version)
    sealed = cipher.seal("result", "value", RID, plaintext)
    assert sealed.key_version == version
    assert cipher.open("result", "value", RID, sealed) == plaintext


def test_open_accepts_a_fresh_cipher_over_the_same_dek() -> None:
    sealed = seal_one()
    fresh = AesGcmFieldCipher(Secret(DEK.reveal()), 1)
    assert fresh.open("patient", "last_name", RID, sealed) == b"DUPONT Marie"


# -- binding to where the value belongs -----------------------------------------------------------
@given(a=st.uuids(), b=st.uuids(), plaintext=plaintexts)
def test_ciphertext_moved_to_another_record_fails(a: uuid.UUID, b: uuid.UUID, plaintext: bytes) -> None:
    assume(a != b)
    sealed = CIPHER.seal("patient", "last_name", a, plaintext)
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "last_name", b, sealed)


@given(table=names, c1=names, c2=names, plaintext=plaintexts)
def test_ciphertext_moved_to_another_column_fails(table: str, c1: str, c2: str, plaintext: bytes) -> None:
    assume(c1 != c2)
    sealed = CIPHER.seal(table, c1, RID, plaintext)
    with pytest.raises(InvalidCiphertext):
        CIPHER.open(table, c2, RID, sealed)


@given(t1=names, t2=names, column=names, plaintext=plaintexts)
def test_ciphertext_moved_to_another_table_fails(t1: str, t2: str, column: str, plaintext: bytes) -> None:
    assume(t1 != t2)
    sealed = CIPHER.seal(t1, column, RID, plaintext)
    with pytest.raises(InvalidCiphertext):
        CIPHER.open(t2, column, RID, sealed)


def test_realistic_swaps_fail() -> None:
    first_name = CIPHER.seal("patient", "first_name", RID, b"Marie")
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "last_name", RID, first_name)
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("comment", "first_name", RID, first_name)
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "first_name", uuid.UUID(int=RID.int ^ 1), first_name)
    assert CIPHER.open("patient", "first_name", RID, first_name) == b"Marie"


def test_field_aad_binds_every_part() -> None:
    base = field_aad("patient", "last_name", RID, 1)
    others = [
        field_aad("patient2", "last_name", RID, 1),
        field_aad("patient", "first_name", RID, 1),
        field_aad("patient", "last_name", uuid.UUID(int=RID.int + 1), 1),
        field_aad("patient", "last_name", RID, 2),
    ]
    assert base not in others
    assert len(set(others)) == len(others)


# -- tampering ------------------------------------------------------------------------------------
@given(plaintext=plaintexts, data=st.data())
def test_any_single_bit_flip_fails(plaintext: bytes, data: st.DataObject) -> None:
    sealed = seal_one(plaintext)
    bit = data.draw(st.integers(min_value=0, max_value=len(sealed.blob) * 8 - 1), label="bit")
    tampered = bytearray(sealed.blob)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "last_name", RID, Sealed(bytes(tampered)))


def test_every_single_bit_flip_fails_exhaustively() -> None:
    sealed = seal_one(b"1 85 05 78 006 084 91")
    for bit in range(len(sealed.blob) * 8):
        tampered = bytearray(sealed.blob)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidCiphertext):
            CIPHER.open("patient", "last_name", RID, Sealed(bytes(tampered)))


@given(plaintext=plaintexts, data=st.data())
def test_truncated_blob_fails(plaintext: bytes, data: st.DataObject) -> None:
    sealed = seal_one(plaintext)
    n = data.draw(st.integers(min_value=0, max_value=len(sealed.blob) - 1), label="kept bytes")
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "last_name", RID, Sealed(sealed.blob[:n]))


def test_every_truncation_fails() -> None:
    sealed = seal_one(b"x")
    for n in range(len(sealed.blob)):
        with pytest.raises(InvalidCiphertext):
            CIPHER.open("patient", "last_name", RID, Sealed(sealed.blob[:n]))


@given(plaintext=plaintexts, extra=st.binary(min_size=1, max_size=32))
def test_extended_blob_fails(plaintext: bytes, extra: bytes) -> None:
    sealed = seal_one(plaintext)
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "last_name", RID, Sealed(sealed.blob + extra))


def test_empty_blob_fails() -> None:
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "last_name", RID, Sealed(b""))


@pytest.mark.parametrize("fmt", [0, 2, 255])
def test_unknown_format_byte_fails(fmt: int) -> None:
    sealed = seal_one()
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "last_name", RID, Sealed(bytes([fmt]) + sealed.blob[1:]))


@given(garbage=st.binary(max_size=64))
def test_random_garbage_fails(garbage: bytes) -> None:
    with pytest.raises(InvalidCiphertext):
        CIPHER.open("patient", "last_name", RID, Sealed(garbage))


# -- keys and versions ----------------------------------------------------------------------------
def test_cipher_with_another_dek_fails() -> None:
    sealed = seal_one()
    other = AesGcmFieldCipher(new_data_key(), 1)
    with pytest.raises(InvalidCiphertext):
        other.open("patient", "last_name", RID, sealed)


@pytest.mark.parametrize("version", [0, 2, 2**32 - 1])
def test_cipher_with_another_key_version_fails(version: int) -> None:
    sealed = seal_one()
    with pytest.raises(InvalidCiphertext):
        AesGcmFieldCipher(DEK, version).open("patient", "last_name", RID, sealed)


def test_rewritten_header_version_fails_even_for_matching_cipher() -> None:
    """Relabelling a v1 ciphertext as v2 is caught by the AAD, not only by the header check."""
    sealed = seal_one()
    relabelled = Sealed(struct.pack(">BI", FORMAT_AES_GCM, 2) + sealed.blob[HEADER:])
    assert relabelled.key_version == 2
    with pytest.raises(InvalidCiphertext):
        AesGcmFieldCipher(DEK, 2).open("patient", "last_name", RID, relabelled)


def test_new_data_key_is_random_and_32_bytes() -> None:
    a, b = new_data_key(), new_data_key()
    assert isinstance(a, Secret)
    assert len(a.reveal()) == DEK_BYTES == 32
    assert a.reveal() != b.reveal()


def test_dek_context_is_per_patient() -> None:
    other = uuid.UUID(int=RID.int + 1)
    assert dek_context(RID) != dek_context(other)
    assert dek_context(RID) == dek_context(uuid.UUID(str(RID)))


# -- Sealed ---------------------------------------------------------------------------------------
def test_sealed_repr_shows_only_length() -> None:
    sealed = seal_one(b"DUPONT Marie")
    text = repr(sealed)
    assert text == f"Sealed(<{len(sealed.blob)} bytes>)"
    assert sealed.blob.hex() not in text
    assert "DUPONT" not in text
    assert str(sealed) == text
    assert repr(Sealed(b"")) == "Sealed(<0 bytes>)"


def test_cipher_repr_shows_no_key() -> None:
    text = repr(CIPHER)
    assert text == "AesGcmFieldCipher(version=1)"
    assert DEK.reveal().hex() not in text


def test_two_seals_of_same_plaintext_differ() -> None:
    a, b = seal_one(b"same"), seal_one(b"same")
    assert a != b
    assert a.blob[HEADER:HEADER + NONCE] != b.blob[HEADER:HEADER + NONCE]
    assert CIPHER.open("patient", "last_name", RID, a) == CIPHER.open("patient", "last_name", RID, b)


@given(version=st.integers(min_value=0, max_value=2**32 - 1), rest=st.binary(max_size=40))
def test_sealed_key_version_reads_header(version: int, rest: bytes) -> None:
    blob = struct.pack(">BI", FORMAT_AES_GCM, version) + rest
    assert Sealed(blob).key_version == version


def test_sealed_key_version_is_big_endian() -> None:
    assert Sealed(b"\x01\x00\x00\x01\x02").key_version == 0x0102
    assert AesGcmFieldCipher(DEK, 7).seal("t", "c", RID, b"").key_version == 7


def test_sealed_equality_and_hash_follow_blob() -> None:
    sealed = seal_one()
    copy = Sealed(memoryview(sealed.blob))
    assert copy == sealed and hash(copy) == hash(sealed)
    assert sealed != sealed.blob


@pytest.mark.parametrize("value", ["text", 42, None, [1, 2]])
def test_sealed_refuses_non_bytes(value: object) -> None:
    with pytest.raises(TypeError):
        Sealed(value)  # type: ignore[arg-type]
