"""Key providers: where the master key (KEK) and the index root key live.

The KEK wraps each patient's data key (DEK) and never leaves the provider: callers hand the
provider a DEK to wrap or a wrapped DEK to open. The index root key is a different random
key; the provider derives one key per blind index from it (HKDF, domain-separated by name).

`LocalKeyFile` is the embedded default: a JSON file created with mode 0600, refusing to open if
its mode lets anyone else read it, optionally sealed under a passphrase through Argon2id
(memory-hard). Production deployments implement `KeyProvider` over an HSM (PKCS#11) or a KMS.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from labvault.errors import InvalidCiphertext, KeyProviderError
from labvault.secret import Secret

KEYFILE_FORMAT = "labvault-keyfile/1"
SEALED_KEYFILE_FORMAT = "labvault-keyfile-sealed/1"
KEY_BYTES = 32


class KeyProvider(Protocol):
    """What the vault needs from a key provider."""

    def active_version(self) -> int: ...

    def versions(self) -> list[int]: ...

    def wrap(self, dek: Secret[bytes], context: bytes) -> tuple[int, bytes]:
        """Wrap a DEK under the active KEK, bound to `context`. Returns (version, wrapped)."""
        ...

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> Secret[bytes]: ...

    def index_key(self, name: str) -> Secret[bytes]:
        """The key of one blind index, derived from the index root key."""
        ...

    def add_version(self) -> int:
        """Create a new KEK version and make it active."""
        ...

    def retire(self, version: int) -> None:
        """Destroy a KEK version. Anything still wrapped under it becomes unreadable."""
        ...


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id parameters (RFC 9106 second recommendation: 64 MiB, 3 passes, 4 lanes)."""

    memory_cost_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    def derive(self, passphrase: Secret[str], salt: bytes) -> bytes:
        kdf = Argon2id(
            salt=salt,
            length=KEY_BYTES,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_cost_kib,
        )
        return kdf.derive(passphrase.reveal().encode("utf-8"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _wrap_aad(version: int, context: bytes) -> bytes:
    return b"labvault/dek-wrap/v1|" + str(version).encode() + b"|" + context


class LocalKeyFile:
    """KEK versions and the index root key in one local file (mode 0600)."""

    def __init__(
        self,
        path: Path,
        kek: dict[int, bytes],
        active: int,
        index_root: bytes,
        passphrase: Secret[str] | None = None,
        kdf: Argon2Params | None = None,
    ) -> None:
        self._path = path
        self._kek = dict(kek)
        self._active = active
        self._index_root = index_root
        self._passphrase = passphrase
        self._kdf = kdf or Argon2Params()
        self._aead = {v: AESGCM(k) for v, k in self._kek.items()}
        self._index_keys: dict[str, Secret[bytes]] = {}
        self._seen: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"LocalKeyFile(path={str(self._path)!r}, versions={self.versions()})"

    # -- creation and loading -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path,
        passphrase: Secret[str] | None = None,
        kdf: Argon2Params | None = None,
    ) -> LocalKeyFile:
        if path.exists():
            raise KeyProviderError(f"key file {path} already exists; refusing to overwrite it")
        provider = cls(path, {1: AESGCM.generate_key(256)}, 1, os.urandom(KEY_BYTES),
                       passphrase, kdf)
        provider._save()
        return provider

    @classmethod
    def open(cls, path: Path, passphrase: Secret[str] | None = None) -> LocalKeyFile:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise KeyProviderError(f"key file {path} not found") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyProviderError(
                f"key file {path} is readable by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):o}); run chmod 600 on it"
            )
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            raise KeyProviderError(f"key file {path} is unreadable or corrupt") from None
        try:
            return cls._from_document(path, doc, passphrase)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise KeyProviderError(f"key file {path} is corrupt") from None

    @classmethod
    def _from_document(cls, path: Path, doc: dict, passphrase: Secret[str] | None) -> LocalKeyFile:
        kdf = None
        if doc.get("format") == SEALED_KEYFILE_FORMAT:
            if passphrase is None:
                raise KeyProviderError(f"key file {path} is passphrase-protected; give the passphrase")
            kdf = Argon2Params(**doc["kdf"]["params"])
            wrapping = kdf.derive(passphrase, _unb64(doc["kdf"]["salt"]))
            try:
                inner = AESGCM(wrapping).decrypt(
                    _unb64(doc["nonce"]), _unb64(doc["ciphertext"]), SEALED_KEYFILE_FORMAT.encode()
                )
            except InvalidTag:
                raise KeyProviderError("wrong passphrase for the key file") from None
            doc = json.loads(inner)
        if doc.get("format") != KEYFILE_FORMAT:
            raise KeyProviderError(f"key file {path} has an unknown format")
        kek = {int(v): _unb64(k) for v, k in doc["kek"].items()}
        active = int(doc["active"])
        if active not in kek or any(len(k) != KEY_BYTES for k in kek.values()):
            raise KeyProviderError(f"key file {path} is corrupt")
        provider = cls(path, kek, active, _unb64(doc["index_root"]), passphrase, kdf)
        provider._seen = provider._stamp()
        return provider

    def _document(self) -> bytes:
        doc = {
            "format": KEYFILE_FORMAT,
            "active": self._active,
            "kek": {str(v): _b64(k) for v, k in sorted(self._kek.items())},
            "index_root": _b64(self._index_root),
        }
        return json.dumps(doc, indent=1).encode()

    def _save(self) -> None:
        payload = self._document()
        if self._passphrase is not None:
            salt, nonce = os.urandom(16), os.urandom(12)
            wrapping = self._kdf.derive(self._passphrase, salt)
            sealed = AESGCM(wrapping).encrypt(nonce, payload, SEALED_KEYFILE_FORMAT.encode())
            payload = json.dumps({
                "format": SEALED_KEYFILE_FORMAT,
                "kdf": {"name": "argon2id", "salt": _b64(salt), "params": {
                    "memory_cost_kib": self._kdf.memory_cost_kib,
                    "iterations": self._kdf.iterations,
                    "lanes": self._kdf.lanes}},
                "nonce": _b64(nonce),
                "ciphertext": _b64(sealed),
            }, indent=1).encode()
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._path.with_name(self._path.name + ".new")
        tmp.unlink(missing_ok=True)  # a leftover from a crash; O_EXCL refuses planted links
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)  # writes it all, or raises (disk full) before the swap below
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        self._seen = self._stamp()
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power loss
        finally:
            os.close(dir_fd)

    # -- KeyProvider -----------------------------------------------------------------------
    def active_version(self) -> int:
        return self._active

    def versions(self) -> list[int]:
        return sorted(self._kek)

    # -- several processes share one key file -------------------------------------------------
    def _stamp(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            raise KeyProviderError(f"key file {self._path} disappeared") from None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _refresh(self) -> None:
        """Reload the versions if another process rotated the key file since we read it."""
        stamp = self._stamp()
        if stamp == self._seen:
            return
        fresh = LocalKeyFile.open(self._path, self._passphrase)
        self._kek, self._active, self._aead = fresh._kek, fresh._active, fresh._aead
        self._seen = stamp

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise changes to the key file between processes, on its latest state."""
        fd = os.open(self._path.with_name(self._path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._refresh()
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def wrap(self, dek: Secret[bytes], context: bytes) -> tuple[int, bytes]:
        self._refresh()  # never wrap under a version another process has just replaced
        nonce = os.urandom(12)
        v = self._active
        return v, nonce + self._aead[v].encrypt(nonce, dek.reveal(), _wrap_aad(v, context))

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> Secret[bytes]:
        self._refresh()  # a version retired by another process is forgotten here too
        aead = self._aead.get(version)
        if aead is None:
            raise InvalidCiphertext()
        try:
            return Secret(aead.decrypt(wrapped[:12], wrapped[12:], _wrap_aad(version, context)))
        except (InvalidTag, ValueError):
            raise InvalidCiphertext() from None

    def index_key(self, name: str) -> Secret[bytes]:
        key = self._index_keys.get(name)
        if key is None:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                        info=b"labvault/blind-index/v1/" + name.encode())
            key = self._index_keys[name] = Secret(hkdf.derive(self._index_root))
        return key

    def add_version(self) -> int:
        with self._exclusive():
            v = max(self._kek) + 1
            self._kek[v] = AESGCM.generate_key(256)
            self._aead[v] = AESGCM(self._kek[v])
            self._active = v
            self._save()
        return v

    def retire(self, version: int) -> None:
        with self._exclusive():
            if version == self._active:
                raise KeyProviderError("the active key version cannot be retired")
            self._kek.pop(version, None)
            self._aead.pop(version, None)
            self._save()
