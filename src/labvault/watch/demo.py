"""The supervision step of ``labvault demo``: a stolen account cut off, a decoy touched.

A biologist's account (enrolled for real: argon2id password, TOTP) is used to read records as
fast as a script would; the watcher locks it when it goes over the role's limit and the next
call fails. Then decoy patients are seeded and a secretary's account finds one by NIR: critical
at once, locked too. The second factor at login is a recovery code: a TOTP code would have to
wait for the next 30-second step after the one enrolment used.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence

import pyotp

from labvault.access.principal import Principal, Role, local_operator
from labvault.errors import AuthenticationFailed
from labvault.secret import Secret
from labvault.vault.core import Vault
from labvault.watch.alerts import Severity

SOURCE = "203.0.113.50"  # the thief's address (a documentation range)


def _session(vault: Vault, role: Role, site: str) -> tuple[uuid.UUID, Secret[str]]:
    """A real enrolled account of `role`, logged in from SOURCE: its id and session token."""
    operator = local_operator("demo accounts")
    email = f"{role.value}.{secrets.token_hex(3)}@demo.lab.example"
    account_id, enrolment = vault.accounts.create_account(
        operator, email=email, display_name=f"Demo {role.value}", roles=[role], site=site)
    password = Secret(secrets.token_urlsafe(18))
    start = vault.accounts.begin_enrolment(enrolment, password)
    codes = vault.accounts.confirm_enrolment(enrolment, pyotp.TOTP(start.secret.reveal()).now())
    challenge = vault.accounts.login(email, password, SOURCE)
    grant = vault.accounts.complete_login(challenge, recovery_code=codes[0], source=SOURCE)
    return account_id, grant.token


def _principal(vault: Vault, token: Secret[str]) -> Principal:
    return vault.accounts.authenticate(token, source=SOURCE, purpose="care",
                                       request_id=uuid.uuid4().hex)


def run(vault: Vault, patient_ids: Sequence[uuid.UUID], site: str,
        say: Callable[[str], None]) -> list[str]:
    """Both scenarios under the in-process watcher; the alerts raised, as lines."""
    operator = local_operator("demo supervision")
    vault.watch.start(background=False)
    try:
        _, token = _session(vault, Role.BIOLOGIST, site)
        read = 0
        try:
            for pid in patient_ids:
                vault.get_record(_principal(vault, token), pid)
                read += 1
        except AuthenticationFailed:
            say(f"stolen biologist session: {read} records read, then refused (account locked)")
        contacts = vault.watch.seed_decoys(operator, 3)
        say(f"{len(contacts)} decoy patients seeded (in every index; contacts at a monitored "
            "domain)")
        decoy = next(p for p in vault.iter_records(operator)
                     if p.patient.email and p.patient.email in contacts)
        _, token = _session(vault, Role.SECRETARY, site)
        vault.find_patients(_principal(vault, token), nir=decoy.patient.nir)
        try:
            _principal(vault, token)
        except AuthenticationFailed:
            say("a secretary's account found a decoy by NIR: locked at once")
        alerts = list(reversed(vault.watch.alerts(operator)))
        review = sum(a.severity is Severity.LOW for a in alerts)
        say(f"{review} reads no care relationship explains went to the DPO's review queue")
        return [f"{a.severity:<8} {a.rule:<18} {a.response:<7} {a.explanation}"
                for a in alerts if a.severity is not Severity.LOW]
    finally:
        vault.watch.stop()


__all__ = ["run"]
