"""Registering a patient, entering an order with its results, and validating them.

Routes are thin: they build the domain records and call the vault, which checks the permission
(secretaries register patients; technicians, biologists and services with the scope enter
results; biologists validate), writes the audit event, then seals and stores. Identifiers are
sent in bodies, never in URLs, so that none reaches an access log.

Registration is one record, about a millisecond of vault work: it runs on the event loop, as the
one-record routes of ``routes_patients`` do. Entering an order seals every field of every
result (about 0.1 ms per result, measured), and validating re-seals the status of every
result of the order, however many the order holds: both grow with the order, so they run in
the thread pool (plain ``def``) rather than hold the loop for tens of milliseconds.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from labvault.api.deps import CurrentPrincipal, vault_of
from labvault.api.models_records import (
    OrderCreatedOut,
    OrderIn,
    PatientCreatedOut,
    PatientIn,
    ValidatedOut,
    to_order,
    to_patient,
)
from labvault.domain.records import PatientRecord

router = APIRouter(tags=["records"])


@router.post("/patients", status_code=201, response_model=PatientCreatedOut)
async def register(body: PatientIn, request: Request,
                   principal: CurrentPrincipal) -> PatientCreatedOut:
    """Register a patient (identity and contact details); results come later as orders."""
    patient_id = vault_of(request).put_patient(principal, PatientRecord(to_patient(body), ()))
    return PatientCreatedOut(patient_id=patient_id)


@router.post("/patients/{patient_id}/orders", status_code=201, response_model=OrderCreatedOut)
def add_order(patient_id: uuid.UUID, body: OrderIn, request: Request,
              principal: CurrentPrincipal) -> OrderCreatedOut:
    """Enter an order with its results (preliminary unless stated otherwise) and comments."""
    order_id = vault_of(request).results.add_order(principal, patient_id, to_order(body))
    return OrderCreatedOut(order_id=order_id)


@router.post("/patients/{patient_id}/orders/{order_id}/validate", response_model=ValidatedOut)
def validate(patient_id: uuid.UUID, order_id: uuid.UUID, request: Request,
             principal: CurrentPrincipal) -> ValidatedOut:
    """Biological validation: the order's preliminary results become final. Answers how many
    were validated (0 when none was left)."""
    return ValidatedOut(validated=vault_of(request).results.validate_order(principal, patient_id,
                                                                           order_id))
