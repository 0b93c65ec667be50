"""Service tokens: API tokens of service accounts, with explicit scopes and a bounded lifetime.

A token is shown once and stored only as a digest; it authenticates as the service role holding
exactly its scopes (within `SERVICE_GRANTABLE`), until it expires, is revoked or its account is
disabled. Four eyes: a token issued by anyone but the local operator is inactive
(``awaiting_approval``) and has no usable secret until a second, different person approves it
(`approve_token`); the secret is drawn then and shown once, to the approver. Issuing, approving,
revoking and listing are audited (``access:token:…``), and so is every refused token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from labvault.access.account_rules import (
    API_PREFIX,
    AWAITING_APPROVAL,
    MAX_TOKEN_TTL,
    AccessEvent,
    actor_of,
    aware,
    needs_approval,
    new_token,
    parse_roles,
    token_digest,
    valid_scopes,
    valid_text,
)
from labvault.access.permissions import Permission
from labvault.access.principal import Principal, Role
from labvault.errors import AccessDenied, AuthenticationFailed, InvalidRecord, NotFound
from labvault.secret import Secret

if TYPE_CHECKING:
    from labvault.store.accounts import AccountStore
    from labvault.vault.core import Vault


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A service token without its secret."""

    id: uuid.UUID
    account_id: uuid.UUID
    label: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_by: str  # who asked for it
    status: str  # awaiting_approval | active
    approved_by: str | None  # the second person, when one was needed


class ServiceTokens:
    """The service-token half of `AccountDesk`."""

    if TYPE_CHECKING:  # provided by `AccountDesk`
        _vault: Vault
        _store: AccountStore

        def _now(self) -> datetime: ...
        def _audit(self, action: AccessEvent, outcome: str, **detail: Any) -> None: ...
        def _audit_as(self, principal: Principal, action: AccessEvent, outcome: str = ...,
                      **detail: object) -> None: ...
        def _account(self, principal: Principal, action: AccessEvent,
                     account_id: uuid.UUID) -> Any: ...

    def issue_token(self, principal: Principal, account_id: uuid.UUID, *,
                    scopes: list[Permission], ttl: timedelta,
                    label: str) -> tuple[uuid.UUID, Secret[str]]:
        """A token for a service account, with scopes within `SERVICE_GRANTABLE` and a lifetime
        of at most 365 days (counted from now). The secret is shown this once.

        Asked for by anyone but the local operator, the token is inactive until a second person
        approves it (`approve_token`), and the secret returned is empty."""
        self._vault._authorize(principal, Permission.TOKEN_MANAGE)
        act = AccessEvent.TOKEN_ISSUE
        acct = self._account(principal, act, account_id)
        try:
            if parse_roles(acct.roles) != (Role.SERVICE,) or acct.status != "active":
                raise InvalidRecord("account_id", "tokens go to active service accounts only")
            chosen = valid_scopes(scopes)
            if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
                raise InvalidRecord("ttl", "between one second and 365 days")
            name = valid_text("label", label, 100)
        except InvalidRecord as exc:
            self._audit_as(principal, act, "invalid", account_id=str(account_id),
                           field=exc.field)
            raise
        token_id, token, now = uuid.uuid4(), new_token(API_PREFIX), self._now()
        waits = needs_approval(principal)
        status = AWAITING_APPROVAL if waits else "active"
        self._audit_as(principal, act, account_id=str(account_id), token_id=str(token_id),
                       scopes=list(chosen), expires_at=(now + ttl).isoformat(), status=status,
                       requested_by=principal.actor_id)
        # Awaiting approval, the stored digest is of a secret nobody keeps; approval draws the
        # secret that works and replaces the digest.
        self._store.insert_token({
            "id": token_id, "account_id": account_id, "token_hash": token_digest(token),
            "label": name, "scopes": " ".join(chosen), "created_at": now,
            "expires_at": now + ttl, "created_by": principal.actor_id, "status": status})
        return token_id, Secret("") if waits else token

    def approve_token(self, principal: Principal, token_id: uuid.UUID) -> Secret[str]:
        """Activate a token that another person issued; return its secret, shown this once, for
        the approver to hand over. The requester cannot approve: `AccessDenied`, audited."""
        self._vault._authorize(principal, Permission.ACCOUNT_APPROVE)
        act = AccessEvent.TOKEN_APPROVE
        row = self._store.token(token_id)
        if row is None:
            self._audit_as(principal, act, "not_found", token_id=str(token_id))
            raise NotFound("token", token_id)
        acct = self._store.account(row.account_id)
        about = {"token_id": str(token_id), "account_id": str(row.account_id),
                 "requested_by": row.created_by}
        reason = ("revoked" if row.revoked_at is not None else
                  "expired" if aware(row.expires_at) <= self._now() else
                  row.status if row.status != AWAITING_APPROVAL else
                  acct.status if acct is None or acct.status != "active" else None)
        if reason is not None:
            self._audit_as(principal, act, "invalid", reason=reason, **about)
            raise InvalidRecord("token_id", "nothing awaits approval")
        if principal.actor_id == row.created_by:
            self._audit_as(principal, act, "denied", reason="requester", **about)
            raise AccessDenied(principal.actor_id, principal.role, Permission.ACCOUNT_APPROVE)
        token = new_token(API_PREFIX)
        self._audit_as(principal, act, approved_by=principal.actor_id, scopes=row.scopes.split(),
                       **about)
        if not self._store.approve_token(token_id, token_digest(token), principal.actor_id):
            raise InvalidRecord("token_id", "nothing awaits approval")  # approved meanwhile
        return token

    def revoke_token(self, principal: Principal, token_id: uuid.UUID) -> None:
        self._vault._authorize(principal, Permission.TOKEN_MANAGE)
        row = self._store.token(token_id)
        if row is None:
            self._audit_as(principal, AccessEvent.TOKEN_REVOKE, "not_found",
                           token_id=str(token_id))
            raise NotFound("token", token_id)
        self._audit_as(principal, AccessEvent.TOKEN_REVOKE, token_id=str(token_id),
                       account_id=str(row.account_id))
        if row.revoked_at is None:
            self._store.update_token(token_id, revoked_at=self._now())

    def list_tokens(self, principal: Principal,
                    account_id: uuid.UUID | None = None) -> list[TokenInfo]:
        self._vault._authorize(principal, Permission.TOKEN_MANAGE)
        rows = self._store.tokens(account_id)
        self._audit_as(principal, AccessEvent.TOKEN_LIST, count=len(rows),
                       account_id=str(account_id) if account_id else None)
        return [TokenInfo(r.id, r.account_id, r.label, tuple(r.scopes.split()),
                          aware(r.created_at), aware(r.expires_at), aware(r.revoked_at),
                          aware(r.last_used_at), r.created_by, r.status, r.approved_by)
                for r in rows]

    def authenticate_token(self, token: Secret[str] | str, *, source: str, purpose: str,
                           request_id: str) -> Principal:
        """The principal of a service token: role service, exactly the token's scopes."""
        now = self._now()
        row = self._store.token_by_hash(token_digest(token))
        reason = ("unknown" if row is None else
                  "revoked" if row.revoked_at is not None else
                  "expired" if aware(row.expires_at) <= now else
                  row.status if row.status != "active" else
                  row.account_status if row.account_status != "active" else
                  "not a service" if parse_roles(row.roles) != (Role.SERVICE,) else None)
        if reason is not None:
            self._audit(AccessEvent.TOKEN_FAILURE, "failed",
                        actor=actor_of(row.account_id if row is not None else None),
                        source=source, purpose=purpose, request_id=request_id, reason=reason,
                        token_id=str(row.id) if row is not None else None)
            raise AuthenticationFailed()
        self._store.update_token(row.id, last_used_at=now)
        return Principal(f"account:{row.account_id}/token:{row.id}", Role.SERVICE, source,
                         purpose, request_id=request_id, scopes=frozenset(row.scopes.split()))


__all__ = ["ServiceTokens", "TokenInfo"]
