"""Validation of the French identifiers a laboratory receives. Pure functions, no I/O.

Every failure raises :class:`~labvault.errors.InvalidRecord` whose reason is a fixed phrase:
no message ever carries the value, or any part of it.

NIR (numéro d'inscription au répertoire, "numéro de sécurité sociale")
    15 characters: sex (1), year (2), month (2), department (2, or 3 for overseas 97x/98x),
    commune (3, or 2 overseas), order number (3), key (2). The key is ``97 - (n mod 97)`` over
    the first 13 characters, with Corsica's 2A read as 19 and 2B as 18 (``stdnum.fr.nir``).
    Sex digit 1/2; 3/4 for a person being registered; 7/8 for a temporary number (flagged
    ``temporary``). Month 01-12; 20, 30-42 and 50-99 are pseudo-months written when the civil
    record is incomplete (flagged ``incomplete_civil_record``). Sources: INSEE definition
    c1409, fr.wikipedia "Numéro de sécurité sociale en France", python-stdnum ``fr.nir``.
INS (identité nationale de santé)
    A matricule (the NIR, or the NIA, numéro d'identification d'attente, which has the same
    format and key) with the OID of its authority (``InsOid``) and an identity status.
RPPS
    11 digits, the last a Luhn check digit (``stdnum.luhn``).
ADELI
    9 digits, spaces allowed. Only the format is checked; no check-digit rule is applied.
FINESS (fichier national des établissements sanitaires et sociaux)
    9 characters: department (2 digits, or 2A/2B) then 7 digits, the last a Luhn check digit
    over all nine. stdnum has no FINESS module. For Corsica, the ARS's published numbers
    (CH Bastia 2B0000020, CH Calvi 2B0005342, CH Bonifacio 2A0000170, CH Sartène 2A0002606,
    17 numbers checked in all) pass Luhn when the letter is read as its rank in the alphabet,
    2A -> "21" and 2B -> "22", and all fail when it is read as "20" (or as the NIR's 19/18).
    We therefore use A=1, B=2; the tests pin it with those published numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from stdnum import luhn
from stdnum.fr import nir as stdnum_nir

from labvault.domain.normalize import normalize_nir
from labvault.domain.records import IdentityStatus, Ins, InsOid, Masked
from labvault.errors import InvalidRecord

NIR_LENGTH = 15
NIR_BODY_LENGTH = 13
RPPS_LENGTH = 11
ADELI_LENGTH = 9
FINESS_LENGTH = 9
MAX_INPUT_LENGTH = 64  # longer input is rejected before any work is done on it

__all__ = [
    "NirInfo",
    "nir_key",
    "normalize_nir",
    "validate_adeli",
    "validate_finess",
    "validate_ins",
    "validate_nir",
    "validate_rpps",
]

CORSICA = frozenset({"2A", "2B"})
OVERSEAS_PREFIXES = frozenset({"97", "98"})
TEMPORARY_SEX_DIGITS = frozenset("78")
SEX_DIGITS = frozenset("123478")
FINESS_CORSICA_DIGITS = {"2A": "21", "2B": "22"}

# Reasons hold lower-case words only, no digit and no capital, so no identifier (always
# holding a digit or a capital once compacted) can ever be read in an error message.
_BAD_CHARACTER = "unexpected character: digits only, except a corsican department"
_WORDS = {ADELI_LENGTH: "nine", RPPS_LENGTH: "eleven"}


@dataclass(frozen=True, slots=True, repr=False)
class NirInfo(Masked):
    """The parts of a valid NIR. Its ``repr`` is masked like every record's."""

    compact: str
    sex_digit: str
    birth_year: str
    birth_month: str
    department: str
    temporary: bool
    incomplete_civil_record: bool
    key: str


def _is_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _month_kind(month: str) -> str | None:
    """``"normal"``, ``"incomplete"`` (a pseudo-month) or None when not a possible month."""
    m = int(month)
    if 1 <= m <= 12:
        return "normal"
    if m == 20 or 30 <= m <= 42 or 50 <= m <= 99:
        return "incomplete"
    return None


def _checked_str(value: object, field: str, position: str | None) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(field, "not a string", position)
    if len(value) > MAX_INPUT_LENGTH:
        raise InvalidRecord(field, "input too long", position)
    return value


def _compact(value: object, field: str, position: str | None) -> str:
    """Whitespace removed, upper-cased (RPPS, ADELI, FINESS)."""
    return "".join(_checked_str(value, field, position).upper().split())


def _nir_shape_ok(compact: str) -> bool:
    """Digits everywhere, except 2A/2B allowed as the department (characters 6-7)."""
    dept = compact[5:7]
    return (
        _is_digits(compact[:5])
        and (_is_digits(dept) or dept in CORSICA)
        and _is_digits(compact[7:])
    )


def nir_key(first13: str) -> str:
    """The 2-digit key of a NIR/NIA body: ``97 - (n mod 97)``, 2A read as 19, 2B as 18."""
    body = normalize_nir(_checked_str(first13, "nir", None))
    if len(body) != NIR_BODY_LENGTH:
        raise InvalidRecord("nir", "wrong length: expected thirteen characters")
    if not _nir_shape_ok(body):
        raise InvalidRecord("nir", _BAD_CHARACTER)
    return stdnum_nir.calc_check_digits(body)


def _checked_matricule(value: object, field: str, position: str | None) -> str:
    """Length, characters and key, shared by NIR and NIA. Returns the compact form."""
    compact = normalize_nir(_checked_str(value, field, position))
    if len(compact) != NIR_LENGTH:
        raise InvalidRecord(field, "wrong length: expected fifteen characters", position)
    if not _nir_shape_ok(compact):
        raise InvalidRecord(field, _BAD_CHARACTER, position)
    if nir_key(compact[:NIR_BODY_LENGTH]) != compact[NIR_BODY_LENGTH:]:
        raise InvalidRecord(field, "check key does not match", position)
    return compact


def validate_nir(value: str, field: str = "nir", position: str | None = None) -> NirInfo:
    """Validate a NIR and return its parts (see the module docstring for the rules)."""
    compact = _checked_matricule(value, field, position)
    sex_digit, month = compact[0], compact[3:5]
    if sex_digit not in SEX_DIGITS:
        raise InvalidRecord(field, "invalid sex digit", position)
    kind = _month_kind(month)
    if kind is None:
        raise InvalidRecord(field, "invalid birth month", position)
    prefix = compact[5:7]
    department = compact[5:8] if prefix in OVERSEAS_PREFIXES else prefix
    return NirInfo(
        compact=compact,
        sex_digit=sex_digit,
        birth_year=compact[1:3],
        birth_month=month,
        department=department,
        temporary=sex_digit in TEMPORARY_SEX_DIGITS,
        incomplete_civil_record=kind == "incomplete",
        key=compact[NIR_BODY_LENGTH:],
    )


def validate_ins(
    matricule: str,
    oid: str | InsOid,
    status: str | IdentityStatus = IdentityStatus.PROVISIONAL,
    field: str = "ins",
    position: str | None = None,
) -> Ins:
    """Validate an INS: known OID and status; a valid NIR, or a NIA of NIR format and key."""
    try:
        authority = InsOid(oid)
    except (ValueError, TypeError):
        raise InvalidRecord(field, "unknown assigning authority oid", position) from None
    try:
        identity_status = IdentityStatus(status)
    except (ValueError, TypeError):
        raise InvalidRecord(field, "unknown identity status", position) from None
    if authority.is_nir_based:
        compact = validate_nir(matricule, field, position).compact
    else:
        compact = _checked_matricule(matricule, field, position)
    return Ins(matricule=compact, oid=authority, status=identity_status)


def _digits_of_length(value: object, length: int, field: str, position: str | None) -> str:
    compact = _compact(value, field, position)
    if len(compact) != length:
        raise InvalidRecord(field, f"wrong length: expected {_WORDS[length]} digits", position)
    if not _is_digits(compact):
        raise InvalidRecord(field, "not all digits", position)
    return compact


def validate_rpps(value: str, field: str = "rpps", position: str | None = None) -> str:
    """11 digits with a valid Luhn check digit. Returns the digits."""
    compact = _digits_of_length(value, RPPS_LENGTH, field, position)
    if not luhn.is_valid(compact):
        raise InvalidRecord(field, "check digit does not match", position)
    return compact


def validate_adeli(value: str, field: str = "adeli", position: str | None = None) -> str:
    """9 digits, spaces allowed. Returns the digits."""
    return _digits_of_length(value, ADELI_LENGTH, field, position)


def validate_finess(value: str, field: str = "finess", position: str | None = None) -> str:
    """Department (2 digits or 2A/2B) + 7 digits, Luhn over all nine (2A -> 21, 2B -> 22)."""
    compact = _compact(value, field, position)
    if len(compact) != FINESS_LENGTH:
        raise InvalidRecord(field, "wrong length: expected nine characters", position)
    dept, rest = compact[:2], compact[2:]
    if not ((_is_digits(dept) or dept in CORSICA) and _is_digits(rest)):
        raise InvalidRecord(field, _BAD_CHARACTER, position)
    if not luhn.is_valid(FINESS_CORSICA_DIGITS.get(dept, dept) + rest):
        raise InvalidRecord(field, "check digit does not match", position)
    return compact
