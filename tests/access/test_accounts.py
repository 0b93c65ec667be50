"""Accounts: creation rules, enrolment, two-factor login, throttling seen from outside,
re-enrolment by an administrator, and one error for every cause of refusal."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pyotp
import pytest
from account_support import PASSWORD, SOURCE
from argon2 import PasswordHasher, Type
from sqlalchemy import select

from labvault import AccessDenied, InvalidRecord, Role, Secret
from labvault.access.principal import Principal
from labvault.errors import AuthenticationFailed
from labvault.store.tables import account, audit_event
from labvault.synthetic import SyntheticLab


def _events(vault, action: str) -> list:
    with vault._records.engine.connect() as conn:
        return list(conn.execute(select(audit_event).where(audit_event.c.action == action)
                                 .order_by(audit_event.c.id)))


def _failure(call) -> tuple[type, str, int | None]:
    with pytest.raises(AuthenticationFailed) as info:
        call()
    return type(info.value), str(info.value), info.value.retry_after


# -- creation ------------------------------------------------------------------------------------
def test_the_local_operator_creates_the_first_admin(vault, desk, operator, enrol, sign_in):
    admin = enrol(Role.ADMIN)
    grant = sign_in(admin)
    assert grant.role is Role.ADMIN
    principal = desk.authenticate(grant.token, source=SOURCE, purpose="admin",
                                  request_id="r1")
    assert principal.actor_id == f"account:{admin.id}" and principal.role is Role.ADMIN
    # The admin manages accounts from then on, under the four-eyes rule: the account waits for
    # a second person, and no enrolment token exists yet.
    new_id, token = desk.create_account(principal, email="tech@lab.example",
                                        display_name="Dominique Essai", roles=[Role.TECHNICIAN])
    assert not token
    [created] = _events(vault, "access:account:create")[-1:]
    assert created.actor == principal.actor_id and str(new_id) in created.detail
    assert '"awaiting_approval"' in created.detail
    [info] = [a for a in desk.list_accounts(operator) if a.id == new_id]
    assert info.status == "awaiting_approval" and info.requested_by == principal.actor_id


def test_refused_role_combinations(desk, operator):
    someone = uuid.uuid4()
    for roles, patient_id, field in [
        ([Role.LOCAL_OPERATOR], None, "roles"),
        ([], None, "roles"),
        (["superuser"], None, "roles"),
        ([Role.PATIENT], None, "patient_id"),
        ([Role.BIOLOGIST], someone, "patient_id"),
        ([Role.SERVICE, Role.ADMIN], None, "roles"),
        ([Role.PATIENT, Role.BIOLOGIST], someone, "roles"),
    ]:
        with pytest.raises(InvalidRecord) as info:
            desk.create_account(operator, email="someone@lab.example", display_name="Someone",
                                roles=roles, patient_id=patient_id)
        assert info.value.field == field, roles
    assert desk.list_accounts(operator) == []


def test_a_patient_account_names_an_existing_patient(desk, operator):
    with pytest.raises(InvalidRecord) as info:
        desk.create_account(operator, email="p@mail.example", display_name="P",
                            roles=[Role.PATIENT], patient_id=uuid.uuid4())
    assert (info.value.field, info.value.reason) == ("patient_id", "no such patient")


def test_an_email_is_used_once_whatever_its_case(desk, operator):
    desk.create_account(operator, email="Camille@Lab.example", display_name="C",
                        roles=[Role.SECRETARY])
    with pytest.raises(InvalidRecord) as info:
        desk.create_account(operator, email=" camille@lab.EXAMPLE ", display_name="C",
                            roles=[Role.SECRETARY])
    assert (info.value.field, info.value.reason) == ("email", "already used")
    with pytest.raises(InvalidRecord) as info:
        desk.create_account(operator, email="not an address", display_name="C",
                            roles=[Role.SECRETARY])
    assert info.value.field == "email"


def test_only_account_managers_create_list_disable(desk, operator, enrol, sign_in):
    bio = desk.authenticate(sign_in(enrol(Role.BIOLOGIST)).token, source=SOURCE,
                            purpose="p", request_id="")
    with pytest.raises(AccessDenied):
        desk.create_account(bio, email="x@lab.example", display_name="X", roles=[Role.DPO])
    with pytest.raises(AccessDenied):
        desk.list_accounts(bio)
    with pytest.raises(AccessDenied):
        desk.disable_account(bio, uuid.uuid4())


def test_list_accounts_opens_the_sealed_fields(vault, desk, operator):
    aid, _ = desk.create_account(operator, email="dpo@lab.example", display_name="Alix Garde",
                                 roles=[Role.DPO], rpps="10003456786")
    [info] = [a for a in desk.list_accounts(operator) if a.id == aid]
    assert info.email.reveal() == "dpo@lab.example" and info.display_name.reveal() == "Alix Garde"
    assert info.roles == (Role.DPO,) and info.status == "pending" and info.enrolled_at is None
    assert "dpo@lab" not in repr(info) and "Alix" not in repr(info)
    with vault._records.engine.connect() as conn:
        row = conn.execute(select(account).where(account.c.id == aid)).one()
    assert row.email is not None and b"dpo@lab" not in row.email.blob
    assert row.password_hash is None and row.totp_secret is None


# -- enrolment -----------------------------------------------------------------------------------
def test_enrolment_activates_the_account_once(desk, operator, clock):
    aid, token = desk.create_account(operator, email="bio@lab.example", display_name="B",
                                     roles=[Role.BIOLOGIST])
    with pytest.raises(AuthenticationFailed):  # pending: no login yet
        desk.login("bio@lab.example", Secret(PASSWORD), SOURCE)
    start = desk.begin_enrolment(token, Secret(PASSWORD))
    assert start.otpauth_uri.reveal().startswith("otpauth://totp/labvault:")
    app = pyotp.TOTP(start.secret.reveal())
    with pytest.raises(AuthenticationFailed):
        desk.confirm_enrolment(token, app.at(clock.now() + timedelta(minutes=5)))
    codes = desk.confirm_enrolment(token, app.at(clock.now()))
    assert len(codes) == 10 and len({c.reveal() for c in codes}) == 10
    with pytest.raises(AuthenticationFailed):  # used
        desk.begin_enrolment(token, Secret(PASSWORD))
    with pytest.raises(AuthenticationFailed):
        desk.confirm_enrolment(token, app.at(clock.now()))
    [info] = [a for a in desk.list_accounts(operator) if a.id == aid]
    assert info.status == "active" and info.enrolled_at == clock.now()


def test_enrolment_tokens_expire_after_72_hours(desk, operator, clock):
    _, token = desk.create_account(operator, email="late@lab.example", display_name="L",
                                   roles=[Role.SECRETARY])
    clock.advance(timedelta(hours=72))
    with pytest.raises(AuthenticationFailed):
        desk.begin_enrolment(token, Secret(PASSWORD))
    with pytest.raises(AuthenticationFailed):
        desk.begin_enrolment(Secret("lve_" + "x" * 43), Secret(PASSWORD))


def test_enrolment_enforces_the_password_policy(desk, operator):
    _, token = desk.create_account(operator, email="jean.dupont@lab.example",
                                   display_name="Jean Dupont", roles=[Role.SECRETARY])
    for weak in ("Sh0rt!pw", "password1234", "JeanDupont-2026!", "Dupont secretary desk 42"):
        with pytest.raises(InvalidRecord) as info:
            desk.begin_enrolment(token, Secret(weak))
        assert info.value.field == "password" and weak not in str(info.value)
    desk.begin_enrolment(token, Secret(PASSWORD))


# -- login ---------------------------------------------------------------------------------------
def test_totp_window_and_replay_at_login(desk, enrol, clock):
    user = enrol(Role.TECHNICIAN)
    step = timedelta(seconds=30)
    clock.advance(2 * step)  # the step before now was not the enrolment's

    def attempt(code):
        challenge = desk.login(user.email, Secret(PASSWORD), SOURCE)
        return desk.complete_login(challenge, code=code, source=SOURCE)

    late_clock_code = user.totp.at(clock.now() - step)
    assert attempt(late_clock_code).role is Role.TECHNICIAN  # one step behind: accepted
    with pytest.raises(AuthenticationFailed):  # replayed
        attempt(late_clock_code)
    with pytest.raises(AuthenticationFailed):  # two steps ahead
        attempt(user.totp.at(clock.now() + 2 * step))
    with pytest.raises(AuthenticationFailed):  # two steps behind
        attempt(user.totp.at(clock.now() - 2 * step))
    code = user.totp.at(clock.now() + step)  # one step ahead: accepted
    attempt(code)
    with pytest.raises(AuthenticationFailed):  # the current step is now in the past
        attempt(user.totp.at(clock.now()))


def test_recovery_codes_are_single_use(desk, enrol):
    user = enrol(Role.SECRETARY)
    code = user.recovery[0]
    challenge = desk.login(user.email, Secret(PASSWORD), SOURCE)
    desk.complete_login(challenge, recovery_code=code.reveal().lower(), source=SOURCE)
    challenge = desk.login(user.email, Secret(PASSWORD), SOURCE)
    with pytest.raises(AuthenticationFailed):
        desk.complete_login(challenge, recovery_code=code, source=SOURCE)
    desk.complete_login(challenge, recovery_code=user.recovery[1], source=SOURCE)


def test_a_challenge_is_single_use_and_lasts_5_minutes(desk, enrol, clock):
    user = enrol(Role.SECRETARY)
    challenge = desk.login(user.email, Secret(PASSWORD), SOURCE)
    desk.complete_login(challenge, recovery_code=user.recovery[0], source=SOURCE)
    with pytest.raises(AuthenticationFailed):
        desk.complete_login(challenge, recovery_code=user.recovery[1], source=SOURCE)
    challenge = desk.login(user.email, Secret(PASSWORD), SOURCE)
    clock.advance(timedelta(minutes=5))
    with pytest.raises(AuthenticationFailed):
        desk.complete_login(challenge, recovery_code=user.recovery[1], source=SOURCE)
    with pytest.raises(AuthenticationFailed):  # a challenge is not a session
        desk.authenticate(challenge, source=SOURCE, purpose="p", request_id="")


def test_the_role_is_chosen_among_the_accounts(desk, enrol, clock):
    user = enrol(Role.SECRETARY, Role.TECHNICIAN)
    challenge = desk.login(user.email, Secret(PASSWORD), SOURCE)
    with pytest.raises(AuthenticationFailed):
        desk.complete_login(challenge, code=user.totp.at(clock.now()), role=Role.BIOLOGIST,
                            source=SOURCE)
    grant = desk.complete_login(challenge, code=user.totp.at(clock.now()), role="technician",
                                source=SOURCE)
    assert grant.role is Role.TECHNICIAN
    p = desk.authenticate(grant.token, source=SOURCE, purpose="p", request_id="")
    assert p.role is Role.TECHNICIAN


def test_unknown_account_and_wrong_password_fail_alike(desk, enrol):
    user = enrol(Role.BIOLOGIST)
    known = [_failure(lambda: desk.login(user.email, Secret("wrong password here"), "203.0.113.1"))
             for _ in range(6)]
    unknown = [_failure(lambda: desk.login("nobody@lab.example", Secret("wrong password here"),
                                           "203.0.113.2")) for _ in range(6)]
    assert known == unknown
    assert known[0] == (AuthenticationFailed, "authentication failed", None)
    assert [k[2] for k in known] == [None, None, None, None, 1, 1]  # 6th: still blocked


def test_every_cause_of_refusal_looks_the_same(vault, desk, operator, enrol, clock):
    disabled = enrol(Role.DPO)
    desk.disable_account(operator, disabled.id)
    desk.create_account(operator, email="pending@lab.example", display_name="P",
                        roles=[Role.DPO])
    desk.create_account(operator, email="svc@lab.example", display_name="S",
                        roles=[Role.SERVICE])
    causes = {
        "disabled": lambda: desk.login(disabled.email, Secret(PASSWORD), "203.0.113.3"),
        "pending": lambda: desk.login("pending@lab.example", Secret(PASSWORD), "203.0.113.4"),
        "service": lambda: desk.login("svc@lab.example", Secret(PASSWORD), "203.0.113.5"),
        "unknown": lambda: desk.login("ghost@lab.example", Secret(PASSWORD), "203.0.113.6"),
        "bad challenge": lambda: desk.complete_login("lvc_nope", code="123456",
                                                     source="203.0.113.7"),
        "bad session": lambda: desk.authenticate("lvs_nope", source="x", purpose="p",
                                                 request_id=""),
    }
    outcomes = {name: _failure(call) for name, call in causes.items()}
    assert set(outcomes.values()) == {(AuthenticationFailed, "authentication failed", None)}
    reasons = [r.detail for r in _events(vault, "access:login:failure")]
    assert any('"disabled"' in d for d in reasons) and any('"not enrolled"' in d for d in reasons)


def test_per_address_throttling_spans_accounts(desk, enrol, clock):
    user = enrol(Role.BIOLOGIST)
    attacker = "203.0.113.66"
    for n in range(10):
        with pytest.raises(AuthenticationFailed):
            desk.login(f"guess{n}@lab.example", Secret("Winter2026!!"), attacker)
        clock.advance(timedelta(seconds=20))
    # The address is locked for 30 minutes, even with a real account's right password...
    with pytest.raises(AuthenticationFailed) as info:
        desk.login(user.email, Secret(PASSWORD), attacker)
    assert 1500 < info.value.retry_after <= 1800
    # ... which still logs in from elsewhere.
    desk.login(user.email, Secret(PASSWORD), SOURCE)
    clock.advance(timedelta(minutes=30))
    desk.login(user.email, Secret(PASSWORD), attacker)


def test_an_account_locks_after_10_failures_and_unlocks_after_30_minutes(desk, enrol, clock):
    user = enrol(Role.BIOLOGIST)
    for n in range(10):  # from ten different addresses: the account's own counter
        with pytest.raises(AuthenticationFailed):
            desk.login(user.email, Secret("not the password"), f"203.0.113.{100 + n}")
        clock.advance(timedelta(seconds=20))
    with pytest.raises(AuthenticationFailed) as info:
        desk.login(user.email, Secret(PASSWORD), SOURCE)
    assert info.value.retry_after is not None
    clock.advance(timedelta(minutes=30))
    challenge = desk.login(user.email, Secret(PASSWORD), SOURCE)
    desk.complete_login(challenge, code=user.totp.at(clock.now()), source=SOURCE)
    # A full login resets the account's counter: four more failures cost nothing.
    for _ in range(4):
        assert _failure(lambda: desk.login(user.email, Secret("nope nope nope"), SOURCE))[2] is None


def test_wrong_codes_are_throttled_too(desk, enrol, clock):
    user = enrol(Role.BIOLOGIST)
    challenge = desk.login(user.email, Secret(PASSWORD), SOURCE)
    waits = [_failure(lambda: desk.complete_login(challenge, code="000000", source=SOURCE))[2]
             for _ in range(5)]
    assert waits[-1] == 1
    with pytest.raises(AuthenticationFailed) as info:  # even the right code, while blocked
        desk.complete_login(challenge, code=user.totp.at(clock.now()), source=SOURCE)
    assert info.value.retry_after == 1


def test_an_old_hash_is_upgraded_at_login(vault, desk, enrol):
    user = enrol(Role.SECRETARY)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    vault.accounts._store.update_account(user.id, password_hash=old.hash(PASSWORD))
    desk.login(user.email, Secret(PASSWORD), SOURCE)
    with vault._records.engine.connect() as conn:
        stored = conn.execute(select(account.c.password_hash)
                              .where(account.c.id == user.id)).scalar_one()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    desk.login(user.email, Secret(PASSWORD), SOURCE)


# -- disable and re-enrolment --------------------------------------------------------------------
def test_disabling_revokes_sessions(desk, operator, enrol, sign_in):
    user = enrol(Role.BIOLOGIST)
    grant = sign_in(user)
    desk.disable_account(operator, user.id)
    with pytest.raises(AuthenticationFailed):
        desk.authenticate(grant.token, source=SOURCE, purpose="p", request_id="")


def test_reset_mfa_by_an_admin_is_audited_and_drops_the_old_factor(vault, desk, operator, enrol,
                                                                   sign_in, clock):
    admin_grant = sign_in(enrol(Role.ADMIN))
    admin = desk.authenticate(admin_grant.token, source=SOURCE, purpose="lost phone",
                              request_id="req-7")
    dpo = desk.authenticate(sign_in(enrol(Role.DPO)).token, source=SOURCE, purpose="lost phone",
                            request_id="req-8")
    user = enrol(Role.BIOLOGIST)
    grant = sign_in(user)
    assert not desk.reset_mfa(admin, user.id)  # the new token waits for a second person
    [event] = _events(vault, "access:account:reset-mfa")
    assert (event.actor, event.role, event.outcome) == (admin.actor_id, "admin", "allowed")
    assert (event.purpose, event.request_id) == ("lost phone", "req-7")
    assert str(user.id) in event.detail
    with pytest.raises(AuthenticationFailed):  # sessions revoked
        desk.authenticate(grant.token, source=SOURCE, purpose="p", request_id="")
    with pytest.raises(AuthenticationFailed):  # no login until enrolled again
        desk.login(user.email, Secret(PASSWORD), SOURCE)
    token = desk.approve(dpo, user.id)
    new_password = "another long passphrase for 2026"
    start = desk.begin_enrolment(token, Secret(new_password))
    app = pyotp.TOTP(start.secret.reveal())
    assert start.secret.reveal() != user.totp.secret
    desk.confirm_enrolment(token, app.at(clock.now()))
    clock.advance(timedelta(seconds=30))
    challenge = desk.login(user.email, Secret(new_password), SOURCE)
    with pytest.raises(AuthenticationFailed):  # old recovery codes are gone
        desk.complete_login(challenge, recovery_code=user.recovery[2], source=SOURCE)
    with pytest.raises(AuthenticationFailed):  # the old authenticator too
        desk.complete_login(challenge, code=user.totp.at(clock.now()), source=SOURCE)
    desk.complete_login(challenge, code=app.at(clock.now()), source=SOURCE)


def test_a_service_or_disabled_account_has_no_factor_to_reset(desk, operator):
    sid, token = desk.create_account(operator, email="gw@lab.example", display_name="Gateway",
                                     roles=[Role.SERVICE])
    assert not token  # a service account has no enrolment
    with pytest.raises(InvalidRecord):
        desk.reset_mfa(operator, sid)


def test_patient_account(vault, desk, operator, enrol, sign_in):
    mine, other = SyntheticLab(5).records(2)
    vault.put_patients(operator, [mine, other])
    user = enrol(Role.PATIENT, patient_id=mine.id)
    p: Principal = desk.authenticate(sign_in(user).token, source=SOURCE, purpose="my results",
                                     request_id="")
    assert p.patient_id == mine.id and p.role is Role.PATIENT
    assert vault.get_record(p, mine.id).patient.id == mine.id
    with pytest.raises(AccessDenied):
        vault.get_record(p, other.id)
    with pytest.raises(AccessDenied):
        vault.find_patients(p, nir=mine.patient.nir or "1")
