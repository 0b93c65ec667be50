"""Accounts and service tokens (administrators). No patient data is reachable from here.

Four eyes: what a signed-in person asks for (an account, a re-enrolment, a service token) is
answered ``awaiting_approval`` without any secret; a second, different person approves it
(``POST /accounts/{id}/approve``, ``POST /tokens/{id}/approve``) and receives the secret, once,
to hand over.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from labvault.access.account_rules import AWAITING_APPROVAL
from labvault.access.permissions import Permission
from labvault.api.deps import CurrentPrincipal, vault_of
from labvault.api.models import (
    AccountIn,
    AccountOut,
    AwaitingApprovalOut,
    EnrolmentTokenOut,
    TokenCreatedOut,
    TokenIn,
    to_json,
)
from labvault.errors import InvalidRecord

router = APIRouter(tags=["accounts"])


def _awaiting(item_id: uuid.UUID) -> AwaitingApprovalOut:
    return AwaitingApprovalOut(id=item_id, status=AWAITING_APPROVAL)


@router.post("/accounts", response_model=AwaitingApprovalOut, status_code=201)
def create_account(body: AccountIn, request: Request,
                   principal: CurrentPrincipal) -> AwaitingApprovalOut:
    """A named person's account, awaiting a second person's approval; the approver receives
    the enrolment token that lets the person set a password and an authenticator."""
    account_id, _ = vault_of(request).accounts.create_account(
        principal, email=body.email, display_name=body.display_name, roles=list(body.roles),
        rpps=body.rpps, patient_id=body.patient_id, site=body.site)
    return _awaiting(account_id)


@router.get("/accounts", response_model=list[AccountOut])
def list_accounts(request: Request, principal: CurrentPrincipal) -> list[AccountOut]:
    return [AccountOut(id=a.id, email=a.email.reveal(), display_name=a.display_name.reveal(),
                       roles=[str(r) for r in a.roles], status=a.status,
                       enrolled_at=a.enrolled_at, created_at=a.created_at,
                       requested_by=a.requested_by, approved_by=a.approved_by)
            for a in vault_of(request).accounts.list_accounts(principal)]


@router.post("/accounts/{account_id}/disable", status_code=204)
def disable_account(account_id: uuid.UUID, request: Request,
                    principal: CurrentPrincipal) -> Response:
    """Disables the account and revokes its sessions and tokens."""
    vault_of(request).accounts.disable_account(principal, account_id)
    return Response(status_code=204)


@router.post("/accounts/{account_id}/reset-mfa", response_model=AwaitingApprovalOut)
def reset_mfa(account_id: uuid.UUID, request: Request,
              principal: CurrentPrincipal) -> AwaitingApprovalOut:
    """Re-enrolment: the old authenticator and recovery codes stop working at once; the new
    enrolment token goes to the second person who approves it."""
    vault_of(request).accounts.reset_mfa(principal, account_id)
    return _awaiting(account_id)


@router.post("/accounts/{account_id}/approve", response_model=EnrolmentTokenOut)
def approve_account(account_id: uuid.UUID, request: Request,
                    principal: CurrentPrincipal) -> EnrolmentTokenOut:
    """Approves an account or a re-enrolment another person asked for; the one-time enrolment
    token (72 h) is shown once, to hand over. The requester cannot approve (403)."""
    token = vault_of(request).accounts.approve(principal, account_id)
    return EnrolmentTokenOut(enrolment_token=token.reveal() or None)


@router.post("/accounts/{account_id}/tokens", response_model=AwaitingApprovalOut,
             status_code=201)
def issue_token(account_id: uuid.UUID, body: TokenIn, request: Request,
                principal: CurrentPrincipal) -> AwaitingApprovalOut:
    """A service account's API token with explicit scopes, inactive until a second person
    approves it."""
    try:
        scopes = [Permission(s) for s in body.scopes]
    except ValueError:
        raise InvalidRecord("scopes", "unknown permission") from None
    token_id, _ = vault_of(request).accounts.issue_token(
        principal, account_id, scopes=scopes, ttl=timedelta(days=body.days), label=body.label)
    return _awaiting(token_id)


@router.post("/tokens/{token_id}/approve", response_model=TokenCreatedOut)
def approve_token(token_id: uuid.UUID, request: Request,
                  principal: CurrentPrincipal) -> TokenCreatedOut:
    """Activates a token another person issued; its secret is shown once, to hand over. The
    requester cannot approve (403)."""
    token = vault_of(request).accounts.approve_token(principal, token_id)
    return TokenCreatedOut(id=token_id, token=token.reveal())


@router.get("/tokens")
def list_tokens(request: Request, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    return [to_json(t) for t in vault_of(request).accounts.list_tokens(principal)]


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: uuid.UUID, request: Request, principal: CurrentPrincipal) -> Response:
    vault_of(request).accounts.revoke_token(principal, token_id)
    return Response(status_code=204)
