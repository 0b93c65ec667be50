"""Sealed files: a migration's staged source exports, encrypted in chunks under its own key.

A staged file is ``MAGIC`` followed by chunks ``[length:4][nonce:12][ciphertext+tag]``. Each
chunk is AES-256-GCM under the staging key with associated data binding the file's context
(migration, file index), the chunk's index and whether it is the last one, so chunks cannot be
reordered, moved to another file or dropped from the end without `InvalidCiphertext`.

Destroying the staging key (it is kept wrapped in the key store) makes every staged file and
every quarantined record of the migration unreadable, wherever copies of them went.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from labvault.errors import InvalidCiphertext
from labvault.secret import Secret

MAGIC = b"LVSTAGE1"
CHUNK = 1 << 20
_NONCE = 12
_LEN = struct.Struct(">I")
_TAG = 16


def staging_context(migration_id: str, file_index: int) -> bytes:
    return f"labvault/staging/v1|{migration_id}|{file_index}".encode()


def _aad(context: bytes, index: int, final: bool) -> bytes:
    return context + struct.pack(">QB", index, 1 if final else 0)


class DigestMismatch(ValueError):
    """The plaintext read is not the one expected: nothing was staged."""


def seal_file(key: Secret[bytes], src: BinaryIO, dst: Path, context: bytes, *,
              expected_sha256: bytes,
              progress: Callable[[int], None] | None = None) -> int:
    """Copy `src` into the sealed file `dst`; returns the plaintext size.

    The copy is written under a temporary name and fsynced; it takes its final name only if
    the plaintext's SHA-256 is `expected_sha256`, so a staged file that exists is always the
    planned one, even after a crash. Otherwise the temporary file is removed and
    `DigestMismatch` raised.
    """
    aead = AESGCM(key.reveal())
    digest, size = hashlib.sha256(), 0
    tmp = dst.with_name(dst.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(MAGIC)
        index = 0
        chunk = src.read(CHUNK)
        while True:
            following = src.read(CHUNK) if chunk else b""
            final = not following
            digest.update(chunk)
            size += len(chunk)
            nonce = os.urandom(_NONCE)
            body = aead.encrypt(nonce, chunk, _aad(context, index, final))
            out.write(_LEN.pack(len(body)) + nonce + body)
            if progress and chunk:
                progress(len(chunk))
            if final:
                break
            chunk, index = following, index + 1
        out.flush()
        os.fsync(out.fileno())
    if not hmac.compare_digest(digest.digest(), expected_sha256):
        tmp.unlink()
        raise DigestMismatch("the source's SHA-256 differs from the expected one")
    os.replace(tmp, dst)
    dir_fd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size


class SealedFileReader(io.RawIOBase):
    """A read-only binary stream over a sealed file's plaintext, opened chunk by chunk."""

    def __init__(self, key: Secret[bytes], path: Path, context: bytes) -> None:
        super().__init__()
        self._aead = AESGCM(key.reveal())
        self._file = path.open("rb")
        self._context = context
        self._index = 0
        self._buffer = memoryview(b"")
        self._done = False
        if self._file.read(len(MAGIC)) != MAGIC:
            self._file.close()
            raise InvalidCiphertext()

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        head = self._file.read(_LEN.size)
        if len(head) != _LEN.size:
            raise InvalidCiphertext()  # truncated: the final chunk never came
        (length,) = _LEN.unpack(head)
        if length < _TAG or length > CHUNK + _TAG:
            raise InvalidCiphertext()
        nonce = self._file.read(_NONCE)
        body = self._file.read(length)
        if len(nonce) != _NONCE or len(body) != length:
            raise InvalidCiphertext()
        for final in (False, True):
            try:
                plain = self._aead.decrypt(nonce, body, _aad(self._context, self._index, final))
            except InvalidTag:
                continue
            self._index += 1
            self._buffer = memoryview(plain)
            if final:
                self._done = True
                if self._file.read(1):
                    raise InvalidCiphertext()  # bytes after the final chunk
            return
        raise InvalidCiphertext()

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        while not self._buffer and not self._done:
            self._next_chunk()
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def open_sealed(key: Secret[bytes], path: Path, context: bytes) -> BinaryIO:
    return io.BufferedReader(SealedFileReader(key, path, context), buffer_size=1 << 16)  # type: ignore[return-value]


__all__ = ["DigestMismatch", "open_sealed", "seal_file", "staging_context"]
