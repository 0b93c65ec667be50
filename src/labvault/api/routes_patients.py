"""Patients, their orders and results, a patient's own record, and the bulk export.

Routes are thin: the vault checks the permission (secretaries get identity only, the patient
role its own record, admins nothing), writes the audit event, then decrypts.

The one-record routes run on the event loop: their vault call takes about a millisecond, less
than handing it to a worker thread and back costs (measured in bench/api.py). Routes whose
work is long or unbounded (password hashing, the bulk export) run in the thread pool.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from labvault.access.permissions import Permission
from labvault.api.deps import Bearer, CurrentPrincipal, token_of, vault_of
from labvault.api.models import SearchIn, SearchOut, to_json
from labvault.errors import (
    AccessDenied,
    AuditUnavailable,
    AuthenticationFailed,
    InvalidRecord,
    LabvaultError,
    StepUpRequired,
)

router = APIRouter(tags=["patients"])
log = logging.getLogger("labvault.api")
EXPORT_BATCH = 10  # records per audit event and session check (under every role's 1-min limit)


@router.post("/patients/search", response_model=SearchOut)
async def search(body: SearchIn, request: Request, principal: CurrentPrincipal) -> SearchOut:
    """Exact match by NIR, or by last name and birth date. Sent in the body, so that no
    identifier reaches a URL or an access log."""
    if body.nir is not None:
        ids = vault_of(request).find_patients(principal, nir=body.nir)
    elif body.last_name is not None and body.birth_date is not None:
        ids = vault_of(request).find_patients(principal, last_name=body.last_name,
                                              birth_date=body.birth_date)
    else:
        raise InvalidRecord("nir", "give a NIR, or a last name and a birth date")
    return SearchOut(patient_ids=ids)


@router.get("/patients/{patient_id}")
async def patient(patient_id: uuid.UUID, request: Request, principal: CurrentPrincipal,
            ) -> dict[str, Any]:
    """Identity and administrative data (no results)."""
    return to_json(vault_of(request).get_patient(principal, patient_id))


@router.get("/patients/{patient_id}/record")
async def record(patient_id: uuid.UUID, request: Request, principal: CurrentPrincipal,
           ) -> dict[str, Any]:
    """The patient with orders, results, comments and attached reports."""
    return to_json(vault_of(request).get_record(principal, patient_id))


@router.get("/me/record")
async def own_record(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """A patient's own results."""
    if principal.patient_id is None:
        raise AccessDenied(principal.actor_id, principal.role, "vault:result:read")
    return to_json(vault_of(request).get_record(principal, principal.patient_id))


@router.get("/me/accesses")
async def own_accesses(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """Who accessed the signed-in patient's record (GDPR art. 15): when, which role, what, why
    and the outcome, refusals included; not the staff member's account (ask the DPO)."""
    found = vault_of(request).audit_log.own_accesses(principal)
    return {"accesses": [{"at": a.at.isoformat(), "role": a.role, "action": a.action,
                          "purpose": a.purpose, "outcome": a.outcome} for a in found]}


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def export(request: Request, principal: CurrentPrincipal,
           credentials: Bearer) -> StreamingResponse:
    """Every record as JSON lines, then a last line ``{"complete": true, "records": N}`` (or
    ``"complete": false`` with the reason if the export stopped). Needs a second factor proven
    in the last minutes (``/auth/step-up``); one audit event per batch of `EXPORT_BATCH`
    records, under the role's one-minute read limit. The session is checked again after each
    batch's event, before its records are opened: a session revoked, an account disabled or
    locked by the watcher, or a fresh second factor asked for, stops the export there."""
    vault = vault_of(request)
    token = token_of(credentials)

    def recheck() -> None:
        current = vault.accounts.authenticate_bearer(
            token, source=principal.source, purpose=principal.purpose,
            request_id=principal.request_id)
        if current.step_up_due:
            raise StepUpRequired(Permission.PATIENT_EXPORT)

    records = vault.iter_records(principal, batch_size=EXPORT_BATCH, recheck=recheck)
    first = next(records, None)  # the permission and step-up checks run here, before 200

    def lines() -> Iterator[bytes]:
        # The answer's status is sent before the records: the last line says whether every
        # record came, so a receiver can tell a complete export from one cut short.
        sent = 0
        try:
            for r in itertools.chain([first] if first is not None else [], records):
                yield json.dumps(to_json(r)).encode() + b"\n"
                sent += 1
        except LabvaultError as exc:
            log.error("export stopped after %d records: %s", sent, type(exc).__name__)
            reason = ("audit_unavailable" if isinstance(exc, AuditUnavailable) else
                      "session_ended" if isinstance(exc, AuthenticationFailed) else
                      "step_up_required" if isinstance(exc, StepUpRequired) else "refused")
            yield json.dumps({"complete": False, "records": sent,
                              "error": reason}).encode() + b"\n"
            return
        yield json.dumps({"complete": True, "records": sent}).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
