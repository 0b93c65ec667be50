"""Fixtures of the account tests: the account desk, enrolment and sign-in at the fixed clock."""

from __future__ import annotations

from functools import partial

import account_support
import pytest


@pytest.fixture
def desk(vault):
    return vault.accounts


@pytest.fixture
def enrol(vault, operator, clock):
    return partial(account_support.enrol, vault, operator, clock)


@pytest.fixture
def sign_in(vault, clock):
    return partial(account_support.sign_in, vault, clock)
