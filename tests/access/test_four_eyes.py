"""The four-eyes rule: an account, a re-enrolment or a service token asked for by a signed-in
person comes into force only when a second, different person approves it. One administrator
alone (who reaches no patient data) cannot obtain a way in to patient data."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pyotp
import pytest
from account_support import PASSWORD, SOURCE
from sqlalchemy import select

from labvault import AccessDenied, InvalidRecord, NotFound, Permission, Role, Secret
from labvault.access.account_rules import token_digest
from labvault.access.permissions import POLICY
from labvault.errors import AuthenticationFailed
from labvault.store.tables import audit_event
from labvault.synthetic import SyntheticLab

P = Permission


def _events(vault, action: str) -> list:
    with vault._records.engine.connect() as conn:
        return list(conn.execute(select(audit_event).where(audit_event.c.action == action)
                                 .order_by(audit_event.c.id)))


@pytest.fixture
def staff(desk, enrol, sign_in):
    """A signed-in principal of a role (a new account each call)."""

    def make(role: Role):
        return desk.authenticate(sign_in(enrol(role)).token, source=SOURCE, purpose="admin",
                                 request_id="")

    return make


@pytest.fixture
def patient_id(vault, operator) -> uuid.UUID:
    [record] = SyntheticLab(7).records(1)
    vault.put_patients(operator, [record])
    return record.id


def _enrols(desk, clock, token) -> pyotp.TOTP:
    start = desk.begin_enrolment(token, Secret(PASSWORD))
    app = pyotp.TOTP(start.secret.reveal())
    desk.confirm_enrolment(token, app.at(clock.now()))
    clock.advance(timedelta(seconds=30))
    return app


def _signs_in(desk, clock, email: str, app: pyotp.TOTP):
    challenge = desk.login(email, Secret(PASSWORD), SOURCE)
    grant = desk.complete_login(challenge, code=app.at(clock.now()), source=SOURCE)
    clock.advance(timedelta(seconds=30))
    return desk.authenticate(grant.token, source=SOURCE, purpose="p", request_id="")


def test_approval_is_granted_to_admin_and_dpo_only():
    holders = {role for role, granted in POLICY.items() if P.ACCOUNT_APPROVE in granted}
    assert holders == {Role.ADMIN, Role.DPO, Role.LOCAL_OPERATOR}


def test_one_admin_alone_gets_no_way_in_to_patient_data(vault, desk, operator, staff, enrol,
                                                        sign_in, clock, patient_id):
    admin = staff(Role.ADMIN)
    # A biologist account for a second address of his own: no enrolment token.
    _, token = desk.create_account(admin, email="my.other.me@mail.example",
                                   display_name="Faux Biologiste", roles=[Role.BIOLOGIST])
    assert not token
    with pytest.raises(AuthenticationFailed):
        desk.begin_enrolment(token, Secret(PASSWORD))
    with pytest.raises(AuthenticationFailed):
        desk.login("my.other.me@mail.example", Secret(PASSWORD), SOURCE)
    # A patient account on any record: the same.
    _, token = desk.create_account(admin, email="curious@mail.example", display_name="Curieux",
                                   roles=[Role.PATIENT], patient_id=patient_id)
    assert not token
    # Another administrator, or a DPO, to approve his own requests: the same.
    for role in (Role.ADMIN, Role.DPO):
        _, token = desk.create_account(admin, email=f"{role}.puppet@mail.example",
                                       display_name="Marionnette", roles=[role])
        assert not token
    # A real biologist's second factor reset: the victim is locked out, but no token comes out.
    victim = enrol(Role.BIOLOGIST)
    session = sign_in(victim)
    assert not desk.reset_mfa(admin, victim.id)
    with pytest.raises(AuthenticationFailed):
        desk.authenticate(session.token, source=SOURCE, purpose="p", request_id="")
    with pytest.raises(AuthenticationFailed):
        desk.login(victim.email, Secret(PASSWORD), SOURCE)
    # A service account with a results token: no secret, and the account waits too.
    svc, token = desk.create_account(admin, email="svc@lab.example", display_name="Gateway",
                                     roles=[Role.SERVICE])
    assert not token
    with pytest.raises(InvalidRecord):  # tokens go to active service accounts only
        desk.issue_token(admin, svc, scopes=[P.RESULT_READ], ttl=timedelta(days=1), label="x")
    # And he cannot approve any of it himself.
    for account in desk.list_accounts(admin):
        if account.status == "awaiting_approval":
            with pytest.raises(AccessDenied):
                desk.approve(admin, account.id)
    denied = _events(vault, "access:account:approve")
    assert len(denied) == 6 and {e.outcome for e in denied} == {"denied"}
    assert all(e.actor == admin.actor_id and '"requester"' in e.detail for e in denied)
    assert not [e for e in _events(vault, "vault:result:read") if e.outcome == "allowed"]


def test_an_admin_alone_gets_no_usable_service_token(vault, desk, operator, staff):
    admin = staff(Role.ADMIN)
    svc, _ = desk.create_account(operator, email="gw@lab.example", display_name="Gateway",
                                 roles=[Role.SERVICE])
    token_id, token = desk.issue_token(admin, svc, scopes=[P.RESULT_READ, P.PATIENT_SEARCH],
                                       ttl=timedelta(days=30), label="feed")
    assert not token
    [info] = desk.list_tokens(admin)
    assert (info.id, info.status, info.created_by) == (token_id, "awaiting_approval",
                                                       admin.actor_id)
    with pytest.raises(AuthenticationFailed):
        desk.authenticate_token(token, source=SOURCE, purpose="feed", request_id="")
    with pytest.raises(AccessDenied):
        desk.approve_token(admin, token_id)
    [event] = _events(vault, "access:token:approve")
    assert (event.actor, event.outcome) == (admin.actor_id, "denied")


def test_an_inactive_token_authenticates_nothing(vault, desk, operator, staff):
    admin = staff(Role.ADMIN)
    svc, _ = desk.create_account(operator, email="gw@lab.example", display_name="Gateway",
                                 roles=[Role.SERVICE])
    token_id, _ = desk.issue_token(admin, svc, scopes=[P.PATIENT_READ], ttl=timedelta(days=30),
                                   label="feed")
    # Even with a secret whose digest is stored, a token awaiting approval opens nothing.
    known = "lvt_" + "K" * 43
    desk._store.update_token(token_id, token_hash=token_digest(known))
    with pytest.raises(AuthenticationFailed):
        desk.authenticate_token(known, source=SOURCE, purpose="feed", request_id="")
    with pytest.raises(AuthenticationFailed):
        desk.authenticate_bearer(known, source=SOURCE, purpose="feed", request_id="")
    failures = _events(vault, "access:token:failure")
    assert len(failures) == 2 and all('"awaiting_approval"' in f.detail for f in failures)


def test_a_second_person_approves_and_the_person_enrols(vault, desk, operator, staff, clock,
                                                        patient_id):
    admin, other_admin, dpo = staff(Role.ADMIN), staff(Role.ADMIN), staff(Role.DPO)
    bio_id, _ = desk.create_account(admin, email="bio@lab.example", display_name="Biologiste",
                                    roles=[Role.BIOLOGIST])
    token = desk.approve(other_admin, bio_id)
    assert token.reveal().startswith("lve_")
    [info] = [a for a in desk.list_accounts(admin) if a.id == bio_id]
    assert (info.status, info.requested_by, info.approved_by) == (
        "pending", admin.actor_id, other_admin.actor_id)
    app = _enrols(desk, clock, token)
    bio = _signs_in(desk, clock, "bio@lab.example", app)
    assert bio.role is Role.BIOLOGIST
    assert vault.get_patient(bio, patient_id).id == patient_id
    [approved] = _events(vault, "access:account:approve")
    assert (approved.actor, approved.outcome) == (other_admin.actor_id, "allowed")
    assert admin.actor_id in approved.detail and str(bio_id) in approved.detail
    complete = _events(vault, "access:enrolment:complete")[-1]
    assert complete.actor == f"account:{bio_id}"
    assert other_admin.actor_id in complete.detail and admin.actor_id in complete.detail
    # A DPO approves too; once approved, nothing awaits any more.
    tech_id, _ = desk.create_account(admin, email="tech@lab.example", display_name="Tech",
                                     roles=[Role.TECHNICIAN])
    assert desk.approve(dpo, tech_id).reveal().startswith("lve_")
    with pytest.raises(InvalidRecord):
        desk.approve(other_admin, tech_id)


def test_a_patient_account_shows_in_the_patients_who_read_report(vault, desk, operator, staff,
                                                                 clock, patient_id):
    admin, dpo = staff(Role.ADMIN), staff(Role.DPO)
    acct, _ = desk.create_account(admin, email="patient@mail.example", display_name="Patient",
                                  roles=[Role.PATIENT], patient_id=patient_id)
    token = desk.approve(dpo, acct)
    actions = [(a.action, a.actor) for a in vault.audit_log.who_read(operator, patient_id)]
    assert ("access:account:create", admin.actor_id) in actions
    assert ("access:account:approve", dpo.actor_id) in actions
    me = _signs_in(desk, clock, "patient@mail.example", _enrols(desk, clock, token))
    assert vault.get_record(me, patient_id).patient.id == patient_id


def test_an_approved_service_account_and_token(vault, desk, operator, staff, patient_id):
    admin, other = staff(Role.ADMIN), staff(Role.ADMIN)
    svc, _ = desk.create_account(admin, email="gw@lab.example", display_name="Gateway",
                                 roles=[Role.SERVICE])
    assert not desk.approve(other, svc)  # active now; a service has no enrolment
    token_id, _ = desk.issue_token(admin, svc, scopes=[P.PATIENT_READ], ttl=timedelta(days=30),
                                   label="feed")
    token = desk.approve_token(other, token_id)
    assert token.reveal().startswith("lvt_")
    p = desk.authenticate_token(token, source=SOURCE, purpose="feed", request_id="")
    assert vault.get_patient(p, patient_id).id == patient_id
    [info] = desk.list_tokens(admin)
    assert (info.status, info.approved_by) == ("active", other.actor_id)
    with pytest.raises(InvalidRecord):  # shown once: a second approval draws nothing
        desk.approve_token(other, token_id)
    [ok, again] = _events(vault, "access:token:approve")
    assert (ok.outcome, again.outcome) == ("allowed", "invalid")


def test_approval_refusals(vault, desk, operator, staff, enrol):
    admin, other = staff(Role.ADMIN), staff(Role.ADMIN)
    bio = staff(Role.BIOLOGIST)
    acct, _ = desk.create_account(admin, email="x@lab.example", display_name="X",
                                  roles=[Role.SECRETARY])
    with pytest.raises(AccessDenied):  # no permission to approve
        desk.approve(bio, acct)
    with pytest.raises(NotFound):
        desk.approve(other, uuid.uuid4())
    with pytest.raises(NotFound):
        desk.approve_token(other, uuid.uuid4())
    with pytest.raises(InvalidRecord):  # nothing to reset before it is even approved
        desk.reset_mfa(other, acct)
    desk.disable_account(other, acct)
    with pytest.raises(InvalidRecord):
        desk.approve(other, acct)
    active = enrol(Role.TECHNICIAN)
    with pytest.raises(InvalidRecord):  # nothing awaits approval
        desk.approve(other, active.id)
    # A token revoked (or its account disabled) before approval is never brought into force.
    svc, _ = desk.create_account(operator, email="gw@lab.example", display_name="Gateway",
                                 roles=[Role.SERVICE])
    revoked, _ = desk.issue_token(admin, svc, scopes=[P.PATIENT_READ], ttl=timedelta(days=1),
                                  label="x")
    desk.revoke_token(admin, revoked)
    with pytest.raises(InvalidRecord):
        desk.approve_token(other, revoked)
    orphan, _ = desk.issue_token(admin, svc, scopes=[P.PATIENT_READ], ttl=timedelta(days=1),
                                 label="y")
    desk.disable_account(admin, svc)
    with pytest.raises(InvalidRecord):
        desk.approve_token(other, orphan)
    reasons = [e.detail for e in _events(vault, "access:account:approve")
               + _events(vault, "access:token:approve") if e.outcome == "invalid"]
    assert len(reasons) == 4 and any('"disabled"' in r for r in reasons)


def test_the_local_operator_still_grants_at_once(desk, operator, clock):
    aid, token = desk.create_account(operator, email="bio@lab.example", display_name="B",
                                     roles=[Role.BIOLOGIST])
    assert token.reveal().startswith("lve_")
    _enrols(desk, clock, token)
    assert desk.reset_mfa(operator, aid).reveal().startswith("lve_")
    svc, _ = desk.create_account(operator, email="gw@lab.example", display_name="Gateway",
                                 roles=[Role.SERVICE])
    token_id, token = desk.issue_token(operator, svc, scopes=[P.PATIENT_READ],
                                       ttl=timedelta(days=1), label="feed")
    assert desk.authenticate_token(token, source=SOURCE, purpose="feed",
                                   request_id="").role is Role.SERVICE
    statuses = {a.id: a.status for a in desk.list_accounts(operator)}
    assert statuses == {aid: "pending", svc: "active"}
    [info] = desk.list_tokens(operator)
    assert (info.id, info.status, info.approved_by) == (token_id, "active", None)
