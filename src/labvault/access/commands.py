"""``labvault accounts …``: named accounts, their enrolment and the service tokens.

Run on the lab's machine, these commands act as the local operator (who holds the key file);
that is how the first administrator is created, and what the operator creates is in force at
once. What administrators ask for through the API (accounts, re-enrolments, service tokens)
waits for a second person: `accounts approve` and `accounts token approve` bring it into force
and print its secret. Secrets (enrolment tokens, API tokens, recovery codes) are printed once
and never stored in clear.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from labvault.access.permissions import SERVICE_GRANTABLE, Permission
from labvault.access.principal import Role, local_operator
from labvault.cli_support import DataDir, call_desk, console, err, fail, open_vault, uuid_argument
from labvault.config import DEFAULT_DATA_DIR
from labvault.errors import LabvaultError
from labvault.secret import Secret

accounts_app = typer.Typer(help="Named accounts, their second factor, service tokens.",
                           no_args_is_help=True)
token_app = typer.Typer(help="API tokens of service accounts.", no_args_is_help=True)
accounts_app.add_typer(token_app, name="token")

ACCOUNT_ROLES = [r.value for r in Role if r is not Role.LOCAL_OPERATOR]
GRANTABLE = sorted(p.value for p in SERVICE_GRANTABLE)


def _desk(data_dir: Path, purpose: str, method: str, *args: Any, **kwargs: Any) -> Any:
    return call_desk(data_dir, "accounts", purpose, method, *args, **kwargs)


def _when(at) -> str:
    return f"{at:%Y-%m-%d %H:%M}" if at else "-"


@accounts_app.command("add")
def add(
    email: Annotated[str, typer.Option(help="The person's own professional e-mail.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    role: Annotated[list[str], typer.Option("--role", help=f"One of {', '.join(ACCOUNT_ROLES)}; "
                                            "repeat for several.")],
    rpps: Annotated[str | None, typer.Option(help="RPPS number (health professionals).")] = None,
    patient_id: Annotated[str | None, typer.Option(help="For a patient account: the patient's "
                                                   "id.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Create an account; print its one-time enrolment token (valid 72 h)."""
    try:
        roles = [Role(r) for r in role]
    except ValueError:
        err.print(f"error: --role must be one of {', '.join(ACCOUNT_ROLES)}")
        raise typer.Exit(2) from None
    pid = uuid_argument(patient_id, "patient id", "labvault accounts list") if patient_id else None
    account_id, token = _desk(data_dir, "account administration", "create_account",
                              email=email, display_name=name, roles=roles, rpps=rpps, patient_id=pid)
    console.print(f"account {account_id} created ({', '.join(roles)})")
    if token:
        console.print("enrolment token, shown once and valid 72 h — hand it over in person or "
                      "by a channel other than the e-mail; enrol with `labvault accounts enrol`:")
        console.print(token.reveal(), highlight=False, soft_wrap=True)
    else:
        console.print("service account: it logs in with API tokens only "
                      "(`labvault accounts token issue`)")


@accounts_app.command("list")
def list_accounts(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Every account: id, e-mail, name, roles, status (awaiting_approval: see `approve`)."""
    accounts = _desk(data_dir, "account administration", "list_accounts")
    t = Table(title=f"{len(accounts)} accounts")
    for col in ("id", "e-mail", "name", "roles", "status", "enrolled", "created"):
        t.add_column(col)
    for a in accounts:
        t.add_row(str(a.id), a.email.reveal(), a.display_name.reveal(), ", ".join(a.roles),
                  a.status, _when(a.enrolled_at), _when(a.created_at))
    console.print(t)


@accounts_app.command("disable")
def disable(account_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Disable an account; its sessions and tokens stop working at once."""
    aid = uuid_argument(account_id, "account id", "labvault accounts list")
    _desk(data_dir, "account administration", "disable_account", aid)
    console.print(f"account {aid} disabled; its sessions and tokens are revoked")


@accounts_app.command("reset-mfa")
def reset_mfa(account_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Re-enrolment (lost phone): password and second factor dropped; a new enrolment token."""
    aid = uuid_argument(account_id, "account id", "labvault accounts list")
    token = _desk(data_dir, "account re-enrolment", "reset_mfa", aid)
    console.print(f"account {aid} must enrol again; new enrolment token (shown once, 72 h):")
    console.print(token.reveal(), highlight=False, soft_wrap=True)


@accounts_app.command("approve")
def approve(account_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Approve an account or a re-enrolment awaiting approval; print its enrolment token."""
    aid = uuid_argument(account_id, "account id", "labvault accounts list")
    token = _desk(data_dir, "account approval", "approve", aid)
    if token:
        console.print(f"account {aid} approved; enrolment token, shown once and valid 72 h — "
                      "hand it over in person or by a channel other than the e-mail:")
        console.print(token.reveal(), highlight=False, soft_wrap=True)
    else:
        console.print(f"service account {aid} approved and active; its API tokens are approved "
                      "one by one (`labvault accounts token approve`)")


@accounts_app.command("enrol")
def enrol(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Enrol with an enrolment token: choose a password, register the authenticator app."""
    token = Secret(typer.prompt("Enrolment token", hide_input=True))
    password = Secret(typer.prompt("New password (12 characters or more; a passphrase is best)",
                                   hide_input=True, confirmation_prompt=True))
    try:
        with open_vault(data_dir) as vault:
            start = vault.accounts.begin_enrolment(token, password, source="cli")
            console.print("add this account to your authenticator app (the URI is what a QR "
                          "code encodes):")
            console.print(start.otpauth_uri.reveal(), highlight=False, soft_wrap=True)
            console.print(f"or type the secret: {start.secret.reveal()}", highlight=False)
            code = Secret(typer.prompt("Code shown by the app"))
            codes = vault.accounts.confirm_enrolment(token, code, source="cli")
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print("enrolled. Recovery codes, each usable once if the phone is lost — keep them "
                  "offline, they are shown only now:")
    for c in codes:
        console.print(f"  {c.reveal()}", highlight=False)


@token_app.command("issue")
def token_issue(
    account_id: str,
    scope: Annotated[list[str], typer.Option("--scope", help=f"One of {', '.join(GRANTABLE)}; "
                                             "repeat for several.")],
    days: Annotated[int, typer.Option(min=1, max=365, help="Lifetime in days.")] = 90,
    label: Annotated[str, typer.Option(help="What the token is for (no personal data).")]
    = "service",
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Issue an API token to a service account; print it once."""
    aid = uuid_argument(account_id, "account id", "labvault accounts list")
    try:
        scopes = [Permission(s) for s in scope]
    except ValueError:
        err.print(f"error: --scope must be one of {', '.join(GRANTABLE)}")
        raise typer.Exit(2) from None
    token_id, token = _desk(data_dir, "service token administration", "issue_token",
                            aid, scopes=scopes, ttl=timedelta(days=days), label=label)
    console.print(f"token {token_id} issued for {days} days; the token, shown once:")
    console.print(token.reveal(), highlight=False, soft_wrap=True)


@token_app.command("approve")
def token_approve(token_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Approve an API token awaiting approval; print it once."""
    tid = uuid_argument(token_id, "token id", "labvault accounts list")
    token = _desk(data_dir, "service token approval", "approve_token", tid)
    console.print(f"token {tid} approved and active; the token, shown once:")
    console.print(token.reveal(), highlight=False, soft_wrap=True)


@token_app.command("revoke")
def token_revoke(token_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Revoke an API token."""
    tid = uuid_argument(token_id, "token id", "labvault accounts list")
    _desk(data_dir, "service token administration", "revoke_token", tid)
    console.print(f"token {tid} revoked")


@token_app.command("list")
def token_list(
    account: Annotated[str | None, typer.Option("--account", help="Only this account's.")]
    = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """API tokens (never their secrets): scopes, status, expiry, last use."""
    aid = uuid_argument(account, "account id", "labvault accounts list") if account else None
    tokens = _desk(data_dir, "service token administration", "list_tokens", aid)
    t = Table(title=f"{len(tokens)} tokens")
    for col in ("id", "account", "label", "scopes", "status", "expires", "revoked",
                "last used"):
        t.add_column(col)
    for k in tokens:
        t.add_row(str(k.id), str(k.account_id), k.label, " ".join(k.scopes), k.status,
                  _when(k.expires_at), _when(k.revoked_at), _when(k.last_used_at))
    console.print(t)


@accounts_app.command("unlock")
def unlock(account_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Unlock an account the watcher locked. Through the API an admin and the DPO must both
    ask; the local operator, who holds the key file, unlocks alone. The account's open
    critical alerts are acknowledged as ``unlocked`` and its next call needs a fresh second
    factor."""
    aid = uuid_argument(account_id, "account id", "labvault accounts list")
    try:
        with open_vault(data_dir) as vault:
            vault.watch.unlock(local_operator("account unlock"), aid)
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"account {aid} unlocked; it signs in again, and its next call needs a fresh "
                  "second factor")
