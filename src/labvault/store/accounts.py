"""Rows of the account tables: accounts, enrolments, recovery codes, sessions, API tokens and the
login throttle.

Personal columns arrive `Sealed`; secrets given to users arrive as digests. Steps that must not
happen twice (an enrolment token used, a TOTP step accepted, a recovery code spent) are single
conditional updates, so two concurrent requests cannot both succeed. The vault's account desk is
the only caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, and_, case, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from labvault.store.engine import guarded
from labvault.store.tables import (
    account,
    api_token,
    auth_session,
    enrolment,
    login_throttle,
    recovery_code,
)

# An account, re-enrolment or token asked for and not yet approved by a second person (the
# account desk's `labvault.access.account_rules.AWAITING_APPROVAL`).
AWAITING_APPROVAL = "awaiting_approval"

SESSION_WITH_ACCOUNT = (auth_session, account.c.status, account.c.patient_id, account.c.roles,
                        account.c.email, account.c.totp_secret, account.c.totp_last_step,
                        account.c.step_up_after)


class AccountStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- accounts ----------------------------------------------------------------------------------
    def insert_account(self, row: dict[str, Any], enrolment_row: dict[str, Any] | None) -> bool:
        """Insert an account (and its first enrolment); False if the e-mail is already used."""
        with guarded("creating the account"):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(account), row)
                    if enrolment_row is not None:
                        conn.execute(insert(enrolment), enrolment_row)
            except IntegrityError:
                return False
        return True

    def account(self, account_id: uuid.UUID) -> Row | None:
        with guarded("reading the account"), self.engine.connect() as conn:
            return conn.execute(select(account).where(account.c.id == account_id)).first()

    def account_by_email(self, email_bidx: bytes) -> Row | None:
        with guarded("reading the account"), self.engine.connect() as conn:
            return conn.execute(select(account).where(account.c.email_bidx == email_bidx)).first()

    def accounts(self) -> list[Row]:
        with guarded("listing accounts"), self.engine.connect() as conn:
            return list(conn.execute(select(account).order_by(account.c.created_at,
                                                              account.c.id)))

    def update_account(self, account_id: uuid.UUID, **values: Any) -> None:
        with guarded("updating the account"), self.engine.begin() as conn:
            conn.execute(update(account).where(account.c.id == account_id).values(**values))

    def accept_totp_step(self, account_id: uuid.UUID, step: int) -> bool:
        """Record ``step`` as the last accepted TOTP step unless it is not newer (a replay)."""
        with guarded("recording the TOTP step"), self.engine.begin() as conn:
            done = conn.execute(update(account).where(
                account.c.id == account_id,
                or_(account.c.totp_last_step.is_(None), account.c.totp_last_step < step),
            ).values(totp_last_step=step))
            return done.rowcount == 1

    def disable(self, account_id: uuid.UUID, now: datetime) -> None:
        """Disable an account; revoke its sessions and tokens; void its unused enrolments."""
        with guarded("disabling the account"), self.engine.begin() as conn:
            conn.execute(update(account).where(account.c.id == account_id)
                         .values(status="disabled"))
            _revoke_all(conn, account_id, now)

    def reset_mfa(self, account_id: uuid.UUID, now: datetime,
                  enrolment_row: dict[str, Any] | None, *, status: str,
                  requested_by: str) -> None:
        """Back to ``status`` (pending, or awaiting approval): password, TOTP secret and recovery
        codes dropped, sessions and unused enrolments revoked, one new enrolment if given."""
        with guarded("resetting the second factor"), self.engine.begin() as conn:
            conn.execute(update(account).where(account.c.id == account_id).values(
                status=status, password_hash=None, totp_secret=None, totp_last_step=None,
                enrolled_at=None, requested_by=requested_by, approved_by=None))
            conn.execute(delete(recovery_code).where(recovery_code.c.account_id == account_id))
            _revoke_all(conn, account_id, now)
            if enrolment_row is not None:
                conn.execute(insert(enrolment), enrolment_row)

    def approve_account(self, account_id: uuid.UUID, status: str, approved_by: str,
                        enrolment_row: dict[str, Any] | None) -> bool:
        """Move an account awaiting approval to ``status``, with its enrolment if given; False
        (nothing changes) if it no longer awaits approval (approved or disabled meanwhile)."""
        with guarded("approving the account"), self.engine.begin() as conn:
            done = conn.execute(update(account).where(
                account.c.id == account_id, account.c.status == AWAITING_APPROVAL,
            ).values(status=status, approved_by=approved_by))
            if done.rowcount != 1:
                return False
            if enrolment_row is not None:
                conn.execute(insert(enrolment), enrolment_row)
            return True

    # -- enrolment ---------------------------------------------------------------------------------
    def enrolment(self, token_hash: bytes) -> Row | None:
        with guarded("reading the enrolment"), self.engine.connect() as conn:
            return conn.execute(select(enrolment).where(enrolment.c.token_hash == token_hash)
                                ).first()

    def begin_enrolment(self, token_hash: bytes, account_id: uuid.UUID, totp_pending: Any,
                        password_hash: str, now: datetime) -> None:
        with guarded("starting the enrolment"), self.engine.begin() as conn:
            conn.execute(update(enrolment).where(enrolment.c.token_hash == token_hash)
                         .values(totp_pending=totp_pending))
            conn.execute(update(account).where(account.c.id == account_id).values(
                password_hash=password_hash, password_changed_at=now))

    def complete_enrolment(self, token_hash: bytes, account_id: uuid.UUID, totp_secret: Any,
                           step: int, code_hashes: Sequence[bytes], now: datetime) -> bool:
        """Activate the account with its TOTP secret and recovery codes; False if the enrolment
        was used meanwhile (nothing changes then)."""
        with guarded("completing the enrolment"), self.engine.begin() as conn:
            used = conn.execute(update(enrolment).where(
                enrolment.c.token_hash == token_hash, enrolment.c.used_at.is_(None),
            ).values(used_at=now, totp_pending=None))
            if used.rowcount != 1:
                return False
            conn.execute(update(account).where(account.c.id == account_id).values(
                status="active", totp_secret=totp_secret, totp_last_step=step,
                enrolled_at=now))
            conn.execute(delete(recovery_code).where(recovery_code.c.account_id == account_id))
            conn.execute(insert(recovery_code), [
                {"account_id": account_id, "code_hash": h, "created_at": now}
                for h in code_hashes])
            return True

    def use_recovery_code(self, account_id: uuid.UUID, code_hash: bytes, now: datetime) -> bool:
        with guarded("using a recovery code"), self.engine.begin() as conn:
            done = conn.execute(update(recovery_code).where(
                recovery_code.c.account_id == account_id, recovery_code.c.code_hash == code_hash,
                recovery_code.c.used_at.is_(None)).values(used_at=now))
            return done.rowcount == 1

    # -- sessions ----------------------------------------------------------------------------------
    def open_session(self, row: dict[str, Any], replaces: bytes | None = None,
                     now: datetime | None = None) -> bool:
        """Store a session. ``replaces`` names the MFA challenge it follows, revoked in the same
        transaction; False (nothing stored) if that challenge was already revoked."""
        with guarded("opening the session"), self.engine.begin() as conn:
            if replaces is not None:
                done = conn.execute(update(auth_session).where(
                    auth_session.c.token_hash == replaces, auth_session.c.revoked_at.is_(None),
                ).values(revoked_at=now))
                if done.rowcount != 1:
                    return False
            conn.execute(insert(auth_session), row)
            return True

    def session(self, token_hash: bytes) -> Row | None:
        """The session with its account's status, roles, patient id and sealed e-mail."""
        q = (select(*SESSION_WITH_ACCOUNT)
             .join(account, account.c.id == auth_session.c.account_id)
             .where(auth_session.c.token_hash == token_hash))
        with guarded("reading the session"), self.engine.connect() as conn:
            return conn.execute(q).first()

    def update_session(self, token_hash: bytes, **values: Any) -> None:
        with guarded("updating the session"), self.engine.begin() as conn:
            conn.execute(update(auth_session).where(auth_session.c.token_hash == token_hash)
                         .values(**values))

    # -- API tokens --------------------------------------------------------------------------------
    def insert_token(self, row: dict[str, Any]) -> None:
        with guarded("issuing the token"), self.engine.begin() as conn:
            conn.execute(insert(api_token), row)

    def token(self, token_id: uuid.UUID) -> Row | None:
        with guarded("reading the token"), self.engine.connect() as conn:
            return conn.execute(select(api_token).where(api_token.c.id == token_id)).first()

    def token_by_hash(self, token_hash: bytes) -> Row | None:
        """The token with its account's status (``account_status``) and roles."""
        q = (select(api_token, account.c.status.label("account_status"), account.c.roles)
             .join(account, account.c.id == api_token.c.account_id)
             .where(api_token.c.token_hash == token_hash))
        with guarded("reading the token"), self.engine.connect() as conn:
            return conn.execute(q).first()

    def tokens(self, account_id: uuid.UUID | None = None) -> list[Row]:
        q = select(api_token).order_by(api_token.c.created_at, api_token.c.id)
        if account_id is not None:
            q = q.where(api_token.c.account_id == account_id)
        with guarded("listing tokens"), self.engine.connect() as conn:
            return list(conn.execute(q))

    def approve_token(self, token_id: uuid.UUID, token_hash: bytes, approved_by: str) -> bool:
        """Activate a token awaiting approval under its new digest; False (nothing changes) if
        it was approved or revoked meanwhile."""
        with guarded("approving the token"), self.engine.begin() as conn:
            done = conn.execute(update(api_token).where(
                api_token.c.id == token_id, api_token.c.status == AWAITING_APPROVAL,
                api_token.c.revoked_at.is_(None),
            ).values(status="active", token_hash=token_hash, approved_by=approved_by))
            return done.rowcount == 1

    def update_token(self, token_id: uuid.UUID, **values: Any) -> None:
        with guarded("updating the token"), self.engine.begin() as conn:
            conn.execute(update(api_token).where(api_token.c.id == token_id).values(**values))

    # -- login throttle ----------------------------------------------------------------------------
    def throttles(self, keys: Sequence[bytes]) -> list[Row]:
        with guarded("reading the login throttle"), self.engine.connect() as conn:
            return list(conn.execute(select(login_throttle)
                                     .where(login_throttle.c.key.in_(list(keys)))))

    def record_failure(self, key: bytes, now: datetime, forget_before: datetime,
                       block_for: Callable[[int], timedelta | None]) -> datetime | None:
        """Count one more failure under ``key`` (restarting from one if the last failure is
        older than ``forget_before``); return the time it is blocked until, if any.

        The increment is a single upsert, so concurrent failures are all counted.
        """
        t = login_throttle
        upsert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = upsert(t).values(key=key, failures=1, last_failure_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.key], set_={
            "failures": case((t.c.last_failure_at < forget_before, 1), else_=t.c.failures + 1),
            "last_failure_at": now,
        }).returning(t.c.failures)
        with guarded("recording a failed login"), self.engine.begin() as conn:
            count = conn.execute(stmt).scalar_one()
            delay = block_for(int(count))
            until = now + delay if delay else None
            conn.execute(update(t).where(t.c.key == key).values(blocked_until=until))
            return until

    def clear_failures(self, key: bytes) -> None:
        with guarded("resetting the login throttle"), self.engine.begin() as conn:
            conn.execute(delete(login_throttle).where(login_throttle.c.key == key))


def _revoke_all(conn: Any, account_id: uuid.UUID, now: datetime) -> None:
    conn.execute(update(auth_session).where(auth_session.c.account_id == account_id,
                                            auth_session.c.revoked_at.is_(None))
                 .values(revoked_at=now))
    conn.execute(update(api_token).where(api_token.c.account_id == account_id,
                                         api_token.c.revoked_at.is_(None))
                 .values(revoked_at=now))
    conn.execute(update(enrolment).where(and_(enrolment.c.account_id == account_id,
                                              enrolment.c.used_at.is_(None)))
                 .values(used_at=now, totp_pending=None))
