"""Login and sessions: password then second factor, a session in one role, step-up, logout.

A login checks the password and returns a short challenge (5 min); the challenge and a TOTP or
recovery code open a session in one of the account's roles. A session lasts at most
`SESSION_LIFETIME` and dies after `IDLE_TIMEOUT` unused. Failed passwords and codes are
throttled per e-mail and per source address, and every failure raises the same
`AuthenticationFailed`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from labvault.access import passwords, totp
from labvault.access.account_rules import (
    CHALLENGE_PREFIX,
    CHALLENGE_TTL,
    SESSION_PREFIX,
    UNKNOWN,
    AccessEvent,
    actor_of,
    aware,
    new_token,
    parse_roles,
    token_digest,
)
from labvault.access.principal import Principal, Role
from labvault.errors import AuthenticationFailed
from labvault.secret import Secret

if TYPE_CHECKING:
    from labvault.access.throttle import Throttle
    from labvault.crypto.envelope import Sealed
    from labvault.store.accounts import AccountStore
    from labvault.vault.core import Vault


@dataclass(frozen=True, slots=True)
class SessionGrant:
    token: Secret[str]
    role: Role
    expires_at: datetime  # absolute limit
    idle_expires_at: datetime  # unless used before


SEEN_STEP = timedelta(seconds=30)


class Sessions:
    """The login and session half of `AccountDesk`."""

    if TYPE_CHECKING:  # provided by `AccountDesk`
        _vault: Vault
        _store: AccountStore
        _throttle: Throttle
        _recovery_key: bytes
        idle_timeout: timedelta
        session_lifetime: timedelta

        def _now(self) -> datetime: ...
        def _audit(self, action: AccessEvent, outcome: str, **detail: Any) -> None: ...
        def _audit_as(self, principal: Principal, action: AccessEvent, outcome: str = ...,
                      **detail: object) -> None: ...
        def _open(self, column: str, account_id: uuid.UUID,
                  sealed: Sealed | None) -> str | None: ...
        def _email_key(self, email: str) -> bytes: ...

    # -- login -------------------------------------------------------------------------------------
    def _throttled(self, keys: list[bytes], action: AccessEvent, actor: str, source: str,
                   purpose: str) -> None:
        try:
            self._throttle.check(keys)
        except AuthenticationFailed:
            self._audit(action, "throttled", actor=actor, source=source, purpose=purpose)
            raise

    def login(self, email: Secret[str] | str, password: Secret[str] | str,
              source: str) -> Secret[str]:
        """Check the password; return a challenge token (5 min) awaiting the second factor."""
        normalised = (Secret(email).reveal() or "").strip().lower()
        acct = self._store.account_by_email(self._email_key(normalised)) if normalised else None
        actor = actor_of(acct.id if acct is not None else None)
        keys = [self._throttle.key("address", source), self._throttle.key("email", normalised)]
        self._throttled(keys, AccessEvent.LOGIN_FAILURE, actor, source, "login")
        stored = acct.password_hash if acct is not None else None
        try:
            passwords.verify_password(stored, Secret(password))
            reason = None if acct.status == "active" else acct.status
        except AuthenticationFailed:
            reason = ("unknown account" if acct is None else
                      "not enrolled" if stored is None else "password")
        if reason is not None:
            retry = self._throttle.failure(keys)
            self._audit(AccessEvent.LOGIN_FAILURE, "failed", actor=actor, source=source,
                        purpose="login", reason=reason)
            raise AuthenticationFailed(retry_after=retry)
        now = self._now()
        if passwords.needs_rehash(stored):
            self._store.update_account(acct.id, password_hash=passwords.hash_password(
                Secret(password)))
        challenge = new_token(CHALLENGE_PREFIX)
        self._audit(AccessEvent.LOGIN_PASSWORD, "allowed", actor=actor, source=source,
                    purpose="login")
        self._store.open_session({
            "token_hash": token_digest(challenge), "account_id": acct.id,
            "role": parse_roles(acct.roles)[0], "stage": "mfa", "source": source, "created_at": now,
            "last_seen_at": now, "expires_at": now + CHALLENGE_TTL})
        return challenge

    def _second_factor(self, sess: Any, code: Secret[str] | str | None,
                       recovery_code: Secret[str] | str | None, now: datetime) -> str:
        """Check a TOTP code (replay refused) or spend a recovery code; the method used."""
        if (code is None) == (recovery_code is None):
            raise AuthenticationFailed()
        if code is not None:
            secret = Secret(self._open("totp_secret", sess.account_id, sess.totp_secret) or "")
            if not secret:
                raise AuthenticationFailed()
            step = totp.verify_code(secret, code, now, sess.totp_last_step)
            if not self._store.accept_totp_step(sess.account_id, step):
                raise AuthenticationFailed()
            return "totp"
        digest = totp.recovery_digest(recovery_code, self._recovery_key)
        if digest is None or not self._store.use_recovery_code(sess.account_id, digest, now):
            raise AuthenticationFailed()
        return "recovery-code"

    def complete_login(self, challenge: Secret[str] | str, *,
                       code: Secret[str] | str | None = None,
                       recovery_code: Secret[str] | str | None = None,
                       role: Role | str | None = None, source: str) -> SessionGrant:
        """Check the second factor on a challenge; open a session in the chosen role (default:
        the account's first)."""
        now = self._now()
        sess = self._store.session(token_digest(challenge))
        actor = actor_of(sess.account_id if sess is not None else None)
        fail = AccessEvent.MFA_FAILURE
        roles = parse_roles(sess.roles) if sess is not None else ()
        chosen = roles[0] if role is None and roles else role
        reason = ("unknown" if sess is None else
                  "stage" if sess.stage != "mfa" or sess.revoked_at is not None else
                  "expired" if aware(sess.expires_at) <= now else
                  sess.status if sess.status != "active" else
                  "role" if chosen not in roles else None)
        if reason is not None:
            self._audit(fail, "failed", actor=actor, source=source, purpose="login",
                        reason=reason)
            raise AuthenticationFailed()
        email = self._open("email", sess.account_id, sess.email) or ""
        keys = [self._throttle.key("address", source), self._throttle.key("email", email.lower())]
        self._throttled(keys, fail, actor, source, "login")
        try:
            method = self._second_factor(sess, code, recovery_code, now)
        except AuthenticationFailed:
            retry = self._throttle.failure(keys)
            self._audit(fail, "failed", actor=actor, source=source, purpose="login",
                        reason="recovery code" if recovery_code is not None else "code")
            raise AuthenticationFailed(retry_after=retry) from None
        self._throttle.success(keys[1])
        token, chosen = new_token(SESSION_PREFIX), Role(chosen)
        self._audit(AccessEvent.LOGIN_SUCCESS, "allowed", actor=actor, role=chosen,
                    source=source, purpose="login", method=method)
        expires = now + self.session_lifetime
        if not self._store.open_session({
                "token_hash": token_digest(token), "account_id": sess.account_id, "role": chosen,
                "stage": "active", "source": source, "created_at": now, "last_seen_at": now,
                "expires_at": expires, "mfa_at": now}, replaces=sess.token_hash, now=now):
            raise AuthenticationFailed()  # the challenge was used by a concurrent request
        return SessionGrant(token, chosen, expires, min(expires, now + self.idle_timeout))

    # -- sessions ----------------------------------------------------------------------------------
    def _live_session(self, token: Secret[str] | str, source: str | None, purpose: str,
                      request_id: str) -> Any:
        now = self._now()
        sess = self._store.session(token_digest(token))
        reason = ("unknown" if sess is None else
                  "stage" if sess.stage != "active" else
                  "revoked" if sess.revoked_at is not None else
                  "expired" if aware(sess.expires_at) <= now else
                  "idle" if aware(sess.last_seen_at) + self.idle_timeout <= now else
                  sess.status if sess.status != "active" else None)
        if reason is not None:
            self._audit(AccessEvent.SESSION_FAILURE, "failed",
                        actor=actor_of(sess.account_id if sess is not None else None),
                        source=source or (sess.source if sess is not None else UNKNOWN),
                        purpose=purpose, request_id=request_id, reason=reason)
            raise AuthenticationFailed()
        return sess

    def authenticate(self, token: Secret[str] | str, *, source: str, purpose: str,
                     request_id: str) -> Principal:
        """The principal of a live session (idle 15 min, absolute 8 h); marks it used."""
        sess = self._live_session(token, source, purpose, request_id)
        now = self._now()
        # Marked used at most every SEEN_STEP: a read then costs no write of its own, and the
        # idle limit is kept to within that step.
        if now - aware(sess.last_seen_at) >= SEEN_STEP:
            self._store.update_session(sess.token_hash, last_seen_at=now)
        role = Role(sess.role)
        mfa_at, due = aware(sess.mfa_at), aware(sess.step_up_after)
        return Principal(actor_of(sess.account_id), role, source, purpose, request_id=request_id,
                         patient_id=sess.patient_id if role is Role.PATIENT else None,
                         mfa_at=mfa_at,
                         step_up_due=due is not None and (mfa_at is None or mfa_at < due))

    def step_up(self, token: Secret[str] | str, code: Secret[str] | str, *,
                source: str | None = None) -> None:
        """A fresh TOTP code on a live session: bulk operations are allowed for 5 minutes."""
        sess = self._live_session(token, source, "step-up", "")
        now, actor, where = self._now(), actor_of(sess.account_id), source or sess.source
        email = self._open("email", sess.account_id, sess.email) or ""
        keys = [self._throttle.key("email", email.lower())]
        if source:
            keys.insert(0, self._throttle.key("address", source))
        self._throttled(keys, AccessEvent.MFA_FAILURE, actor, where, "step-up")
        try:
            self._second_factor(sess, code, None, now)
        except AuthenticationFailed:
            retry = self._throttle.failure(keys)
            self._audit(AccessEvent.MFA_FAILURE, "failed", actor=actor, role=sess.role,
                        source=where, purpose="step-up", reason="code")
            raise AuthenticationFailed(retry_after=retry) from None
        self._throttle.success(keys[-1])
        self._audit(AccessEvent.STEP_UP, "allowed", actor=actor, role=sess.role, source=where,
                    purpose="step-up")
        self._store.update_session(sess.token_hash, mfa_at=now, last_seen_at=now)

    def logout(self, token: Secret[str] | str) -> None:
        """Revoke the session; later use fails. Logging out twice is harmless."""
        sess = self._store.session(token_digest(token))
        if sess is None:
            self._audit(AccessEvent.LOGOUT, "not_found", purpose="logout")
            return
        self._audit(AccessEvent.LOGOUT, "allowed", actor=actor_of(sess.account_id),
                    role=sess.role, source=sess.source, purpose="logout")
        if sess.revoked_at is None:
            self._store.update_session(sess.token_hash, revoked_at=self._now())


__all__ = ["SessionGrant", "Sessions"]
