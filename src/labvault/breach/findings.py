"""The classifier's findings as stored: a fixed-size bit mask sealed beside each result and
comment.

Results and comments are classified when they are stored (`labvault.breach.classify`) and the
findings are sealed under the patient's data key in the row's ``findings`` column, with the
row's own associated data. Two bytes whatever was found: a table of ciphertexts of equal length
says nothing about which rows hold HIV tests. Scoping a breach opens these two bytes instead of
every comment, and erasing a patient shreds them with the rest.

Bits 0-7 are the special categories (in `SpecialCategory` order, fixed here: stored masks must
keep their meaning), bits 8-11 the kinds of identifier found in a comment.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from labvault.breach.classify import SpecialCategory, classify_result, classify_text

SPECIAL_BITS: tuple[SpecialCategory, ...] = (
    SpecialCategory.HIV, SpecialCategory.HEPATITIS, SpecialCategory.STI,
    SpecialCategory.PREGNANCY, SpecialCategory.CANCER, SpecialCategory.GENETIC,
    SpecialCategory.TOXICOLOGY, SpecialCategory.PSYCHIATRIC)
IDENTIFIER_BITS: tuple[str, ...] = ("nir", "phone", "email", "iban")
SIZE = 2
# Identifiers a comment names, as the data categories they expose.
IDENTIFIER_CATEGORIES = {"nir": "nir", "phone": "contact", "email": "contact", "iban": "bank"}


def encode(special: Iterable[SpecialCategory], identifiers: Iterable[str] = ()) -> bytes:
    mask = 0
    for cat in special:
        mask |= 1 << SPECIAL_BITS.index(cat)
    for kind in identifiers:
        mask |= 1 << (8 + IDENTIFIER_BITS.index(kind))
    return mask.to_bytes(SIZE, "big")


def decode(data: bytes) -> tuple[frozenset[SpecialCategory], frozenset[str]]:
    if len(data) != SIZE:
        raise ValueError("a findings mask is 2 bytes")
    mask = int.from_bytes(data, "big")
    return (frozenset(c for i, c in enumerate(SPECIAL_BITS) if mask >> i & 1),
            frozenset(k for i, k in enumerate(IDENTIFIER_BITS) if mask >> (8 + i) & 1))


@lru_cache(maxsize=8192)
def of_result(code_system: str, code: str, label: str) -> bytes:
    """Findings of a result (labels repeat: the classification of each is kept)."""
    return encode(classify_result(code_system, code, label))


def of_comment(text: str) -> bytes:
    found = classify_text(text)
    return encode(found.special, found.identifiers)


__all__ = ["IDENTIFIER_BITS", "IDENTIFIER_CATEGORIES", "SIZE", "SPECIAL_BITS", "decode",
           "encode", "of_comment", "of_result"]
