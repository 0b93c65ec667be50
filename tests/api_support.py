"""Helpers of the API tests: enrolling real accounts (argon2id password, TOTP at the fixed
clock) and the personal values that must never appear in a refused answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pyotp

from labvault.access.principal import Role
from labvault.clock import FixedClock
from labvault.secret import Secret
from labvault.vault import Vault

PASSWORD = "correct horse battery staple 42"


@dataclass
class Login:
    account_id: uuid.UUID
    email: str
    totp: pyotp.TOTP
    token: str
    role: Role

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def enrol(vault: Vault, operator, clock: FixedClock, role: Role, *,
          patient_id: uuid.UUID | None = None) -> tuple[uuid.UUID, str, pyotp.TOTP]:
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@lab.example"
    account_id, token = vault.accounts.create_account(
        operator, email=email, display_name=f"Test {role.value}", roles=[role],
        patient_id=patient_id)
    start = vault.accounts.begin_enrolment(token, Secret(PASSWORD))
    totp = pyotp.TOTP(start.secret.reveal())
    vault.accounts.confirm_enrolment(token, totp.at(clock.now()))
    clock.advance(timedelta(seconds=31))  # the next code is a new one (replays are refused)
    return account_id, email, totp


def personal_values(records) -> list[str]:
    """Strings that must never appear in a response meant to carry none."""
    out = []
    for r in records:
        p = r.patient
        out += [p.last_name, p.first_names]
        if p.nir:
            out.append(p.nir)
    return [v for v in out if v and len(v) >= 4]
