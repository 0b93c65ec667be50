"""The API end to end on a real vault: login hardening, step-up for export, service tokens,
the patient's own record, the admin's blindness to patient data, logout, limits and errors."""

from __future__ import annotations

import json
from datetime import timedelta

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
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert sorted(x["patient"]["id"] for x in lines) == sorted(str(x.patient.id) for x in records)
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
