"""Validation of a whole patient record with the French identifier validators. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Callable

from labvault.domain import identifiers
from labvault.domain.records import PatientRecord

# Laboratory and prescriber identifiers repeat across thousands of records: each distinct value
# found valid is remembered (they identify institutions and professionals, not patients).
_VALID: set[tuple[str, str]] = set()
_REMEMBERED = 10_000


def _check(validator: Callable[..., object], value: str, field: str, position: str) -> None:
    key = (field, value)
    if key in _VALID:
        return
    validator(value, field=field, position=position)
    if len(_VALID) < _REMEMBERED:
        _VALID.add(key)


def validate_record(record: PatientRecord) -> None:
    """Apply the French identifier validators; raise `InvalidRecord` naming the field."""
    p = record.patient
    if p.nir is not None:
        identifiers.validate_nir(p.nir, field="patient.nir")
    if p.ins is not None:
        identifiers.validate_ins(p.ins.matricule, p.ins.oid, p.ins.status, field="patient.ins")
    for i, order in enumerate(record.orders):
        where = f"order {i + 1}"
        _check(identifiers.validate_finess, order.lab_finess, "order.lab_finess", where)
        pr = order.prescriber
        if pr is not None and pr.rpps is not None:
            _check(identifiers.validate_rpps, pr.rpps, "order.prescriber.rpps", where)
        if pr is not None and pr.adeli is not None:
            _check(identifiers.validate_adeli, pr.adeli, "order.prescriber.adeli", where)


__all__ = ["validate_record"]
