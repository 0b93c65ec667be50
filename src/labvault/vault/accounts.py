"""The account desk: named accounts, enrolment, two-factor login, sessions and service tokens.

Every access is made by one named person proven by two factors (password, then TOTP or a
recovery code) and limited by the role chosen at login. Four eyes: an account, a re-enrolment
or a service token asked for by anyone but the local operator waits (``awaiting_approval``)
until a second, different person approves it; only then does its secret exist, and it goes to
the approver, who hands it over. An account's e-mail, name, RPPS and TOTP
secret are sealed under the ``accounts/fields/v1`` key, bound to the account's id; the e-mail
is found through a blind index. The secrets given to users (enrolment, challenge, session and
API tokens, recovery codes) are shown once and stored only as digests.

Every failure to authenticate raises `AuthenticationFailed` with the same message, whatever the
cause, and failed passwords and codes are throttled per e-mail and per source address whether
the account exists or not. Calls append an audit event (``access:…``) through the vault's audit
sink before anything changes; events carry ids and reasons, never an e-mail, a name, a
password, a code or a token. A successful `authenticate` is not an event of its own: every vault
call made with the principal it returns is.

`AccountDesk` keeps administration and enrolment here; it takes login and sessions from
`labvault.vault.sessions` and service tokens from `labvault.vault.tokens`. Lifetimes, token
prefixes, event names and the checks on input are in `labvault.access.account_rules`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from labvault.access import passwords, totp
from labvault.access.account_rules import (
    API_PREFIX,
    AWAITING_APPROVAL,
    EMAIL_INDEX,
    EMAIL_PATTERN,
    ENROLMENT_PREFIX,
    ENROLMENT_TTL,
    FIELDS_KEY,
    IDLE_TIMEOUT,
    RECOVERY_KEY,
    SESSION_LIFETIME,
    UNKNOWN,
    AccessEvent,
    actor_of,
    aware,
    needs_approval,
    new_token,
    parse_roles,
    pending_ref,
    token_digest,
    valid_roles,
    valid_text,
)
from labvault.access.account_rules import CHALLENGE_TTL as CHALLENGE_TTL  # also offered here
from labvault.access.account_rules import MAX_TOKEN_TTL as MAX_TOKEN_TTL  # also offered here
from labvault.access.permissions import Permission
from labvault.access.principal import Principal, Role
from labvault.access.throttle import THROTTLE_KEY, Throttle
from labvault.audit.sink import AuditEvent
from labvault.crypto.blind import BlindIndex
from labvault.crypto.envelope import AesGcmFieldCipher, Sealed
from labvault.domain.identifiers import validate_finess, validate_rpps
from labvault.errors import AccessDenied, AuthenticationFailed, InvalidRecord, NotFound
from labvault.secret import Secret
from labvault.store.accounts import AccountStore
from labvault.vault.sessions import SessionGrant, Sessions
from labvault.vault.tokens import ServiceTokens, TokenInfo

if TYPE_CHECKING:
    from labvault.vault.core import Vault


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """A staff (or patient, or service) account as an administrator sees it."""

    id: uuid.UUID
    email: Secret[str]
    display_name: Secret[str]
    roles: tuple[Role, ...]
    status: str  # awaiting_approval | pending | active | disabled
    enrolled_at: datetime | None
    created_at: datetime
    requested_by: str | None = None  # who asked for the account or its last re-enrolment
    approved_by: str | None = None  # the second person, when one was needed


@dataclass(frozen=True, slots=True)
class EnrolmentStart:
    otpauth_uri: Secret[str]  # what the QR code encodes
    secret: Secret[str]  # the same secret, for typing it in by hand


class AccountDesk(Sessions, ServiceTokens):
    def __init__(self, vault: Vault, *, idle_timeout: timedelta = IDLE_TIMEOUT,
                 session_lifetime: timedelta = SESSION_LIFETIME) -> None:
        self._vault = vault
        self._store = AccountStore(vault._records.engine)
        keys = vault._keys
        self._cipher = AesGcmFieldCipher(keys.index_key(FIELDS_KEY), 1)
        self._email_index = BlindIndex(EMAIL_INDEX, keys.index_key(EMAIL_INDEX))
        self._recovery_key = keys.index_key(RECOVERY_KEY)
        self._throttle = Throttle(self._store, keys.index_key(THROTTLE_KEY), vault._clock)
        self.idle_timeout = idle_timeout
        self.session_lifetime = session_lifetime

    def __repr__(self) -> str:
        return "AccountDesk()"

    # -- plumbing ----------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return self._vault._clock.now().astimezone(UTC)

    def _audit(self, action: AccessEvent, outcome: str, *, actor: str = UNKNOWN,
               role: str = "none", source: str = UNKNOWN, purpose: str = "access",
               request_id: str = "", patient_ids: tuple[uuid.UUID, ...] = (),
               **detail: object) -> None:
        self._vault._audit.append(AuditEvent(
            at=self._now(), actor=actor, role=str(role), source=source or UNKNOWN,
            purpose=purpose, action=str(action), outcome=outcome, patient_ids=patient_ids,
            detail=detail, request_id=request_id))

    def _audit_as(self, principal: Principal, action: AccessEvent, outcome: str = "allowed",
                  **detail: object) -> None:
        self._audit(action, outcome, actor=principal.actor_id, role=principal.role,
                    source=principal.source, purpose=principal.purpose,
                    request_id=principal.request_id, **detail)

    def _seal(self, column: str, account_id: uuid.UUID, value: str | None) -> Sealed | None:
        if value is None:
            return None
        return self._cipher.seal("account", column, account_id, value.encode("utf-8"))

    def _open(self, column: str, account_id: uuid.UUID, sealed: Sealed | None) -> str | None:
        if sealed is None:
            return None
        return self._cipher.open("account", column, account_id, sealed).decode("utf-8")

    def _email_key(self, email: str) -> bytes:
        return self._email_index.compute(email.strip().lower())

    def _enrolment_row(self, account_id: uuid.UUID, now: datetime,
                       by: str) -> tuple[Secret[str], dict[str, Any]]:
        token = new_token(ENROLMENT_PREFIX)
        return token, {"token_hash": token_digest(token), "account_id": account_id, "created_at": now,
                       "expires_at": now + ENROLMENT_TTL, "created_by": by}

    def _account(self, principal: Principal, action: AccessEvent, account_id: uuid.UUID) -> Any:
        row = self._store.account(account_id)
        if row is None:
            self._audit_as(principal, action, "not_found", account_id=str(account_id))
            raise NotFound("account", account_id)
        return row

    # -- administration ----------------------------------------------------------------------------
    def create_account(self, principal: Principal, *, email: str, display_name: str,
                       roles: list[Role], rpps: str | None = None,
                       patient_id: uuid.UUID | None = None,
                       site: str | None = None) -> tuple[uuid.UUID, Secret[str]]:
        """A new account and its one-time enrolment token (valid 72 h).

        Asked for by anyone but the local operator, the account awaits approval by a second
        person (`approve`), and the token returned is empty: the enrolment token is drawn at
        approval and goes to the approver. A service account has no password and no enrolment
        (its token is always empty); it authenticates with API tokens only, and is active once
        created by the local operator or approved."""
        self._vault._authorize(principal, Permission.ACCOUNT_MANAGE)
        act = AccessEvent.ACCOUNT_CREATE
        try:
            address = valid_text("email", email, 254)
            if not EMAIL_PATTERN.fullmatch(address):
                raise InvalidRecord("email", "not an e-mail address")
            name = valid_text("display_name", display_name, 200)
            chosen = valid_roles(roles, patient_id)
            number = validate_rpps(rpps) if rpps else None
            site = validate_finess(site, "site") if site is not None else None
            if patient_id is not None and not self._vault._records.live([patient_id]):
                raise InvalidRecord("patient_id", "no such patient")
            bidx = self._email_key(address)
            if self._store.account_by_email(bidx) is not None:
                raise InvalidRecord("email", "already used")
        except InvalidRecord as exc:
            self._audit_as(principal, act, "invalid", field=exc.field)
            raise
        account_id, now = uuid.uuid4(), self._now()
        service, waits = chosen == (Role.SERVICE,), needs_approval(principal)
        status = AWAITING_APPROVAL if waits else "active" if service else "pending"
        row = {"id": account_id, "email_bidx": bidx, "roles": ",".join(chosen),
               "email": self._seal("email", account_id, address),
               "display_name": self._seal("display_name", account_id, name),
               "rpps": self._seal("rpps", account_id, number), "patient_id": patient_id,
               "status": status, "created_at": now, "created_by": principal.actor_id,
               "requested_by": principal.actor_id, "site": site}
        token, enrol = (Secret(""), None) if service or waits else self._enrolment_row(
            account_id, now, principal.actor_id)
        self._audit_as(principal, act, account_id=str(account_id), roles=list(chosen),
                       status=status, requested_by=principal.actor_id, site=site,
                       patient_ids=_own_record(patient_id))
        if not self._store.insert_account(row, enrol):
            raise InvalidRecord("email", "already used")
        return account_id, token

    def list_accounts(self, principal: Principal) -> list[AccountInfo]:
        self._vault._authorize(principal, Permission.ACCOUNT_MANAGE)
        rows = self._store.accounts()
        self._audit_as(principal, AccessEvent.ACCOUNT_LIST, count=len(rows))
        return [AccountInfo(r.id, Secret(self._open("email", r.id, r.email) or ""),
                            Secret(self._open("display_name", r.id, r.display_name) or ""),
                            parse_roles(r.roles), r.status, aware(r.enrolled_at),
                            aware(r.created_at), r.requested_by, r.approved_by) for r in rows]

    def disable_account(self, principal: Principal, account_id: uuid.UUID) -> None:
        """Disable the account; its sessions and tokens are revoked at once."""
        self._vault._authorize(principal, Permission.ACCOUNT_MANAGE)
        self._account(principal, AccessEvent.ACCOUNT_DISABLE, account_id)
        self._audit_as(principal, AccessEvent.ACCOUNT_DISABLE, account_id=str(account_id))
        self._store.disable(account_id, self._now())

    def reset_mfa(self, principal: Principal, account_id: uuid.UUID) -> Secret[str]:
        """Re-enrolment: password, TOTP secret and recovery codes dropped, sessions revoked; the
        new enrolment token is returned (valid 72 h).

        Asked for by anyone but the local operator, the account awaits approval by a second
        person (`approve`) and the token returned is empty: the approver receives it."""
        self._vault._authorize(principal, Permission.ACCOUNT_MANAGE)
        act = AccessEvent.ACCOUNT_RESET_MFA
        row = self._account(principal, act, account_id)
        reason = ("disabled" if row.status == "disabled" else
                  # A locked account comes back only through an admin and the DPO (unlock).
                  "locked" if row.status == "locked" else
                  "service" if Role.SERVICE in parse_roles(row.roles) else
                  AWAITING_APPROVAL if row.status == AWAITING_APPROVAL else None)
        if reason:
            self._audit_as(principal, act, "invalid", account_id=str(account_id), reason=reason,
                           patient_ids=_own_record(row.patient_id))
            raise InvalidRecord("account_id", "a disabled, locked or service account, or one "
                                              "awaiting approval, has no second factor to reset")
        now, waits = self._now(), needs_approval(principal)
        status = AWAITING_APPROVAL if waits else "pending"
        token, enrol = (Secret(""), None) if waits else self._enrolment_row(
            account_id, now, principal.actor_id)
        self._audit_as(principal, act, account_id=str(account_id), status=status,
                       requested_by=principal.actor_id, patient_ids=_own_record(row.patient_id))
        self._store.reset_mfa(account_id, now, enrol, status=status,
                              requested_by=principal.actor_id)
        return token

    def approve(self, principal: Principal, account_id: uuid.UUID) -> Secret[str]:
        """Bring into force an account, or a re-enrolment, that another person asked for.

        Returns the one-time enrolment token (valid 72 h), drawn now, for the approver to hand
        over to the person; for a service account the token is empty and the account is active
        (its API tokens are approved one by one, `approve_token`). The requester, and the
        account's own holder, cannot approve: `AccessDenied`, audited."""
        self._vault._authorize(principal, Permission.ACCOUNT_APPROVE)
        act = AccessEvent.ACCOUNT_APPROVE
        row = self._account(principal, act, account_id)
        about: dict[str, Any] = {"account_id": str(account_id),
                                 "requested_by": row.requested_by,
                                 "patient_ids": _own_record(row.patient_id)}
        if row.status != AWAITING_APPROVAL:
            self._audit_as(principal, act, "invalid", reason=row.status, **about)
            raise InvalidRecord("account_id", "nothing awaits approval")
        if principal.actor_id in (row.requested_by, actor_of(account_id)):
            self._audit_as(principal, act, "denied", reason="requester", **about)
            raise AccessDenied(principal.actor_id, principal.role, Permission.ACCOUNT_APPROVE)
        service, now = parse_roles(row.roles) == (Role.SERVICE,), self._now()
        token, enrol = (Secret(""), None) if service else self._enrolment_row(
            account_id, now, principal.actor_id)
        self._audit_as(principal, act, approved_by=principal.actor_id, **about)
        if not self._store.approve_account(account_id, "active" if service else "pending",
                                           principal.actor_id, enrol):
            raise InvalidRecord("account_id", "nothing awaits approval")  # approved meanwhile
        return token

    # -- enrolment ---------------------------------------------------------------------------------
    def _enrolment(self, token: Secret[str] | str, source: str) -> tuple[Any, Any]:
        row = self._store.enrolment(token_digest(token))
        acct = self._store.account(row.account_id) if row is not None else None
        now = self._now()
        if row is None or acct is None:
            reason = "unknown"
        elif row.used_at is not None or aware(row.expires_at) <= now:
            reason = "used or expired"
        elif acct.status != "pending":
            reason = acct.status
        else:
            return row, acct
        self._audit(AccessEvent.ENROLMENT_FAILURE, "failed", source=source, purpose="enrolment",
                    actor=actor_of(acct.id if acct is not None else None), reason=reason)
        raise AuthenticationFailed()

    def begin_enrolment(self, enrolment_token: Secret[str] | str, password: Secret[str] | str,
                        *, source: str = UNKNOWN) -> EnrolmentStart:
        """Check the token, set the password, draw the TOTP secret to put in the app."""
        row, acct = self._enrolment(enrolment_token, source)
        actor = actor_of(acct.id)
        email = self._open("email", acct.id, acct.email) or ""
        name = self._open("display_name", acct.id, acct.display_name) or ""
        try:
            passwords.check_policy(Secret(password), email, (name,))
        except InvalidRecord as exc:
            self._audit(AccessEvent.ENROLMENT_BEGIN, "invalid", actor=actor, source=source,
                        purpose="enrolment", field=exc.field)
            raise
        secret = totp.new_secret()
        sealed = self._cipher.seal("enrolment", "totp_pending", pending_ref(acct.id, row),
                                   secret.reveal().encode("ascii"))
        self._audit(AccessEvent.ENROLMENT_BEGIN, "allowed", actor=actor, source=source,
                    purpose="enrolment")
        self._store.begin_enrolment(row.token_hash, acct.id, sealed,
                                    passwords.hash_password(Secret(password)), self._now())
        return EnrolmentStart(totp.provisioning_uri(secret, email), secret)

    def confirm_enrolment(self, enrolment_token: Secret[str] | str, code: Secret[str] | str, *,
                          source: str = UNKNOWN) -> list[Secret[str]]:
        """Check the first code from the app; the account becomes active. Returns the recovery
        codes, shown this once."""
        row, acct = self._enrolment(enrolment_token, source)
        actor = actor_of(acct.id)
        now = self._now()
        try:
            if row.totp_pending is None or acct.password_hash is None:
                raise AuthenticationFailed()
            secret = Secret(self._cipher.open("enrolment", "totp_pending",
                                              pending_ref(acct.id, row),
                                              row.totp_pending).decode("ascii"))
            step = totp.verify_code(secret, code, now, None)
        except AuthenticationFailed:
            self._audit(AccessEvent.ENROLMENT_FAILURE, "failed", actor=actor, source=source,
                        purpose="enrolment", reason="code")
            raise
        codes = totp.new_recovery_codes()
        digests = [totp.recovery_digest(c, self._recovery_key) for c in codes]
        self._audit(AccessEvent.ENROLMENT_COMPLETE, "allowed", actor=actor, source=source,
                    purpose="enrolment", recovery_codes=len(codes), issued_by=row.created_by,
                    requested_by=acct.requested_by)
        if not self._store.complete_enrolment(row.token_hash, acct.id,
                                              self._seal("totp_secret", acct.id, secret.reveal()),
                                              step, [d for d in digests if d], now):
            raise AuthenticationFailed()
        return codes

    def authenticate_bearer(self, token: Secret[str] | str, *, source: str, purpose: str,
                            request_id: str) -> Principal:
        """A bearer token of either kind: a service token (``lvt_…``) or a session."""
        value = Secret(token).reveal() or ""
        check = self.authenticate_token if value.startswith(API_PREFIX) else self.authenticate
        return check(token, source=source, purpose=purpose, request_id=request_id)


def _own_record(patient_id: uuid.UUID | None) -> tuple[uuid.UUID, ...]:
    """A patient account's events name its record, so that they show in who-read reports."""
    return (patient_id,) if patient_id is not None else ()


__all__ = ["AccessEvent", "AccountDesk", "AccountInfo", "EnrolmentStart", "SessionGrant",
           "TokenInfo"]
