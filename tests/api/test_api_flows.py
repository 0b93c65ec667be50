"""The API end to end on a real vault: login hardening, step-up for export, service tokens,
the patient's own record, the admin's blindness to patient data, logout, limits and errors."""

from __future__ import annotations

import json
from datetime import timedelta

import pyotp

from api_support import PASSWORD, enrol, personal_values
from labvault.access.permissions import Permission
from labvault.access.principal import Role


def test_unknown_account_and_wrong_password_answer_the_same(client, vault, operator, clock):
    _, email, _ = enrol(vault, operator, clock, Role.BIOLOGIST)
    a = client.post("/auth/login", json={"email": email, "password": "wrong " + PASSWORD})
    b = client.post("/auth/login", json={"email": "nobody@lab.example", "password": PASSWORD})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json() == {"error": "authentication_failed"}
    assert a.headers.get("retry-after") == b.headers.get("retry-after")


def test_repeated_failures_are_throttled_then_locked(client, vault, operator, clock):
    _, email, _ = enrol(vault, operator, clock, Role.BIOLOGIST)
    bad = {"email": email, "password": "wrong " + PASSWORD}
    waits = []
    for i in range(12):
        r = client.post("/auth/login", json=bad)
        assert r.status_code == 401
        waits.append(int(r.headers.get("retry-after", 0)))
        if i < 11:
            clock.advance(timedelta(seconds=waits[-1]))  # a client that waits as told
    assert waits[-1] > waits[5] > 0  # back-off grows, then the lock
    # Even the right password is refused while locked, with the same answer.
    r = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 401 and r.json() == {"error": "authentication_failed"}
    clock.advance(timedelta(minutes=31))
    r = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200


def test_export_needs_a_fresh_second_factor(client, records, login, clock):
    bio = login(Role.BIOLOGIST)
    clock.advance(timedelta(minutes=6))  # the login's MFA proof is no longer fresh
    r = client.get("/export", headers=bio.headers)
    assert r.status_code == 403 and r.json() == {"error": "step_up_required"}
    r = client.post("/auth/step-up", json={"code": "000000"}, headers=bio.headers)
    assert r.status_code == 401
    clock.advance(timedelta(seconds=31))
    r = client.post("/auth/step-up", json={"code": bio.totp.at(clock.now())}, headers=bio.headers)
    assert r.status_code == 204
    r = client.get("/export", headers=bio.headers)
    assert r.status_code == 200
    *lines, trailer = [json.loads(x) for x in r.text.splitlines()]
    assert sorted(x["patient"]["id"] for x in lines) == sorted(str(x.patient.id) for x in records)
    assert trailer == {"complete": True, "records": len(records)}
    clock.advance(timedelta(minutes=6))
    assert client.get("/export", headers=bio.headers).status_code == 403


def test_service_token_has_exactly_its_scopes(client, records, service_token, clock):
    p = records[0].patient
    token = service_token([Permission.PATIENT_SEARCH])
    h = {"Authorization": f"Bearer {token}"}
    r = client.post("/patients/search", json={"nir": p.nir}, headers=h)
    assert r.status_code == 200 and r.json()["patient_ids"] == [str(p.id)]
    assert client.get(f"/patients/{p.id}", headers=h).status_code == 403
    assert client.get("/export", headers=h).status_code == 403
    clock.advance(timedelta(days=31))
    assert client.post("/patients/search", json={"nir": p.nir}, headers=h).status_code == 401


def test_admin_reads_no_patient_data(client, records, login):
    admin = login(Role.ADMIN)
    secrets = personal_values(records)
    p = records[0].patient
    for method, url, body in [("POST", "/patients/search", {"nir": p.nir}),
                              ("GET", f"/patients/{p.id}", None),
                              ("GET", f"/patients/{p.id}/record", None),
                              ("GET", "/me/record", None), ("GET", "/export", None),
                              ("GET", f"/audit/patients/{p.id}/accesses", None)]:
        r = client.request(method, url, json=body, headers=admin.headers)
        assert r.status_code == 403, url
        assert not any(s in r.text for s in secrets)
    r = client.get("/accounts", headers=admin.headers)  # what the admin is for
    assert r.status_code == 200 and len(r.json()) >= 1
    assert not any(s in r.text for s in secrets)


def test_patient_reads_own_record_only(client, records, login):
    mine, other = records[0].patient, records[1].patient
    me = login(Role.PATIENT, patient_id=mine.id)
    r = client.get("/me/record", headers=me.headers)
    assert r.status_code == 200 and r.json()["patient"]["id"] == str(mine.id)
    assert client.get(f"/patients/{mine.id}/record", headers=me.headers).status_code == 200
    r = client.get(f"/patients/{other.id}/record", headers=me.headers)
    assert r.status_code == 403 and other.last_name not in r.text
    assert client.post("/patients/search", json={"nir": other.nir},
                       headers=me.headers).status_code == 403


def test_a_patient_sees_who_accessed_their_record_by_role_not_by_account(client, records,
                                                                          login, clock):
    mine, other = records[0].patient, records[1].patient
    bio, sec = login(Role.BIOLOGIST), login(Role.SECRETARY)
    assert client.get(f"/patients/{mine.id}/record", headers=bio.headers).status_code == 200
    assert client.get(f"/patients/{mine.id}/record", headers=sec.headers).status_code == 403
    assert client.get(f"/patients/{other.id}/record", headers=bio.headers).status_code == 200
    clock.advance(timedelta(minutes=1))
    me = login(Role.PATIENT, patient_id=mine.id)
    assert client.get("/me/record", headers=me.headers).status_code == 200
    r = client.get("/me/accesses", headers=me.headers)
    assert r.status_code == 200
    seen = [(a["role"], a["action"], a["outcome"]) for a in r.json()["accesses"]]
    assert ("biologist", "vault:result:read", "allowed") in seen
    assert ("secretary", "vault:result:read", "denied") in seen  # refusals too
    assert ("patient", "vault:result:read", "allowed") in seen  # their own read
    assert not [a for a in seen if a[1].startswith("audit:")]  # not the list's own reads
    assert seen.count(("biologist", "vault:result:read", "allowed")) == 1  # not the other's
    for account in (bio.account_id, sec.account_id):
        assert str(account) not in r.text  # roles, not accounts
    assert set(r.json()["accesses"][0]) == {"at", "role", "action", "purpose", "outcome"}
    # Staff have no record of their own to ask about; the DPO reads the full report.
    for who in (bio, login(Role.DPO)):
        assert client.get("/me/accesses", headers=who.headers).status_code == 403
    dpo = login(Role.DPO)
    full = client.get(f"/audit/patients/{mine.id}/accesses", headers=dpo.headers)
    assert full.status_code == 200 and str(bio.account_id) in full.text


def test_logout_revokes_the_session(client, records, login):
    bio = login(Role.BIOLOGIST)
    pid = records[0].patient.id
    assert client.get(f"/patients/{pid}", headers=bio.headers).status_code == 200
    assert client.post("/auth/logout", headers=bio.headers).status_code == 204
    assert client.get(f"/patients/{pid}", headers=bio.headers).status_code == 401


def test_errors_carry_no_values_and_bodies_are_bounded(client, records, login):
    bio = login(Role.BIOLOGIST)
    r = client.post("/patients/search", json={"nir": "x" * 30, "extra": "Dupont-Secret"},
                    headers=bio.headers)
    assert r.status_code == 422
    assert "Dupont-Secret" not in r.text and "xxxx" not in r.text
    assert {f["field"] for f in r.json()["fields"]} >= {"body.nir", "body.extra"}
    r = client.post("/auth/login", content=b"{" + b" " * 70_000 + b"}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.get("/patients/not-a-uuid", headers=bio.headers)
    assert r.status_code == 422 and "not-a-uuid" not in r.text


def test_every_read_is_audited_with_request_id(client, records, login, vault, operator):
    bio = login(Role.BIOLOGIST)
    pid = records[0].patient.id
    r = client.get(f"/patients/{pid}/record", headers=bio.headers)
    rid = r.headers["x-request-id"]
    events = vault.audit_log.who_read(operator, pid)
    mine = [e for e in events if e.request_id == rid]
    assert mine and mine[-1].actor == f"account:{bio.account_id}"
    assert mine[-1].role == "biologist" and mine[-1].outcome == "allowed"


def test_four_eyes_accounts_and_tokens(client, records, login, clock):
    """One admin alone gets no secret; a second admin approves; the person enrols."""
    first, second = login(Role.ADMIN), login(Role.ADMIN)
    r = client.post("/accounts", headers=first.headers, json={
        "email": "new.bio@lab.example", "display_name": "Nouvelle Biologiste",
        "roles": ["biologist"]})
    assert r.status_code == 201, r.text
    account_id = r.json()["id"]
    assert r.json() == {"id": account_id, "status": "awaiting_approval"}
    accounts = client.get("/accounts", headers=first.headers).json()
    [mine] = [a for a in accounts if a["id"] == account_id]
    assert mine["status"] == "awaiting_approval"
    assert mine["requested_by"] == f"account:{first.account_id}"

    r = client.post(f"/accounts/{account_id}/approve", headers=first.headers)
    assert r.status_code == 403 and r.json() == {"error": "forbidden"}
    r = client.post(f"/accounts/{account_id}/approve", headers=second.headers)
    assert r.status_code == 200, r.text
    token = r.json()["enrolment_token"]
    assert token.startswith("lve_")
    r = client.post(f"/accounts/{account_id}/approve", headers=second.headers)
    assert r.status_code == 422  # approved once, shown once

    r = client.post("/auth/enrol", json={"enrolment_token": token, "password": PASSWORD})
    assert r.status_code == 200, r.text
    app = pyotp.TOTP(r.json()["secret"])
    r = client.post("/auth/enrol/confirm", json={"enrolment_token": token,
                                                 "code": app.at(clock.now())})
    assert r.status_code == 200 and len(r.json()["recovery_codes"]) == 10
    clock.advance(timedelta(seconds=31))
    r = client.post("/auth/login", json={"email": "new.bio@lab.example", "password": PASSWORD})
    r = client.post("/auth/mfa", json={"challenge": r.json()["challenge"],
                                       "code": app.at(clock.now())})
    assert r.status_code == 200 and r.json()["role"] == "biologist"
    bio = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.get(f"/patients/{records[0].patient.id}", headers=bio).status_code == 200

    # A re-enrolment asked for by one admin: no token until the other approves.
    r = client.post(f"/accounts/{account_id}/reset-mfa", headers=first.headers)
    assert r.status_code == 200 and r.json() == {"id": account_id,
                                                 "status": "awaiting_approval"}
    assert client.get(f"/patients/{records[0].patient.id}", headers=bio).status_code == 401
    assert client.post(f"/accounts/{account_id}/approve",
                       headers=first.headers).status_code == 403
    r = client.post(f"/accounts/{account_id}/approve", headers=second.headers)
    assert r.status_code == 200 and r.json()["enrolment_token"].startswith("lve_")

    # A service account and its token, each approved by the other admin.
    r = client.post("/accounts", headers=first.headers, json={
        "email": "gateway@lab.example", "display_name": "Gateway", "roles": ["service"]})
    service_id = r.json()["id"]
    r = client.post(f"/accounts/{service_id}/approve", headers=second.headers)
    assert r.status_code == 200 and r.json() == {"enrolment_token": None}
    r = client.post(f"/accounts/{service_id}/tokens", headers=second.headers,
                    json={"scopes": ["vault:patient:read"], "days": 30, "label": "feed"})
    assert r.status_code == 201 and r.json()["status"] == "awaiting_approval"
    assert set(r.json()) == {"id", "status"}
    token_id = r.json()["id"]
    [listed] = client.get("/tokens", headers=first.headers).json()
    assert listed["status"] == "awaiting_approval" and "token" not in listed
    assert client.post(f"/tokens/{token_id}/approve", headers=second.headers).status_code == 403
    r = client.post(f"/tokens/{token_id}/approve", headers=first.headers)
    assert r.status_code == 200 and r.json()["id"] == token_id
    svc = {"Authorization": f"Bearer {r.json()['token']}"}
    p = records[0].patient
    assert client.get(f"/patients/{p.id}", headers=svc).status_code == 200
