"""Fixtures of the breach tests: the DPO, and six patients with known contacts (a module that
needs other patients defines its own `lab`)."""

from __future__ import annotations

import uuid

import pytest
from sms_gateway import people

from labvault.access.principal import Principal, Role


@pytest.fixture
def dpo() -> Principal:
    return Principal(f"account:{uuid.uuid4()}", Role.DPO, "10.1.0.2", "incident response")


@pytest.fixture
def lab(vault, operator):
    """`sms_gateway.people()`, stored: e-mail and mobile, e-mail only, a landline only, a
    mobile only, e-mail and mobile, e-mail only."""
    recs = people()
    vault.put_patients(operator, recs)
    return recs
