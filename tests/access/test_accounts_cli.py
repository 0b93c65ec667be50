"""``labvault accounts …`` as the lab's operator runs it: first admin, enrolment with hidden
prompts, listing, re-enrolment, service tokens."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from account_support import PASSWORD
from sqlalchemy import select
from typer.testing import CliRunner

from labvault import Permission, Principal, Role, Settings, Vault
from labvault.access import totp
from labvault.cli import app
from labvault.secret import Secret
from labvault.store.tables import audit_event

ENROLMENT = re.compile(r"lve_[A-Za-z0-9_\-]{43}")
API_TOKEN = re.compile(r"lvt_[A-Za-z0-9_\-]{43}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RECOVERY = re.compile(r"^\s+[A-Z2-7]{5}-[A-Z2-7]{5}$", re.M)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "vault"
    Vault.init(Settings.embedded(d)).close()
    return d


@pytest.fixture
def lv(data_dir: Path):
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None):
        return runner.invoke(app, ["accounts", *args, "-d", str(data_dir)], input=stdin,
                             env={"COLUMNS": "250", "NO_COLOR": "1", "LABVAULT_HOME": ""})

    return run


def test_first_admin_enrols_from_the_command_line(lv, data_dir, monkeypatch):
    r = lv("add", "--email", "admin@lab.example", "--name", "Admin Une", "--role", "admin")
    assert r.exit_code == 0, r.output
    [account_id] = UUID.findall(r.output)
    [token] = ENROLMENT.findall(r.output)

    secret = totp.new_secret()
    monkeypatch.setattr(totp, "new_secret", lambda: Secret(secret.reveal()))
    code = pyotp.TOTP(secret.reveal()).now()  # the command runs on the system clock
    r = lv("enrol", stdin=f"{token}\n{PASSWORD}\n{PASSWORD}\n{code}\n")
    assert r.exit_code == 0, r.output
    assert "otpauth://totp/labvault:admin%40lab.example?secret=" in r.output
    assert len(RECOVERY.findall(r.output)) == 10
    assert PASSWORD not in r.output  # hidden prompts do not echo

    r = lv("list")
    assert r.exit_code == 0 and account_id in r.output and "active" in r.output

    r = lv("enrol", stdin=f"{token}\n{PASSWORD}\n{PASSWORD}\n")
    assert r.exit_code == 1 and "authentication failed" in r.output

    r = lv("reset-mfa", account_id)
    assert r.exit_code == 0 and ENROLMENT.search(r.output)
    r = lv("disable", account_id)
    assert r.exit_code == 0 and "disabled" in r.output

    vault = Vault.open(Settings.load(data_dir))
    try:
        with vault._records.engine.connect() as conn:
            events = [(a, actor.split(":")[0]) for a, actor in conn.execute(
                select(audit_event.c.action, audit_event.c.actor))]
    finally:
        vault.close()
    for action in ("access:account:create", "access:enrolment:complete",
                   "access:account:reset-mfa", "access:account:disable"):
        assert any(a == action for a, _ in events), action
    assert ("access:account:create", "local-operator") in events


def test_service_tokens_from_the_command_line(lv):
    r = lv("add", "--email", "gw@lab.example", "--name", "Gateway", "--role", "service")
    assert r.exit_code == 0 and "API tokens only" in r.output
    assert not ENROLMENT.search(r.output)
    [account_id] = UUID.findall(r.output)

    r = lv("token", "issue", account_id, "--scope", "vault:patient:read", "--scope",
           "vault:result:read", "--days", "30", "--label", "results feed")
    assert r.exit_code == 0, r.output
    [token] = API_TOKEN.findall(r.output)
    [token_id] = UUID.findall(r.output)

    r = lv("token", "list")
    assert r.exit_code == 0 and token_id in r.output and token not in r.output
    assert "vault:patient:read vault:result:read" in r.output
    r = lv("token", "revoke", token_id)
    assert r.exit_code == 0
    r = lv("token", "list", "--account", account_id)
    assert token_id in r.output
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", r.output)) == 2  # expires, revoked

    r = lv("token", "issue", account_id, "--scope", "vault:patient:export")
    assert r.exit_code == 1 and "cannot be granted" in r.output
    r = lv("token", "issue", account_id, "--scope", "everything")
    assert r.exit_code == 2


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--role", "local_operator"], 1, "local_operator"),
    (["--role", "superuser"], 2, "--role must be one of"),
    (["--role", "patient"], 1, "patient_id"),
    (["--role", "biologist", "--rpps", "12345"], 1, "rpps"),
])
def test_refused_accounts(lv, args, code, message):
    r = lv("add", "--email", "x@lab.example", "--name", "X", *args)
    assert r.exit_code == code and message in r.output


def test_ids_must_be_uuids(lv):
    assert lv("disable", "not-an-id").exit_code == 2
    r = lv("disable", "00000000-0000-4000-8000-000000000000")
    assert r.exit_code == 1 and "no account" in r.output


def test_the_operator_approves_what_an_admin_asked_for(lv, data_dir):
    vault = Vault.open(Settings.load(data_dir))
    admin = Principal("account:00000000-0000-4000-8000-00000000000a", Role.ADMIN, "api", "p")
    try:
        bio, token = vault.accounts.create_account(admin, email="bio@lab.example",
                                                   display_name="Bio", roles=[Role.BIOLOGIST])
        svc, _ = vault.accounts.create_account(admin, email="gw@lab.example",
                                               display_name="Gateway", roles=[Role.SERVICE])
    finally:
        vault.close()
    assert not token
    r = lv("list")
    assert r.exit_code == 0 and r.output.count("awaiting_approval") == 2

    r = lv("approve", str(bio))
    assert r.exit_code == 0, r.output
    assert ENROLMENT.search(r.output)
    r = lv("approve", str(bio))
    assert r.exit_code == 1 and "nothing awaits approval" in r.output
    r = lv("approve", str(svc))
    assert r.exit_code == 0 and "active" in r.output and not ENROLMENT.search(r.output)

    vault = Vault.open(Settings.load(data_dir))
    try:
        token_id, token = vault.accounts.issue_token(admin, svc, scopes=[Permission.PATIENT_READ],
                                                     ttl=timedelta(days=5), label="feed")
    finally:
        vault.close()
    assert not token
    r = lv("token", "list")
    assert r.exit_code == 0 and "awaiting_approval" in r.output
    r = lv("token", "approve", str(token_id))
    assert r.exit_code == 0, r.output
    assert API_TOKEN.search(r.output)
    r = lv("token", "list")
    assert "awaiting_approval" not in r.output and "active" in r.output
