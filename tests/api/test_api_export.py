"""An export that the audit stops half-way says so in its last line: the answer's 200 was sent
before the records, so the receiver must be able to tell a complete export from a cut one."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select, text

from labvault.access.principal import Role
from labvault.store.tables import audit_event
from labvault.synthetic import SyntheticLab


def _fail_audit_after(engine, allowed_more: int) -> None:
    """The audit table refuses inserts once it holds `allowed_more` more events (a real
    failure of the store, raised by the database itself)."""
    with engine.begin() as conn:
        n = conn.execute(select(func.count()).select_from(audit_event)).scalar_one()
        limit = n + allowed_more
        if engine.dialect.name == "sqlite":
            conn.execute(text(
                "CREATE TRIGGER audit_full BEFORE INSERT ON audit_event "
                f"WHEN (SELECT count(*) FROM audit_event) >= {limit} "
                "BEGIN SELECT RAISE(ABORT, 'audit store full'); END"))
        else:
            conn.execute(text(
                "CREATE FUNCTION audit_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF (SELECT count(*) FROM audit_event) >= {limit} THEN "
                "RAISE EXCEPTION 'audit store full'; END IF; RETURN NEW; END $$"))
            conn.execute(text("CREATE TRIGGER audit_full BEFORE INSERT ON audit_event "
                              "FOR EACH ROW EXECUTE FUNCTION audit_full()"))


def test_an_export_cut_by_the_audit_ends_with_an_incomplete_line(client, vault, operator,
                                                                  login, clock):
    vault.put_patients(operator, list(SyntheticLab(seed=5, results_per_patient=1).records(230)))
    bio = login(Role.BIOLOGIST)
    clock.advance(timedelta(seconds=31))
    r = client.post("/auth/step-up", json={"code": bio.totp.at(clock.now())}, headers=bio.headers)
    assert r.status_code == 204
    _fail_audit_after(vault._records.engine, 1)  # the first batch's event, then no more
    r = client.get("/export", headers=bio.headers)
    assert r.status_code == 200
    *lines, trailer = [json.loads(x) for x in r.text.splitlines()]
    assert trailer == {"complete": False, "records": len(lines), "error": "audit_unavailable"}
    assert 0 < len(lines) < 230  # the first batch only: nothing unaudited was sent


def _revoke_sessions_after(engine, allowed_more: int) -> None:
    """Every session is revoked (as by an administrator disabling the account) when the audit
    table reaches `allowed_more` more events: mid-export, from the database's side."""
    with engine.begin() as conn:
        n = conn.execute(select(func.count()).select_from(audit_event)).scalar_one()
        limit = n + allowed_more
        if engine.dialect.name == "sqlite":
            conn.execute(text(
                "CREATE TRIGGER revoke_all AFTER INSERT ON audit_event "
                f"WHEN (SELECT count(*) FROM audit_event) = {limit} BEGIN "
                "UPDATE auth_session SET revoked_at = '2026-01-01 00:00:00.000000' "
                "WHERE revoked_at IS NULL; END"))
        else:
            conn.execute(text(
                "CREATE FUNCTION revoke_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF (SELECT count(*) FROM audit_event) = {limit} THEN "
                "UPDATE auth_session SET revoked_at = now() WHERE revoked_at IS NULL; END IF; "
                "RETURN NEW; END $$"))
            conn.execute(text("CREATE TRIGGER revoke_all AFTER INSERT ON audit_event "
                              "FOR EACH ROW EXECUTE FUNCTION revoke_all()"))


def test_a_session_revoked_during_an_export_stops_it(client, vault, operator, login, clock):
    vault.put_patients(operator, list(SyntheticLab(seed=6, results_per_patient=1).records(230)))
    bio = login(Role.BIOLOGIST)
    clock.advance(timedelta(seconds=31))
    r = client.post("/auth/step-up", json={"code": bio.totp.at(clock.now())}, headers=bio.headers)
    assert r.status_code == 204
    _revoke_sessions_after(vault._records.engine, 2)  # at the second batch's audit event
    r = client.get("/export", headers=bio.headers)
    assert r.status_code == 200
    *lines, trailer = [json.loads(x) for x in r.text.splitlines()]
    assert trailer == {"complete": False, "records": 10, "error": "session_ended"}
    assert len(lines) == 10  # the second batch was logged, then refused before it was opened
    assert client.get("/export", headers=bio.headers).status_code == 401


def test_an_export_through_a_stolen_session_is_cut_after_one_batch(client, vault, operator,
                                                                     login, clock):
    vault.put_patients(operator, list(SyntheticLab(seed=8, results_per_patient=1).records(60)))
    vault.watch.start(background=False)
    bio = login(Role.BIOLOGIST)
    clock.advance(timedelta(seconds=31))
    r = client.post("/auth/step-up", json={"code": bio.totp.at(clock.now())}, headers=bio.headers)
    assert r.status_code == 204
    r = client.get("/export", headers=bio.headers)
    *lines, trailer = [json.loads(x) for x in r.text.splitlines()]
    assert len(lines) == 10
    # The second batch took the account over the biologist's 12 a minute: locked on its event,
    # refused before any of its records was opened.
    assert trailer == {"complete": False, "records": 10, "error": "session_ended"}
    assert [(a.rule, a.response) for a in vault.watch.alerts(operator)] == [("volume", "locked")]
    r = client.post("/patients/search", json={"nir": "1"}, headers=bio.headers)
    assert r.status_code == 401
