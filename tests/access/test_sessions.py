"""Sessions: idle and absolute expiry, logout, step-up for bulk reads, what each role reaches,
and nothing personal in the audit trail, reprs or errors of the account service."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from account_support import PASSWORD, SOURCE
from sqlalchemy import select

from labvault import AccessDenied, Role, Secret
from labvault.errors import AuthenticationFailed, StepUpRequired
from labvault.store.tables import account, audit_event, auth_session, recovery_code
from labvault.synthetic import SyntheticLab
from labvault.vault.accounts import IDLE_TIMEOUT, SESSION_LIFETIME


def _principal(desk, grant, purpose="care"):
    return desk.authenticate(grant.token, source=SOURCE, purpose=purpose, request_id="req")


def test_a_session_expires_after_15_idle_minutes(desk, enrol, sign_in, clock):
    grant = sign_in(enrol(Role.SECRETARY))
    assert grant.token.reveal().startswith("lvs_")
    assert grant.idle_expires_at - clock.now() < IDLE_TIMEOUT  # the clock moved after login
    clock.advance(timedelta(minutes=14, seconds=29))
    _principal(desk, grant)  # used: the idle timer starts again
    clock.advance(timedelta(minutes=14, seconds=59))
    _principal(desk, grant)
    clock.advance(timedelta(minutes=15))
    with pytest.raises(AuthenticationFailed):
        _principal(desk, grant)


def test_a_session_ends_after_8_hours_however_active(desk, enrol, sign_in, clock):
    grant = sign_in(enrol(Role.TECHNICIAN))
    assert grant.expires_at - grant.idle_expires_at == SESSION_LIFETIME - IDLE_TIMEOUT
    while clock.now() + timedelta(minutes=10) < grant.expires_at:
        clock.advance(timedelta(minutes=10))
        _principal(desk, grant)
    clock.set(grant.expires_at)
    with pytest.raises(AuthenticationFailed):
        _principal(desk, grant)


def test_logout_ends_the_session(vault, desk, enrol, sign_in):
    grant = sign_in(enrol(Role.BIOLOGIST))
    _principal(desk, grant)
    desk.logout(grant.token)
    with pytest.raises(AuthenticationFailed):
        _principal(desk, grant)
    desk.logout(grant.token)  # harmless twice
    desk.logout(Secret("lvs_unknown"))
    with vault._records.engine.connect() as conn:
        actions = [a for (a,) in conn.execute(select(audit_event.c.action))]
    assert actions.count("access:session:logout") == 3
    assert "access:session:failure" in actions


def test_the_principal_of_a_session(desk, enrol, sign_in, clock):
    user = enrol(Role.BIOLOGIST)
    grant = sign_in(user)
    p = desk.authenticate(grant.token, source="10.0.0.9", purpose="validation",
                          request_id="abc")
    assert (p.actor_id, p.role, p.source, p.purpose, p.request_id) == (
        f"account:{user.id}", Role.BIOLOGIST, "10.0.0.9", "validation", "abc")
    assert p.scopes is None and p.patient_id is None
    assert p.mfa_at == clock.now() - timedelta(seconds=30)  # when the second factor was given


def test_step_up_for_a_bulk_export(vault, desk, operator, enrol, sign_in, clock):
    vault.put_patients(operator, SyntheticLab(8).records(3))
    user = enrol(Role.BIOLOGIST)
    grant = sign_in(user)
    clock.advance(timedelta(minutes=5))  # the login's proof is now too old for an export
    with pytest.raises(StepUpRequired):
        next(vault.iter_records(_principal(desk, grant, "export")))
    with pytest.raises(AuthenticationFailed):
        desk.step_up(grant.token, "000000")
    desk.step_up(grant.token, user.totp.at(clock.now()))
    assert len(list(vault.iter_records(_principal(desk, grant, "export")))) == 3
    with pytest.raises(AuthenticationFailed):  # the same code twice
        desk.step_up(grant.token, user.totp.at(clock.now()))
    clock.advance(timedelta(minutes=5, seconds=1))
    with pytest.raises(StepUpRequired):
        next(vault.iter_records(_principal(desk, grant, "export")))
    with vault._records.engine.connect() as conn:
        outcomes = [o for (o,) in conn.execute(select(audit_event.c.outcome).where(
            audit_event.c.action == "vault:patient:export"))]
    assert outcomes.count("step_up_required") == 2


def test_an_admin_reads_no_patient_data(vault, desk, operator, enrol, sign_in):
    [record] = SyntheticLab(9).records(1)
    vault.put_patients(operator, [record])
    admin = _principal(desk, sign_in(enrol(Role.ADMIN)), "administration")
    with pytest.raises(AccessDenied):
        vault.get_patient(admin, record.id)
    with pytest.raises(AccessDenied):
        vault.get_record(admin, record.id)
    with pytest.raises(AccessDenied):
        vault.find_patients(admin, nir=record.patient.nir or "1 85 05 78 006 084 91")
    with pytest.raises(AccessDenied):
        next(vault.iter_records(admin))


def test_nothing_personal_leaves_the_account_service(vault, desk, operator, enrol, sign_in,
                                                     clock):
    email, name = "hippolyte.quatrebarbes@lab.example", "Hippolyte Quatrebarbes"
    _, enrolment = desk.create_account(operator, email=email, display_name=name,
                                         roles=[Role.BIOLOGIST], rpps="10003456786")
    start = desk.begin_enrolment(enrolment, Secret(PASSWORD))
    app = pyotp.TOTP(start.secret.reveal())
    first = app.at(clock.now())
    recovery = desk.confirm_enrolment(enrolment, first)
    clock.advance(timedelta(seconds=30))
    errors = []
    for attempt in (lambda: desk.login(email, Secret("wrong " + PASSWORD), SOURCE),
                    lambda: desk.login("Hippolyte@elsewhere.example", Secret(PASSWORD), SOURCE),
                    lambda: desk.complete_login(desk.login(email, Secret(PASSWORD), SOURCE),
                                                code=first, source=SOURCE)):
        with pytest.raises(AuthenticationFailed) as info:
            attempt()
        errors.append(f"{info.value!s} {info.value!r}")
    challenge = desk.login(email, Secret(PASSWORD), SOURCE)
    grant = desk.complete_login(challenge, recovery_code=recovery[0], source=SOURCE)
    desk.logout(grant.token)
    # (The 6-digit code is looked for in the errors only: it could occur by chance in an id.)
    assert not any(first in e for e in errors)
    secrets = [email, email.split("@")[0], "Hippolyte", "Quatrebarbes", "10003456786", PASSWORD,
               start.secret.reveal(), enrolment.reveal(), challenge.reveal(),
               grant.token.reveal(), *(c.reveal() for c in recovery)]
    shown = " ".join([*errors, repr(desk), repr(grant), repr(start),
                      *(repr(a) for a in desk.list_accounts(operator)), repr(recovery)])
    with vault._records.engine.connect() as conn:
        rows = [repr(tuple(r)) for table in (audit_event, account, auth_session, recovery_code)
                for r in conn.execute(select(table))]
    stored = " ".join(rows)
    assert len(rows) > 10
    leaked = [s for s in secrets if s.lower() in shown.lower() or s.lower() in stored.lower()]
    assert not leaked, f"{len(leaked)} personal or secret values leaked"
