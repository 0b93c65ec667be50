"""Every route of the app, walked: an anonymous request, an expired session and a session of a
role without the permission all get 401/403 and no personal data. A route added without an
entry here fails the walk."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi.routing import APIRoute

from api_support import personal_values
from labvault.access.principal import Role

# Routes that answer without a session: login, MFA, enrolment, and a health check that says
# nothing. Docs routes exist only because the test app enables them.
PUBLIC = {("GET", "/health"), ("POST", "/auth/login"), ("POST", "/auth/mfa"),
          ("POST", "/auth/enrol"), ("POST", "/auth/enrol/confirm"),
          ("GET", "/openapi.json"), ("GET", "/docs"), ("HEAD", "/docs"),
          ("HEAD", "/openapi.json"),
          ("GET", "/exposure-check"), ("POST", "/exposure-check"),  # the same answer for all
          # Whoever got a notice checks its code before trusting it, and has no account; the
          # answer is the lab, the day and the incident's reference, or unknown: nobody's data.
          ("GET", "/verify"), ("POST", "/verify"), ("POST", "/verify/check")}

# For each protected route: a role that must be refused (None: any signed-in role may call
# it, e.g. logout), and a valid body.
PROTECTED: dict[tuple[str, str], tuple[Role | None, dict | None]] = {
    ("POST", "/auth/step-up"): (None, {"code": "123456"}),
    ("POST", "/auth/logout"): (None, None),
    ("GET", "/health/audit"): (Role.BIOLOGIST, None),
    ("POST", "/patients/search"): (Role.ADMIN, {"nir": "{nir}"}),
    ("GET", "/patients/{patient_id}"): (Role.ADMIN, None),
    ("GET", "/patients/{patient_id}/record"): (Role.SECRETARY, None),
    ("GET", "/me/record"): (Role.ADMIN, None),
    ("GET", "/me/accesses"): (Role.DPO, None),
    ("GET", "/me/exposures"): (Role.BIOLOGIST, None),
    ("POST", "/notices/queue"): (Role.BIOLOGIST, {"incident_id": str(uuid.UUID(int=1))}),
    ("POST", "/notices/status"): (Role.ADMIN, {"incident_id": str(uuid.UUID(int=1))}),
    ("GET", "/export"): (Role.DPO, None),
    ("POST", "/accounts"): (Role.BIOLOGIST, {"email": "new.person@lab.example",
                                             "display_name": "New Person",
                                             "roles": ["technician"]}),
    ("GET", "/accounts"): (Role.DPO, None),
    ("POST", "/accounts/{account_id}/disable"): (Role.BIOLOGIST, None),
    ("POST", "/accounts/{account_id}/reset-mfa"): (Role.DPO, None),
    ("POST", "/accounts/{account_id}/approve"): (Role.BIOLOGIST, None),
    ("POST", "/accounts/{account_id}/tokens"): (Role.BIOLOGIST, {
        "scopes": ["vault:patient:read"], "days": 30, "label": "gateway"}),
    ("GET", "/tokens"): (Role.BIOLOGIST, None),
    ("DELETE", "/tokens/{token_id}"): (Role.BIOLOGIST, None),
    ("POST", "/tokens/{token_id}/approve"): (Role.BIOLOGIST, None),
    ("GET", "/audit/events"): (Role.ADMIN, None),
    ("GET", "/audit/patients/{patient_id}/accesses"): (Role.BIOLOGIST, None),
    ("GET", "/audit/checkpoints"): (Role.ADMIN, None),
    ("POST", "/audit/verify"): (Role.BIOLOGIST, {"start": 1}),
    ("POST", "/patients"): (Role.BIOLOGIST, {"last_name": "Nouveau", "first_names": "Jean",
                                             "birth_date": "1980-05-17", "sex": "M"}),
    ("POST", "/patients/{patient_id}/orders"): (Role.SECRETARY, {
        "lab_finess": "750000010", "results": [{"code_system": "LN", "code": "2345-7",
                                                "label": "Glucose", "value": "5.1"}]}),
    ("POST", "/patients/{patient_id}/orders/{order_id}/validate"): (Role.TECHNICIAN, None),
    ("GET", "/alerts"): (Role.SECRETARY, None),
    ("GET", "/alerts/{alert_id}"): (Role.BIOLOGIST, None),
    ("POST", "/alerts/{alert_id}/ack"): (Role.ADMIN, {"reason": "confirmed"}),
    ("POST", "/accounts/{account_id}/unlock"): (Role.BIOLOGIST, None),
}


def _routes(app) -> set[tuple[str, str]]:
    out = set()
    for route in app.routes:
        methods = getattr(route, "methods", None) or set()
        for m in methods:
            out.add((m, route.path))
    return out


def test_every_route_is_classified(client):
    routes = _routes(client.app)
    unknown = routes - PUBLIC - set(PROTECTED)
    assert not unknown, f"routes neither public nor walked: {sorted(unknown)}"
    assert all(isinstance(r, APIRoute) or (("GET", r.path) in PUBLIC)
               for r in client.app.routes if hasattr(r, "path"))


def _call(client, method, path, body, headers, ids, nir):
    url = path.format(**ids)
    if body is not None:
        body = {k: (v.format(nir=nir) if isinstance(v, str) else v) for k, v in body.items()}
    return client.request(method, url, json=body, headers=headers)


def _ids(records, target_account: uuid.UUID) -> dict[str, str]:
    return {"patient_id": str(records[0].patient.id), "account_id": str(target_account),
            "token_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4()),
            "alert_id": str(uuid.uuid4())}


def _leaks(response, secrets) -> str | None:
    if not response.headers["content-type"].startswith("application/json"):
        return f"content type {response.headers['content-type']}"
    if any(value in response.text for value in secrets):
        return "a personal value in the answer"
    return None


def test_anonymous_expired_and_unpermitted_are_refused(client, records, login, clock):
    """Every protected route, in one vault: anonymous, a bogus token, a role without the
    permission, then (all sessions past the 15-minute idle limit) an expired session. Every
    failure is listed, route by route, not only the first."""
    secrets = personal_values(records)
    target = login(Role.TECHNICIAN)
    ids = _ids(records, target.account_id)
    nir = records[0].patient.nir
    routes = sorted(PROTECTED)
    failures: list[str] = []

    def expect(route, what, headers, status):
        method, path = route
        r = _call(client, method, path, PROTECTED[route][1], headers, ids, nir)
        problem = (f"status {r.status_code}, not {status}" if r.status_code != status
                   else _leaks(r, secrets))
        if status == 401 and not problem and r.headers.get("www-authenticate") != "Bearer":
            problem = "no WWW-Authenticate: Bearer"
        if problem:
            failures.append(f"{method} {path} ({what}): {problem}")

    denied = {role: login(role) for role in {d for d, _ in PROTECTED.values() if d}}
    for route in routes:
        expect(route, "anonymous", {}, 401)
        expect(route, "bogus token", {"Authorization": "Bearer not-a-token"}, 401)
        if (role := PROTECTED[route][0]) is not None:
            expect(route, f"as {role.value}", denied[role].headers, 403)

    # Expired: past the idle limit, the same sessions no longer open anything.
    sessions = {route: login(PROTECTED[route][0] or Role.BIOLOGIST) for route in routes}
    clock.advance(timedelta(minutes=16))
    for route in routes:
        expect(route, "expired session", sessions[route].headers, 401)
    assert not failures, "\n".join(failures)


def test_permitted_roles_do_get_data(client, records, login):
    """The walk above would pass on an app that refuses everything: this one proves it serves."""
    p = records[0].patient
    bio = login(Role.BIOLOGIST)
    r = client.post("/patients/search", json={"nir": p.nir}, headers=bio.headers)
    assert r.status_code == 200 and r.json()["patient_ids"] == [str(p.id)]
    r = client.get(f"/patients/{p.id}/record", headers=bio.headers)
    assert r.status_code == 200
    assert r.json()["patient"]["last_name"] == p.last_name
    sec = login(Role.SECRETARY)
    r = client.get(f"/patients/{p.id}", headers=sec.headers)
    assert r.status_code == 200 and r.json()["last_name"] == p.last_name


def test_openapi_and_docs_are_off_by_default(vault):
    from fastapi.testclient import TestClient

    from labvault.api import create_app

    with TestClient(create_app(vault)) as c:
        assert c.get("/openapi.json").status_code == 404
        assert c.get("/docs").status_code == 404
        r = c.get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        for header in ("x-content-type-options", "x-frame-options", "content-security-policy",
                       "referrer-policy", "cache-control", "x-request-id"):
            assert header in r.headers
        assert "server" not in r.headers
