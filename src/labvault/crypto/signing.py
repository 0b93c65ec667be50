"""Ed25519 signatures for documents labvault issues (migration certificates, audit checkpoints).

The signing key is derived from the key provider's index root (HKDF, its own label), so it is
as protected as the rest of the key file and never stored apart. Verification needs only the
public key, which `labvault keys public` prints for auditors to keep elsewhere.
`verify` raises `InvalidSignature`; it never returns a boolean.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Collection
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from labvault.crypto.keys import KeyProvider

SIGNING_KEY = "signing/ed25519/v1"


class Signer:
    def __init__(self, keys: KeyProvider) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(keys.index_key(SIGNING_KEY).reveal())

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id})"

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public(data: bytes) -> Ed25519PublicKey:
    """A public key from PEM, or from 32 raw bytes, or their base64."""
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    raw = data if len(data) == 32 else base64.b64decode(data.strip(), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint: the first 16 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(public_bytes(key)).hexdigest()[:16]


def verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    """Raise `InvalidSignature` unless `signature` is `key`'s signature of `message`."""
    key.verify(signature, message)


def check_signed(document: Any, body_field: str, kinds: Collection[str],
                 message: Callable[[dict[str, Any]], bytes], what: str,
                 trusted: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """The body of a signed labvault document (``{body_field: {"kind": …}, "signature",
    "public_key", "key_id", "algorithm": "Ed25519"}``), verified over ``message(body)``; with
    `trusted`, it must be that key's. Raises `InvalidSignature`, naming `what` it is not."""
    try:
        body = document[body_field]
        signature = base64.b64decode(document["signature"], validate=True)
        embedded = load_public(document["public_key"].encode())
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InvalidSignature(f"not a labvault {what}") from None
    if (not isinstance(body, dict) or body.get("kind") not in kinds
            or document.get("algorithm") != "Ed25519"):
        raise InvalidSignature(f"not a labvault {what}")
    if trusted is not None and public_bytes(trusted) != public_bytes(embedded):
        raise InvalidSignature("signed by another key than the trusted one")
    key = trusted or embedded
    verify(key, signature, message(body))
    if document.get("key_id") != key_id(key):
        raise InvalidSignature("key id does not match the key")
    return body


__all__ = ["InvalidSignature", "Signer", "check_signed", "key_id", "load_public", "public_bytes",
           "public_pem", "verify"]
