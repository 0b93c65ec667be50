"""The shape of a search, for the watcher, without the searched value.

Enumeration walks identifiers: NIRs of one birth place and month with serial numbers 001,
002, ...; one name with birth date after birth date; one birth date with name after name. To
see that in the audit stream without writing the value there, a search event carries short
keyed tags (16 bits) of the parts of what was searched:

- NIR: ``blk``, a tag of the first ten digits (sex, year and month of birth, place of birth),
  and ``nid``, a tag of the whole NIR (without its key): many distinct ``nid`` under one
  ``blk`` within the hour is a walk through a birth block; one ``nid`` searched again is not;
- last name + birth date: ``nt`` and ``bt``, tags of the normalised name and of the date.

What the tags give away: without the key, nothing but equality (two searches of the same
thing, or of the same block, carry the same tag; unrelated searches collide 1 time in 65,536).
With the key (derived from the master key, ``watch/search-shape/v1``, held by whoever holds
the master key anyway), a tag narrows its value to the candidates that share it: about half
of the birth dates of 1900–2026 have a tag of their own, so ``bt`` nearly names the date;
``blk`` and ``nid`` leave dozens to thousands of candidates. The tags are never re-salted, so
they link an actor's searches of one person across events, which is what the rules need.
"""

from __future__ import annotations

from datetime import date

from labvault.crypto.blind import BlindIndex
from labvault.domain.normalize import normalize_name
from labvault.secret import Secret

SEARCH_SHAPE_KEY = "watch/search-shape/v1"
TAG_BYTES = 2


class SearchShape:
    __slots__ = ("_index",)

    def __init__(self, key: Secret[bytes]) -> None:
        self._index = BlindIndex(SEARCH_SHAPE_KEY, key)

    def __repr__(self) -> str:
        return "SearchShape()"

    def _tag(self, kind: str, value: str) -> str:
        return self._index.compute(f"{kind}:{value}")[:TAG_BYTES].hex()

    def of_nir(self, normalised: str) -> dict[str, object]:
        """``blk`` and ``nid`` of a compact NIR; nothing for a value that is not 13+ digits."""
        digits = normalised[:13]
        if len(digits) < 13 or not digits[10:13].isdigit():
            return {}
        return {"blk": self._tag("nir-block", digits[:10]), "nid": self._tag("nir", digits)}

    def of_name_birth(self, last_name: str, birth_date: date) -> dict[str, object]:
        return {"nt": self._tag("name", normalize_name(last_name)),
                "bt": self._tag("birth", birth_date.isoformat())}


__all__ = ["SEARCH_SHAPE_KEY", "SearchShape"]
