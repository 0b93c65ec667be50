"""Validation of a whole patient record with the French identifier validators. Pure, no I/O."""

from __future__ import annotations

from labvault.domain import identifiers
from labvault.domain.records import PatientRecord


def validate_record(record: PatientRecord) -> None:
    """Apply the French identifier validators; raise `InvalidRecord` naming the field."""
    p = record.patient
    if p.nir is not None:
        identifiers.validate_nir(p.nir, field="patient.nir")
    if p.ins is not None:
        identifiers.validate_ins(p.ins.matricule, p.ins.oid, p.ins.status, field="patient.ins")
    for i, order in enumerate(record.orders):
        identifiers.validate_finess(order.lab_finess, field="order.lab_finess",
                                    position=f"order {i + 1}")
        pr = order.prescriber
        if pr is not None and pr.rpps is not None:
            identifiers.validate_rpps(pr.rpps, field="order.prescriber.rpps",
                                      position=f"order {i + 1}")
        if pr is not None and pr.adeli is not None:
            identifiers.validate_adeli(pr.adeli, field="order.prescriber.adeli",
                                       position=f"order {i + 1}")


__all__ = ["validate_record"]
