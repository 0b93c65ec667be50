"""Alerts through the API: a biologist reading many records within a minute is locked by the
in-process watcher; the DPO lists, shows and acknowledges the alert; other roles are refused;
unlocking needs an administrator and the DPO. Answers hold ids and counts, never a personal
value."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from api_support import PASSWORD, personal_values
from labvault.access.principal import Role
from labvault.api.models_watch import AckReason
from labvault.synthetic import SyntheticLab
from labvault.watch.desk import ACK_REASONS


@pytest.fixture
def patients(vault, operator):
    recs = list(SyntheticLab(seed=23, results_per_patient=1).records(14))
    vault.put_patients(operator, recs)
    return recs


@pytest.fixture
def watching(vault):
    yield vault.watch.start(background=False)
    vault.watch.stop()


@pytest.fixture
def locked(client, login, patients, watching):
    """A biologist who read 13 records within a minute: the 13th went over the role's limit of
    12, the account is locked and its session revoked."""
    bio = login(Role.BIOLOGIST)
    for r in patients[:13]:
        assert client.get(f"/patients/{r.id}/record", headers=bio.headers).status_code == 200
    r = client.get(f"/patients/{patients[13].id}/record", headers=bio.headers)
    assert r.status_code == 401
    return bio


def _clean(response, patients) -> None:
    for value in personal_values(patients):
        assert value not in response.text


def test_the_reasons_offered_are_the_desks():
    assert set(AckReason.__args__) == set(ACK_REASONS)


def test_the_dpo_lists_shows_and_acknowledges(client, login, locked, patients):
    dpo = login(Role.DPO)
    r = client.get("/alerts", headers=dpo.headers)
    assert r.status_code == 200, r.text
    _clean(r, patients)
    (alert,) = r.json()
    assert (alert["rule"], alert["severity"], alert["response"], alert["status"]) == (
        "volume", "critical", "locked", "open")
    assert alert["actor"] == f"account:{locked.account_id}"
    assert alert["evidence"]["window"] == "1m" and alert["evidence"]["limit"] == 12

    r = client.get(f"/alerts/{alert['id']}", headers=dpo.headers)
    assert r.status_code == 200, r.text
    _clean(r, patients)
    assert r.json()["alert"]["id"] == alert["id"]
    # No channel is configured: each route of a critical alert records that, visibly.
    assert sorted((d["channel"], d["outcome"]) for d in r.json()["deliveries"]) == [
        ("email", "not_configured"), ("syslog", "not_configured"), ("webhook", "not_configured")]
    assert client.get(f"/alerts/{uuid.uuid4()}", headers=dpo.headers).status_code == 404

    r = client.post(f"/alerts/{alert['id']}/ack", json={"reason": "my note: Dupont"},
                    headers=dpo.headers)
    assert r.status_code == 422 and "Dupont" not in r.text
    assert r.json()["fields"][0]["field"] == "body.reason"
    r = client.post(f"/alerts/{alert['id']}/ack", json={"reason": "confirmed"},
                    headers=dpo.headers)
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["status"] == "acknowledged"
    assert acked["acknowledged_by"] == f"account:{dpo.account_id}"
    assert acked["next_escalation_at"] is None

    assert client.get("/alerts?status=open", headers=dpo.headers).json() == []
    assert [a["id"] for a in client.get("/alerts?status=acknowledged&limit=5",
                                        headers=dpo.headers).json()] == [alert["id"]]
    assert client.get("/alerts?status=closed", headers=dpo.headers).status_code == 422
    assert client.get("/alerts?limit=0", headers=dpo.headers).status_code == 422

    # An administrator reads alerts but does not acknowledge them.
    admin = login(Role.ADMIN)
    assert client.get("/alerts", headers=admin.headers).status_code == 200
    assert client.post(f"/alerts/{alert['id']}/ack", json={"reason": "duplicate"},
                       headers=admin.headers).status_code == 403


def test_other_roles_and_anonymous_callers_are_refused(client, login, locked, vault, operator):
    (alert,) = vault.watch.alerts(operator)
    routes = [("GET", "/alerts", None), ("GET", f"/alerts/{alert.id}", None),
              ("POST", f"/alerts/{alert.id}/ack", {"reason": "false-positive"}),
              ("POST", f"/accounts/{locked.account_id}/unlock", None)]
    secretary = login(Role.SECRETARY)
    for method, path, body in routes:
        r = client.request(method, path, json=body)
        assert r.status_code == 401 and r.json() == {"error": "authentication_failed"}
        r = client.request(method, path, json=body, headers=secretary.headers)
        assert r.status_code == 403 and r.json() == {"error": "forbidden"}, (method, path)
    (alert,) = vault.watch.alerts(operator)
    assert alert.status == "open"
    events = vault._audit.events("watch:alert:read")
    assert any(e.outcome == "denied" and e.actor == f"account:{secretary.account_id}"
               for e in events)


def _status(client, admin, account_id) -> str:
    r = client.get("/accounts", headers=admin.headers)
    assert r.status_code == 200
    return next(a["status"] for a in r.json() if a["id"] == str(account_id))


def test_unlocking_needs_an_admin_and_the_dpo(client, login, locked, patients, clock, vault,
                                             operator):
    admin, dpo = login(Role.ADMIN), login(Role.DPO)
    assert _status(client, admin, locked.account_id) == "locked"
    url = f"/accounts/{locked.account_id}/unlock"

    r = client.post(url, headers=admin.headers)
    assert r.status_code == 200 and r.json() == {"unlocked": False}
    assert _status(client, admin, locked.account_id) == "locked"
    assert client.post(url, headers=admin.headers).status_code == 403  # the same person again
    r = client.post("/auth/login", json={"email": locked.email, "password": PASSWORD})
    assert r.status_code == 401  # still locked

    r = client.post(url, headers=dpo.headers)
    assert r.status_code == 200 and r.json() == {"unlocked": True}
    assert _status(client, admin, locked.account_id) == "active"
    assert client.post(url, headers=dpo.headers).status_code == 422  # nothing locked any more
    (alert,) = vault.watch.alerts(operator)
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", f"account:{dpo.account_id}")

    # The biologist signs in again (a fresh second factor) and works; the reads that locked
    # the account are forgotten and do not lock it again.
    r = client.post("/auth/login", json={"email": locked.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    r = client.post("/auth/mfa", json={"challenge": r.json()["challenge"],
                                       "code": locked.totp.at(clock.now())})
    assert r.status_code == 200, r.text
    clock.advance(timedelta(seconds=31))
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    for p in patients[:3]:
        assert client.get(f"/patients/{p.id}/record", headers=headers).status_code == 200
    assert len(vault.watch.alerts(operator)) == 1


def test_unlocking_an_account_that_is_not_locked_is_invalid(client, login, records):
    admin, bio = login(Role.ADMIN), login(Role.BIOLOGIST)
    r = client.post(f"/accounts/{bio.account_id}/unlock", headers=admin.headers)
    assert r.status_code == 422
    assert r.json() == {"error": "invalid", "fields": [
        {"field": "account_id", "reason": "no locked account has this id"}]}
