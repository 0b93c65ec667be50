"""The rules of named accounts: key names, lifetimes, token prefixes, audit event names and the
checks on what an administrator types in (roles, scopes, free text).

Nothing here touches storage or keys: the account desk (`labvault.vault.accounts`) applies
these rules. Secrets handed to users are stored only as the digest computed by `token_digest`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from labvault.access.permissions import SERVICE_GRANTABLE, Permission
from labvault.access.principal import Principal, Role
from labvault.errors import InvalidRecord
from labvault.secret import Secret

FIELDS_KEY = "accounts/fields/v1"
EMAIL_INDEX = "account.email"
RECOVERY_KEY = "access/recovery/v1"
ENROLMENT_TTL = timedelta(hours=72)
CHALLENGE_TTL = timedelta(minutes=5)
IDLE_TIMEOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=8)
MAX_TOKEN_TTL = timedelta(days=365)
UNKNOWN = "unknown"
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Prefixes tell the kind of a leaked secret at a glance (and let secret scanners find them).
ENROLMENT_PREFIX, CHALLENGE_PREFIX, SESSION_PREFIX, API_PREFIX = "lve_", "lvc_", "lvs_", "lvt_"
# The state of an account, a re-enrolment or a service token asked for by one person and not yet
# approved by a second one: it opens nothing, and no secret exists for it yet.
AWAITING_APPROVAL = "awaiting_approval"


class AccessEvent(StrEnum):
    ACCOUNT_CREATE = "access:account:create"
    ACCOUNT_LIST = "access:account:list"
    ACCOUNT_DISABLE = "access:account:disable"
    ACCOUNT_RESET_MFA = "access:account:reset-mfa"
    ACCOUNT_APPROVE = "access:account:approve"
    ENROLMENT_BEGIN = "access:enrolment:begin"
    ENROLMENT_COMPLETE = "access:enrolment:complete"
    ENROLMENT_FAILURE = "access:enrolment:failure"
    # The password was right, the second factor is awaited.
    LOGIN_PASSWORD = "access:login:password"  # noqa: S105 - an event name
    LOGIN_SUCCESS = "access:login:success"
    LOGIN_FAILURE = "access:login:failure"
    MFA_FAILURE = "access:mfa:failure"
    STEP_UP = "access:mfa:step-up"
    SESSION_FAILURE = "access:session:failure"
    LOGOUT = "access:session:logout"
    TOKEN_ISSUE = "access:token:issue"  # noqa: S105 - an event name
    TOKEN_REVOKE = "access:token:revoke"  # noqa: S105 - an event name
    TOKEN_LIST = "access:token:list"  # noqa: S105 - an event name
    TOKEN_APPROVE = "access:token:approve"  # noqa: S105 - an event name
    TOKEN_FAILURE = "access:token:failure"  # noqa: S105 - an event name


def token_digest(token: Secret[str] | str) -> bytes:
    value = token.reveal() if isinstance(token, Secret) else token
    return hashlib.sha256((value or "").encode("utf-8")).digest()


def new_token(prefix: str) -> Secret[str]:
    return Secret(prefix + secrets.token_urlsafe(32))


def aware(at: datetime | None) -> Any:
    if at is None:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def parse_roles(column: str) -> tuple[Role, ...]:
    return tuple(Role(r) for r in column.split(",") if r)


def actor_of(account_id: uuid.UUID | None) -> str:
    return f"account:{account_id}" if account_id is not None else UNKNOWN


def pending_ref(account_id: uuid.UUID, enrolment_row: Any) -> str:
    """What a pending TOTP secret is bound to: its account and its enrolment."""
    return f"{account_id.hex}/{bytes(enrolment_row.token_hash).hex()}"


def needs_approval(principal: Principal) -> bool:
    """Whether what the principal grants (an account, a re-enrolment, a service token) waits
    for a second person. Only the local operator, who holds the key file on the lab's machine,
    grants alone. Every role waits, administrators and DPOs included: an approver created by one
    person alone would let that person approve his own requests."""
    return principal.role is not Role.LOCAL_OPERATOR


def valid_roles(roles: list[Role], patient_id: uuid.UUID | None) -> tuple[Role, ...]:
    try:
        chosen = tuple(dict.fromkeys(Role(r) for r in roles))
    except ValueError:
        raise InvalidRecord("roles", "unknown role") from None
    if not chosen:
        raise InvalidRecord("roles", "at least one role is needed")
    if Role.LOCAL_OPERATOR in chosen:
        raise InvalidRecord("roles", "local_operator belongs to the command line, not an account")
    for alone in (Role.SERVICE, Role.PATIENT):
        if alone in chosen and len(chosen) > 1:
            raise InvalidRecord("roles", f"a {alone} account has no other role")
    if (Role.PATIENT in chosen) != (patient_id is not None):
        raise InvalidRecord("patient_id", "a patient account, and only it, names its patient")
    return chosen


def valid_text(field: str, value: str, longest: int) -> str:
    text = (value or "").strip()
    if not text or len(text) > longest or not text.isprintable():
        raise InvalidRecord(field, f"1 to {longest} printable characters")
    return text


def valid_scopes(scopes: list[Permission]) -> tuple[str, ...]:
    try:
        chosen = sorted({Permission(s) for s in scopes})
    except ValueError:
        raise InvalidRecord("scopes", "unknown permission") from None
    if not chosen:
        raise InvalidRecord("scopes", "at least one scope is needed")
    for p in chosen:
        if p not in SERVICE_GRANTABLE:
            raise InvalidRecord("scopes", f"{p} cannot be granted to a service")
    return tuple(str(p) for p in chosen)


__all__ = ["API_PREFIX", "AWAITING_APPROVAL", "CHALLENGE_PREFIX", "CHALLENGE_TTL", "EMAIL_INDEX",
           "EMAIL_PATTERN", "ENROLMENT_PREFIX", "ENROLMENT_TTL", "FIELDS_KEY", "IDLE_TIMEOUT",
           "MAX_TOKEN_TTL", "RECOVERY_KEY", "SESSION_LIFETIME", "SESSION_PREFIX", "UNKNOWN",
           "AccessEvent", "actor_of", "aware", "needs_approval", "new_token", "parse_roles",
           "pending_ref", "token_digest", "valid_roles", "valid_scopes", "valid_text"]
