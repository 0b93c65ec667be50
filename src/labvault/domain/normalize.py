"""Normalisation of values before they are blind-indexed.

Two spellings of the same person must give the same index entry: ``"Hélène  LE-GOFF"`` and
``"helene le goff"`` both become ``"HELENE LE GOFF"``. Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labvault.domain.records import Patient

_SEPARATORS = re.compile(r"[\s\-'’‐‑.,_]+")
_NIR_NOISE = re.compile(r"[\s.\-]+")

# Letters that NFKD does not decompose into a base letter + combining mark.
_LIGATURES = str.maketrans(
    {"Œ": "OE", "œ": "OE", "Æ": "AE", "æ": "AE", "ß": "SS", "ẞ": "SS", "Ø": "O", "ø": "O"}
)


def strip_accents(text: str) -> str:
    # NFKD first: some letters (Ǣ, Ǿ...) decompose into a ligature plus a mark.
    decomposed = unicodedata.normalize("NFKD", text).translate(_LIGATURES)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_name(name: str) -> str:
    """Upper-case, accents removed, hyphens/apostrophes/runs of spaces folded into one space."""
    folded = strip_accents(name.upper()).upper()
    return _SEPARATORS.sub(" ", folded).strip()


def normalize_nir(nir: str) -> str:
    """Compact form of a NIR: no spaces, dots or dashes, upper case (Corsica 2A/2B)."""
    return _NIR_NOISE.sub("", nir).upper()


def name_birth_key(last_name: str, birth_date: date) -> str:
    """The value indexed for "last name + birth date" searches."""
    return f"{normalize_name(last_name)}|{birth_date.isoformat()}"


def patient_nir(patient: Patient) -> str | None:
    """A patient's NIR, compact: the NIR field, else an INS whose matricule is a NIR."""
    ins = patient.ins
    nir = patient.nir or (ins.matricule if ins is not None and ins.oid.is_nir_based else None)
    return normalize_nir(nir) if nir else None
