"""Helpers of the account tests: accounts created and enrolled through the account service,
with TOTP codes computed by pyotp at the fixed clock's time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pyotp

from labvault import FixedClock, Principal, Role, Secret, Vault
from labvault.vault.accounts import SessionGrant

PASSWORD = "correct horse battery staple 42"
SOURCE = "192.0.2.10"


@dataclass
class Enrolled:
    id: uuid.UUID
    email: str
    totp: pyotp.TOTP = field(repr=False)
    recovery: list[Secret[str]] = field(repr=False)


def enrol(vault: Vault, operator: Principal, clock: FixedClock, *roles: Role,
          patient_id: uuid.UUID | None = None, email: str | None = None) -> Enrolled:
    """Create and enrol an account; the clock then moves past the step of the code used."""
    address = email or f"staff-{uuid.uuid4().hex[:8]}@lab.example"
    account_id, token = vault.accounts.create_account(
        operator, email=address, display_name="Camille Exemple",
        roles=list(roles) or [Role.BIOLOGIST], patient_id=patient_id)
    start = vault.accounts.begin_enrolment(token, Secret(PASSWORD))
    totp = pyotp.TOTP(start.secret.reveal())
    codes = vault.accounts.confirm_enrolment(token, totp.at(clock.now()))
    clock.advance(timedelta(seconds=30))
    return Enrolled(account_id, address, totp, codes)


def sign_in(vault: Vault, clock: FixedClock, account: Enrolled, role: Role | None = None,
            source: str = SOURCE) -> SessionGrant:
    """Password then TOTP; the clock then moves to the next step (replays are refused)."""
    challenge = vault.accounts.login(account.email, Secret(PASSWORD), source)
    grant = vault.accounts.complete_login(challenge, code=account.totp.at(clock.now()),
                                          role=role, source=source)
    clock.advance(timedelta(seconds=30))
    return grant
