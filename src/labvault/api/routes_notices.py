"""Notices to people: the public check that a message is genuine, and the DPO's queue.

``GET /verify`` (a French page with a form), ``POST /verify`` (the form) and ``POST
/verify/check`` (JSON ``{"code": "…"}``) answer without a session. They are deliberate
exceptions to "no route without authentication": whoever received an e-mail or an SMS about
an incident must be able to check it before trusting it, and has no account (a phishing copy
of a notice is the very threat the code answers). They return nothing personal: the answer is
``issued`` with the laboratory, the day and the incident's short reference — what the genuine
message itself shows — or ``unknown``, with the same fields (all null), the same status and
the same headers. Nothing about the person, the channel or the delivery. A code is 50 bits
from `secrets` and only its keyed hash is stored, so the lookup is the comparison; unknown
codes are throttled per source address (/64 in IPv6); every check answered is audited, without
the code, and each block when it starts, not each request it refuses
(`labvault.breach.notices`). Throttled: 429 with ``Retry-After``. A form posted from
another site is refused (403): a page elsewhere must not spend its visitors' budget. Another
site is what the browser's fetch metadata says, or, from a browser too old to send it, an
``Origin`` other than this host (`labvault.api.forms.cross_site`).

``POST /notices/queue`` and ``POST /notices/status`` (the incident in the body) need
``breach:incident:manage`` (the DPO): queue an incident's notices, and count their outcomes
for the regulator's follow-up. Sending is `labvault breach deliver`'s work, as the system.

The breach settings come from ``app.state.breach_config`` (a `BreachConfig`), the defaults
otherwise.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from labvault.api.deps import CurrentPrincipal, source_of, vault_of
from labvault.api.forms import cross_site
from labvault.api.models import Strict
from labvault.breach import notice_text
from labvault.breach.config import BreachConfig
from labvault.breach.notices import Outbox, VerifyThrottled

router = APIRouter(tags=["notices"])


class VerifyIn(Strict):
    code: str = Field(max_length=64, description="The code printed in the message, as typed.")


class VerifyOut(BaseModel):
    status: Literal["issued", "unknown"]
    issuer: str | None = Field(description="The laboratory that issued the code.")
    issued_on: str | None = Field(description="The day it was issued (YYYY-MM-DD).")
    about: Literal["incident", "incident-update", "exposure-answer"] | None
    incident: str | None = Field(description="The incident's short reference, e.g. INC-3F0C1A2B.")


class NoticesIn(Strict):
    incident_id: uuid.UUID
    include_sealed: bool = Field(default=False, description="Also notify patients whose data "
                                 "was exposed only encrypted (exempt under art. 34(3)(a)).")


class IncidentIn(Strict):
    incident_id: uuid.UUID


def outbox_of(request: Request) -> Outbox:
    state = request.app.state
    outbox = getattr(state, "notices_outbox", None)
    if outbox is None:
        config = getattr(state, "breach_config", None) or BreachConfig()
        outbox = state.notices_outbox = Outbox(vault_of(request), config)
    return outbox


def _page(outbox: Outbox, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(notice_text.page(outbox._config, **context), status_code=status)


def _throttled(exc: VerifyThrottled, response: HTMLResponse | JSONResponse
               ) -> HTMLResponse | JSONResponse:
    response.headers["retry-after"] = str(exc.retry_after)
    return response


@router.get("/verify", response_class=HTMLResponse)
async def verify_page(request: Request) -> HTMLResponse:
    """The public page: type the code printed in a message to learn whether it is genuine."""
    return _page(outbox_of(request))


@router.post("/verify", response_class=HTMLResponse)
async def verify_form(request: Request) -> HTMLResponse:
    """The page's form (``code=…``, URL-encoded): the answer in the page."""
    outbox = outbox_of(request)
    if cross_site(request):
        return _page(outbox, 403)
    try:
        fields = parse_qs((await request.body()).decode("utf-8"), max_num_fields=5)
    except ValueError:
        fields = {}
    code = (fields.get("code") or [""])[0]
    try:
        answer = await run_in_threadpool(outbox.verify, code, source_of(request))
    except VerifyThrottled as exc:
        return _throttled(exc, _page(outbox, 429, throttled_seconds=exc.retry_after))
    return _page(outbox, answer=answer)


@router.post("/verify/check", response_model=VerifyOut,
             responses={429: {"description": "Too many unknown codes from this source"}})
async def verify_check(body: VerifyIn, request: Request) -> VerifyOut | JSONResponse:
    """Whether a code was issued: ``issued`` (by whom, when, about which incident) or
    ``unknown``, the same fields either way."""
    outbox = outbox_of(request)
    try:
        answer = await run_in_threadpool(outbox.verify, body.code, source_of(request))
    except VerifyThrottled as exc:
        return _throttled(exc, JSONResponse({"error": "too_many_requests"}, status_code=429))
    return VerifyOut(**answer.as_dict())


@router.post("/notices/queue")
def queue_notices(body: NoticesIn, request: Request,
                  principal: CurrentPrincipal) -> dict[str, int]:
    """Queue the notices of an incident's latest scope (patients already queued are skipped).
    Their contacts are opened: in bulk (beyond ``BULK_LIMIT`` patients), only with a recent
    second factor (else 403 ``step_up_required``)."""
    return {"queued": outbox_of(request).queue_incident(principal, body.incident_id,
                                                        include_sealed=body.include_sealed)}


@router.post("/notices/status")
def notices_status(body: IncidentIn, request: Request,
                   principal: CurrentPrincipal) -> dict[str, Any]:
    """Counts of an incident's notices: patients listed, exempt, reached; notices by state,
    outcome, channel and kind of error. No address, no name."""
    return outbox_of(request).status(principal, body.incident_id)


__all__ = ["router"]
