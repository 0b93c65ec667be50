"""The shape of a search, for the watcher, without the searched value.

Enumeration walks identifiers in order: NIRs of one birth place and month with serial numbers
001, 002, ...; one name with birth date after birth date; one birth date with name after name.
To see that in the audit stream without writing the value there, a search event carries short
keyed tags of the parts of what was searched:

- NIR: ``blk``, a 16-bit keyed tag of the first ten digits (sex, year and month of birth, place
  of birth), and ``ord``, the three-digit serial number within that block;
- last name + birth date: ``nt`` and ``bt``, 16-bit keyed tags of the normalised name and of the
  date.

Sixteen bits is enough to see that consecutive searches share a block (two unrelated searches
share a tag 1 time in 65,536) and too little to undo the tag: even with the key, one tag stands
for about 1,300 possible NIR blocks and the serial alone names nobody. The key is derived from
the master key (``watch/search-shape/v1``) and never leaves the vault's process.
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
        """``blk`` and ``ord`` of a compact NIR; nothing for a value that is not 13+ digits."""
        digits = normalised[:13]
        if len(digits) < 13 or not digits[10:13].isdigit():
            return {}
        return {"blk": self._tag("nir-block", digits[:10]), "ord": int(digits[10:13])}

    def of_name_birth(self, last_name: str, birth_date: date) -> dict[str, object]:
        return {"nt": self._tag("name", normalize_name(last_name)),
                "bt": self._tag("birth", birth_date.isoformat())}


__all__ = ["SEARCH_SHAPE_KEY", "SearchShape"]
