"""Accounts and service tokens (administrators). No patient data is reachable from here."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from labvault.access.permissions import Permission
from labvault.api.deps import CurrentPrincipal, vault_of
from labvault.api.models import (
    AccountCreatedOut,
    AccountIn,
    AccountOut,
    EnrolmentTokenOut,
    TokenCreatedOut,
    TokenIn,
    to_json,
)
from labvault.errors import InvalidRecord

router = APIRouter(tags=["accounts"])


@router.post("/accounts", response_model=AccountCreatedOut, status_code=201)
def create_account(body: AccountIn, request: Request,
                   principal: CurrentPrincipal) -> AccountCreatedOut:
    """A named person's account; the enrolment token (shown once) lets them set a password
    and an authenticator."""
    account_id, token = vault_of(request).accounts.create_account(
        principal, email=body.email, display_name=body.display_name, roles=list(body.roles),
        rpps=body.rpps, patient_id=body.patient_id)
    return AccountCreatedOut(id=account_id, enrolment_token=token.reveal())


@router.get("/accounts", response_model=list[AccountOut])
def list_accounts(request: Request, principal: CurrentPrincipal) -> list[AccountOut]:
    return [AccountOut(id=a.id, email=a.email.reveal(), display_name=a.display_name.reveal(),
                       roles=[str(r) for r in a.roles], status=a.status,
                       enrolled_at=a.enrolled_at, created_at=a.created_at)
            for a in vault_of(request).accounts.list_accounts(principal)]


@router.post("/accounts/{account_id}/disable", status_code=204)
def disable_account(account_id: uuid.UUID, request: Request,
                    principal: CurrentPrincipal) -> Response:
    """Disables the account and revokes its sessions and tokens."""
    vault_of(request).accounts.disable_account(principal, account_id)
    return Response(status_code=204)


@router.post("/accounts/{account_id}/reset-mfa", response_model=EnrolmentTokenOut)
def reset_mfa(account_id: uuid.UUID, request: Request,
              principal: CurrentPrincipal) -> EnrolmentTokenOut:
    """Re-enrolment: the old authenticator and recovery codes stop working."""
    token = vault_of(request).accounts.reset_mfa(principal, account_id)
    return EnrolmentTokenOut(enrolment_token=token.reveal())


@router.post("/accounts/{account_id}/tokens", response_model=TokenCreatedOut, status_code=201)
def issue_token(account_id: uuid.UUID, body: TokenIn, request: Request,
                principal: CurrentPrincipal) -> TokenCreatedOut:
    """A service account's API token with explicit scopes; shown once."""
    try:
        scopes = [Permission(s) for s in body.scopes]
    except ValueError:
        raise InvalidRecord("scopes", "unknown permission") from None
    token_id, token = vault_of(request).accounts.issue_token(
        principal, account_id, scopes=scopes, ttl=timedelta(days=body.days), label=body.label)
    return TokenCreatedOut(id=token_id, token=token.reveal())


@router.get("/tokens")
def list_tokens(request: Request, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    return [to_json(t) for t in vault_of(request).accounts.list_tokens(principal)]


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: uuid.UUID, request: Request, principal: CurrentPrincipal) -> Response:
    vault_of(request).accounts.revoke_token(principal, token_id)
    return Response(status_code=204)
