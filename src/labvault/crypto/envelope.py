"""Envelope sealing of fields: AES-256-GCM under the patient's data key.

A sealed field is ``format (1 byte) | key version (4 bytes, big endian) | nonce (12) | ct+tag``.
Its associated data binds the table, the column, the record id and the key version, so a
ciphertext copied into another row or another column, or replayed under another key version,
fails to open. Every failure to open raises the same `InvalidCiphertext`.

`Sealed` is the only type the store's personal columns accept (see `labvault.store.tables`):
there is no path by which a personal value reaches the database in clear.
"""

from __future__ import annotations

import os
import struct
import uuid
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from labvault.errors import InvalidCiphertext
from labvault.secret import Secret

FORMAT_AES_GCM = 1
_HEADER = struct.Struct(">BI")
_NONCE = 12
DEK_BYTES = 32


class Sealed:
    """Ciphertext of one personal field. Its repr shows only the length."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        if type(blob) is not bytes:
            if not isinstance(blob, bytes | bytearray | memoryview):
                raise TypeError("Sealed wraps ciphertext bytes")
            blob = bytes(blob)
        self.blob = blob

    def __repr__(self) -> str:
        return f"Sealed(<{len(self.blob)} bytes>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.blob == self.blob

    def __hash__(self) -> int:
        return hash(self.blob)

    @property
    def key_version(self) -> int:
        return _HEADER.unpack_from(self.blob)[1]


RecordRef = uuid.UUID | str
"""A record id, or a string that also names the record's place (its parents and position)."""


def field_aad(table: str, column: str, record_id: RecordRef, key_version: int) -> bytes:
    ref = record_id.hex if isinstance(record_id, uuid.UUID) else record_id
    if "|" in ref:
        raise ValueError("a record reference cannot contain '|'")
    return f"labvault/field/v1|{table}|{column}|{ref}|{key_version}".encode()


class FieldCipher(Protocol):
    """Seals and opens the fields of one patient."""

    def seal(self, table: str, column: str, record_id: RecordRef, plaintext: bytes) -> Sealed: ...

    def open(self, table: str, column: str, record_id: RecordRef, sealed: Sealed) -> bytes: ...


class AesGcmFieldCipher:
    """AES-256-GCM with a random 96-bit nonce per field, under one patient's data key."""

    __slots__ = ("_aead", "_version")

    def __init__(self, dek: Secret[bytes], key_version: int) -> None:
        self._aead = AESGCM(dek.reveal())
        self._version = key_version

    def __repr__(self) -> str:
        return f"AesGcmFieldCipher(version={self._version})"

    def seal(self, table: str, column: str, record_id: RecordRef, plaintext: bytes) -> Sealed:
        nonce = os.urandom(_NONCE)
        aad = field_aad(table, column, record_id, self._version)
        return Sealed(_HEADER.pack(FORMAT_AES_GCM, self._version) + nonce
                      + self._aead.encrypt(nonce, plaintext, aad))

    def open(self, table: str, column: str, record_id: RecordRef, sealed: Sealed) -> bytes:
        blob = sealed.blob
        try:
            fmt, version = _HEADER.unpack_from(blob)
        except struct.error:
            raise InvalidCiphertext() from None
        if fmt != FORMAT_AES_GCM or version != self._version:
            raise InvalidCiphertext()
        start = _HEADER.size
        nonce = blob[start:start + _NONCE]
        try:
            return self._aead.decrypt(nonce, blob[start + _NONCE:],
                                      field_aad(table, column, record_id, version))
        except (InvalidTag, ValueError):
            raise InvalidCiphertext() from None


def new_data_key() -> Secret[bytes]:
    return Secret(AESGCM.generate_key(256))


def dek_context(record_id: uuid.UUID) -> bytes:
    """What a wrapped data key is bound to: it opens only for its own patient."""
    return b"patient|" + record_id.bytes


def staging_key_context(migration_id: uuid.UUID) -> bytes:
    """What a wrapped staging key is bound to: it opens only for its own migration."""
    return b"staging|" + migration_id.bytes


def pending_key_context(patient_id: uuid.UUID) -> bytes:
    """What a patient's pending data key (a re-key under way) is bound to: it opens only as that
    patient's pending key, never as a data key nor as a staging key."""
    return b"pending|" + patient_id.bytes
