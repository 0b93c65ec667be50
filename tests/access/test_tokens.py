"""Service tokens: scopes within SERVICE_GRANTABLE, exactly those scopes in the principal,
expiry, revocation, disabled accounts, listing without secrets."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from account_support import SOURCE
from sqlalchemy import select

from labvault import AccessDenied, InvalidRecord, NotFound, Permission, Role
from labvault.errors import AuthenticationFailed
from labvault.store.tables import api_token, audit_event
from labvault.synthetic import SyntheticLab

P = Permission




@pytest.fixture
def service(desk, operator) -> uuid.UUID:
    account_id, _ = desk.create_account(operator, email="analyser@lab.example",
                                        display_name="Analyser gateway", roles=[Role.SERVICE])
    return account_id


def _auth(desk, token, purpose="feed"):
    return desk.authenticate_token(token, source=SOURCE, purpose=purpose, request_id="r")


def test_a_token_principal_has_exactly_its_scopes(vault, desk, operator, service):
    [record] = SyntheticLab(4).records(1)
    vault.put_patients(operator, [record])
    token_id, token = desk.issue_token(operator, service, scopes=[P.PATIENT_READ],
                                       ttl=timedelta(days=30), label="gateway")
    assert token.reveal().startswith("lvt_") and repr(token) == "Secret('**********')"
    p = _auth(desk, token)
    assert p.role is Role.SERVICE and p.scopes == frozenset({"vault:patient:read"})
    assert p.actor_id == f"account:{service}/token:{token_id}"
    assert vault.get_patient(p, record.id).id == record.id
    with pytest.raises(AccessDenied):  # results were not granted
        vault.get_record(p, record.id)
    with pytest.raises(AccessDenied):
        vault.find_patients(p, nir=record.patient.nir or "1")
    with pytest.raises(AccessDenied):
        vault.put_patients(p, [])
    assert desk.authenticate_bearer(token, source=SOURCE, purpose="feed",
                                    request_id="r").scopes == p.scopes


def test_scopes_outside_what_a_service_may_hold_are_refused(desk, operator, service):
    for scopes in ([P.PATIENT_EXPORT], [P.PATIENT_READ, P.PATIENT_ERASE], [P.ACCOUNT_MANAGE],
                   [P.AUDIT_READ], [], ["vault:everything"]):
        with pytest.raises(InvalidRecord) as info:
            desk.issue_token(operator, service, scopes=scopes, ttl=timedelta(days=1), label="x")
        assert info.value.field == "scopes", scopes
    assert desk.list_tokens(operator) == []


def test_tokens_go_to_service_accounts_for_at_most_a_year(desk, operator, service):
    staff, _ = desk.create_account(operator, email="tech@lab.example", display_name="T",
                                   roles=[Role.TECHNICIAN])
    with pytest.raises(InvalidRecord) as info:
        desk.issue_token(operator, staff, scopes=[P.PATIENT_READ], ttl=timedelta(days=1),
                         label="x")
    assert info.value.field == "account_id"
    for ttl in (timedelta(days=366), timedelta(0), -timedelta(days=1)):
        with pytest.raises(InvalidRecord) as info:
            desk.issue_token(operator, service, scopes=[P.PATIENT_READ], ttl=ttl, label="x")
        assert info.value.field == "ttl"
    desk.issue_token(operator, service, scopes=[P.PATIENT_READ], ttl=timedelta(days=365),
                     label="x")
    with pytest.raises(NotFound):
        desk.issue_token(operator, uuid.uuid4(), scopes=[P.PATIENT_READ],
                         ttl=timedelta(days=1), label="x")


def test_a_token_expires(desk, operator, service, clock):
    _, token = desk.issue_token(operator, service, scopes=[P.PATIENT_SEARCH],
                                ttl=timedelta(days=2), label="gateway")
    clock.advance(timedelta(days=2) - timedelta(seconds=1))
    _auth(desk, token)
    clock.advance(timedelta(seconds=1))
    with pytest.raises(AuthenticationFailed) as info:
        _auth(desk, token)
    assert str(info.value) == "authentication failed" and info.value.retry_after is None


def test_revoked_tokens_and_disabled_accounts_stop_at_once(vault, desk, operator, service):
    first_id, first = desk.issue_token(operator, service, scopes=[P.PATIENT_READ],
                                       ttl=timedelta(days=30), label="one")
    _, second = desk.issue_token(operator, service, scopes=[P.PATIENT_READ],
                                 ttl=timedelta(days=30), label="two")
    desk.revoke_token(operator, first_id)
    with pytest.raises(AuthenticationFailed):
        _auth(desk, first)
    _auth(desk, second)
    desk.disable_account(operator, service)  # revokes its tokens
    with pytest.raises(AuthenticationFailed):
        _auth(desk, second)
    # A disabled account's token is refused even if it escaped revocation.
    [second_id] = [t.id for t in desk.list_tokens(operator) if t.label == "two"]
    vault.accounts._store.update_token(second_id, revoked_at=None)
    with pytest.raises(AuthenticationFailed):
        _auth(desk, second)
    with pytest.raises(AuthenticationFailed):
        _auth(desk, "lvt_" + "A" * 43)
    with pytest.raises(NotFound):
        desk.revoke_token(operator, uuid.uuid4())
    with vault._records.engine.connect() as conn:
        failures = [r.detail for r in conn.execute(select(audit_event).where(
            audit_event.c.action == "access:token:failure"))]
    assert [('"revoked"' in d, '"disabled"' in d, '"unknown"' in d) for d in failures] == [
        (True, False, False), (True, False, False), (False, True, False), (False, False, True)]


def test_list_tokens_shows_no_secret(vault, desk, operator, service, clock):
    token_id, token = desk.issue_token(operator, service, scopes=[P.RESULT_READ, P.PATIENT_READ],
                                       ttl=timedelta(days=10), label="lab results feed")
    _auth(desk, token)
    [info] = desk.list_tokens(operator)
    assert (info.id, info.account_id, info.label) == (token_id, service, "lab results feed")
    assert info.scopes == ("vault:patient:read", "vault:result:read")
    assert info.expires_at == clock.now() + timedelta(days=10)
    assert info.last_used_at == clock.now() and info.revoked_at is None
    assert token.reveal() not in repr(info)
    assert desk.list_tokens(operator, uuid.uuid4()) == []
    with vault._records.engine.connect() as conn:
        stored = conn.execute(select(api_token)).one()
    assert token.reveal().encode() not in bytes(stored.token_hash) and len(stored.token_hash) == 32


def test_only_token_managers_issue_tokens(desk, operator, service, enrol, sign_in):
    dpo = desk.authenticate(sign_in(enrol(Role.DPO)).token, source=SOURCE, purpose="p",
                            request_id="")
    with pytest.raises(AccessDenied):
        desk.issue_token(dpo, service, scopes=[P.PATIENT_READ], ttl=timedelta(days=1),
                         label="x")
    with pytest.raises(AccessDenied):
        desk.list_tokens(dpo)
    admin = desk.authenticate(sign_in(enrol(Role.ADMIN)).token, source=SOURCE, purpose="p",
                              request_id="")
    token_id, _ = desk.issue_token(admin, service, scopes=[P.PATIENT_CREATE],
                                   ttl=timedelta(days=1), label="x")
    desk.revoke_token(admin, token_id)
