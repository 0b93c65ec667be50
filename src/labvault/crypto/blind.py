"""Blind indexes: exact-match search without plaintext.

An index entry is HMAC-SHA256(index key, normalised value), truncated to 128 bits. Each index
has its own key (derived by the key provider with the index name as HKDF info), so an entry of
one index says nothing about another. The keyed hash is fast on purpose: a password-style slow
hash would not protect a 15-digit NIR against someone holding the key anyway, and would make
bulk loading hours instead of minutes. What protects the NIR index is the secrecy of the key,
which is why it lives with the master key, never in the database.

Never index a value on its own that is a sensitive flag (an HIV result, a pregnancy): an index
on a low-cardinality column would reveal its distribution.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

from labvault.secret import Secret

INDEX_BYTES = 16

NIR_INDEX = "patient.nir"
NAME_BIRTH_INDEX = "patient.last_name+birth_date"


class BlindIndex:
    __slots__ = ("_key", "name")

    def __init__(self, name: str, key: Secret[bytes]) -> None:
        self.name = name
        self._key = key

    def __repr__(self) -> str:
        return f"BlindIndex({self.name!r})"

    def compute(self, normalised: str) -> bytes:
        h = hmac.HMAC(self._key.reveal(), hashes.SHA256())
        h.update(normalised.encode("utf-8"))
        return h.finalize()[:INDEX_BYTES]
