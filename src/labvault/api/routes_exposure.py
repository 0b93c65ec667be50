"""Am I affected by an incident? The public check, and the patient's own list.

``GET /me/exposures`` (a patient, signed in with a second factor, like ``/me/record``): the
incidents whose latest signed scope lists the patient, what was exposed and what the
laboratory advises; audited, naming the patient.

``GET /exposure-check`` (a French page with a form) and ``POST /exposure-check`` (the form, or
JSON ``{"nir", "birth_date"}``) answer without a session: they are deliberate exceptions to
"no route without authentication", because the people who most need the answer (a patient
without an account, or who lost it) have no session, and because they return nothing personal:
every well-formed request gets the same answer, byte for byte, with the same status and the
same headers but the request id, after the same work (count the source, audit, queue in
memory). The lookup runs later in a worker and the answer goes to the contact on file, so the
page cannot be asked whether someone is a patient (`labvault.breach.exposure_worker`).

NIR and birth date, rather than names and birth date: the NIR is on every Carte Vitale, exact
(one blind-index entry, no folding of accents, hyphens or birth and used names, no homonyms),
and its check key catches a typing error without looking at any data; the birth date confirms
it is the holder's. People without a NIR on file write to the DPO (the page says so).

What the answer may depend on: the shape of the input (a malformed NIR or date gets 422 naming
the field: a property of what was typed, not of anyone's record), the source's hourly count
(429, ``Retry-After``), a full queue (503) and, for browsers, where the request comes from:
a form posted from another site (``Sec-Fetch-Site`` cross-site or same-site; from a browser
without fetch metadata, an ``Origin`` that is not this host) gets 403, so that a page
elsewhere cannot make its visitors' browsers spam patients with answers. No token: there is
no session to bind one to, and the fetch metadata and ``Origin`` that every current browser
sends on a POST are what the check needs; a client that is not a browser sends neither, and
is held by the per-source and per-person limits.
The per-person daily limit never shows here: it depends on membership, so the worker applies
it. None of these answers names a patient or repeats a value; the form is not filled back in.

Every request writes an audit event, so every kind is counted per source before it is
written: a refused one (415, 403, 422, 503 not configured) under a count of its own
(`ExposureDesk.refused`), so that malformed requests neither use up nor escape the limit on
checks. Past either count the source gets the same 429 as any limited check, whatever it
sent, and the audit gets one event when the block starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from labvault.api.deps import CurrentPrincipal, request_id_of, source_of, vault_of
from labvault.api.forms import cross_site
from labvault.breach.exposure import ExposureDesk, exposure_desk
from labvault.breach.exposure_worker import Receipt

router = APIRouter(tags=["exposure"])

MESSAGE = ("Si vous êtes patient du laboratoire, la réponse a été envoyée au contact que nous "
           "avons (e-mail ou SMS). Elle indique les incidents qui vous concernent, ou "
           "qu'aucun ne vous concerne, et peut mettre quelques minutes à arriver. Si rien "
           "n'arrive, vérifiez votre saisie ou écrivez au délégué à la protection des données "
           "du laboratoire.")
RECEIVED = json.dumps({"status": "received", "message": MESSAGE}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
# The pages' policy: nothing loaded, the form posted only here (the API's default refuses it).
JSON_TYPE, FORM_TYPE = "application/json", "application/x-www-form-urlencoded"
FIELD_TEXT = {
    "nir": "Le numéro de sécurité sociale compte 15 caractères, clé comprise (les deux "
           "derniers chiffres) : vérifiez-le sur votre carte Vitale.",
    "birth_date": "La date de naissance doit être une date passée (JJ/MM/AAAA).",
    "body": "Le formulaire n'a pas pu être lu : rechargez la page et recommencez.",
}
_PAGES = Environment(loader=FileSystemLoader(Path(__file__).parents[1] / "breach" / "templates"),
                     autoescape=True, undefined=StrictUndefined, auto_reload=False)

_CHECK_SCHEMA = {"type": "object", "required": ["nir", "birth_date"], "properties": {
    "nir": {"type": "string", "maxLength": 64, "description": "15 characters, key included"},
    "birth_date": {"type": "string", "maxLength": 10,
                   "description": "YYYY-MM-DD, or DD/MM/YYYY"}}}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_HTML: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
_BOTH: dict[str, Any] = {"application/json": {"schema": _ERROR}, **_HTML}
CHECK_OPENAPI = {"requestBody": {"required": True, "content": {
    JSON_TYPE: {"schema": _CHECK_SCHEMA}, FORM_TYPE: {"schema": _CHECK_SCHEMA}}}}
CHECK_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "JSON: received (the same answer for everyone)", "content": {
        "application/json": {"schema": {"type": "object", "required": ["status", "message"],
                                        "properties": {"status": {"type": "string"},
                                                       "message": {"type": "string"}}}}}},
    200: {"description": "The form: received (the same page for everyone)", "content": _HTML},
    403: {"description": "Posted from another site", "content": _BOTH},
    415: {"description": "Neither JSON nor a form", "content": {
        "application/json": {"schema": _ERROR}}},
    422: {"description": "Malformed: the fields named, never their value", "content": _BOTH},
    429: {"description": "Too many checks from this source this hour", "content": _BOTH},
    503: {"description": "Busy, or the audit cannot be written", "content": _BOTH},
}


def desk_of(request: Request) -> ExposureDesk:
    return exposure_desk(vault_of(request))


def _page(desk: ExposureDesk, template: str, status: int, **context: Any) -> HTMLResponse:
    c = desk.config["controller"]
    html = _PAGES.get_template(template).render(
        lab=c["name"] or "Le laboratoire", dpo=c["dpo_email"] or c["dpo_phone"], **context)
    return HTMLResponse(html, status_code=status)


def _json(status: int, body: dict[str, Any] | bytes) -> Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(content, status_code=status, media_type=JSON_TYPE)


def _fields(raw: bytes, form: bool) -> dict[str, object] | None:
    try:
        if form:
            parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
            return {k: v[0] for k, v in parsed.items()}
        doc = json.loads(raw)
    except ValueError:  # bad JSON, bad UTF-8, too many fields
        return None
    return doc if isinstance(doc, dict) else None


@router.get("/me/exposures")
async def own_exposures(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """The incidents that concern the signed-in patient, with the laboratory's advice."""
    found = desk_of(request).for_patient(principal)
    return {"exposures": [e.as_dict() for e in found]}


@router.get("/exposure-check", response_class=HTMLResponse)
async def check_page(request: Request) -> HTMLResponse:
    """The public form (French)."""
    return _page(desk_of(request), "exposure_form.html.j2", 200, errors={})


@router.post("/exposure-check", status_code=202, openapi_extra=CHECK_OPENAPI,
             responses=CHECK_RESPONSES)
async def check(request: Request) -> Response:
    """Ask whether an incident concerns you: the answer goes to the contact on file. The same
    answer for everyone (202 for JSON, the same page for the form)."""
    desk = desk_of(request)
    source, request_id = source_of(request), request_id_of(request)
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    form = kind == FORM_TYPE
    if kind not in (JSON_TYPE, FORM_TYPE):
        if (refusal := desk.refused(source, request_id, "unsupported")).outcome == "limited":
            return _refused(desk, form, refusal)
        return _json(415, {"error": "unsupported_media_type"})
    if desk.config.missing_for_notices():  # no answer could be sent: say so to everyone
        if (refusal := desk.refused(source, request_id, "not_configured")).outcome == "limited":
            return _refused(desk, form, refusal)
        return (_page(desk, "exposure_refused.html.j2", 503, reason="not_configured") if form
                else _json(503, {"error": "not_configured"}))
    if cross_site(request):
        if (refusal := desk.refused(source, request_id, "cross_site")).outcome == "limited":
            return _refused(desk, form, refusal)
        return (_page(desk, "exposure_refused.html.j2", 403, reason="cross_site") if form
                else _json(403, {"error": "forbidden"}))
    fields = _fields(await request.body(), form)
    if fields is None:
        details, errors = None, [("body", "not a JSON object or a form")]
    else:
        details, errors = desk.parse(fields.get("nir"), fields.get("birth_date"))
    if details is None:
        refusal = desk.refused(source, request_id, "invalid", fields=[f for f, _ in errors])
        if refusal.outcome == "limited":
            return _refused(desk, form, refusal)
        if form:
            return _page(desk, "exposure_form.html.j2", 422,
                         errors={f: FIELD_TEXT.get(f, FIELD_TEXT["body"]) for f, _ in errors})
        return _json(422, {"error": "invalid",
                           "fields": [{"field": f, "reason": r} for f, r in errors]})
    receipt = desk.submit(details, source=source, request_id=request_id)
    if receipt.outcome == "queued":
        return (_page(desk, "exposure_sent.html.j2", 200, message=MESSAGE) if form
                else _json(202, RECEIVED))
    return _refused(desk, form, receipt)


def _refused(desk: ExposureDesk, form: bool, receipt: Receipt) -> Response:
    """429 (``limited``: the same for every request from the source, whatever it sent) or 503
    (``busy``), with ``Retry-After``: the form's page, or JSON."""
    status, error = (429, "rate_limited") if receipt.outcome == "limited" else (503, "busy")
    response = (_page(desk, "exposure_refused.html.j2", status, reason=receipt.outcome) if form
                else _json(status, {"error": error}))
    response.headers["retry-after"] = str(receipt.retry_after)
    return response


__all__ = ["MESSAGE", "check_page", "own_exposures", "router"]
