"""The audit log for the data-protection officer: events, who read a patient's record,
checkpoints, verification. Events carry internal ids, never personal values."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from labvault.api.deps import CurrentPrincipal, vault_of
from labvault.api.models import MAX_SEQ, VerifyIn, to_json

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("/events")
def events(request: Request, principal: CurrentPrincipal,
           since: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return [to_json(e) for e in vault_of(request).audit_log.events(principal, since_seq=since,
                                                                   limit=limit)]


@router.get("/patients/{patient_id}/accesses")
def who_read(patient_id: uuid.UUID, request: Request,
             principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """Who accessed this patient's record, when and why: the patient's right of access."""
    return [to_json(e) for e in vault_of(request).audit_log.who_read(principal, patient_id)]


@router.get("/checkpoints")
def checkpoints(request: Request, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    return [to_json(c) for c in vault_of(request).audit_log.checkpoints(principal)]


@router.post("/verify")
def verify(body: VerifyIn, request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """Checks the chain hashes and the signed checkpoints (the epoch-key tags need the
    auditor's key, which is not on the server: `labvault audit verify --key`)."""
    report = vault_of(request).audit_log.verify(principal, None, start=body.start, end=body.end)
    return to_json(report)
