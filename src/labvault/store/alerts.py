"""Queries of the watcher: alerts, their deliveries, patient sites, decoy tags, account locks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from labvault.store.accounts import _revoke_all
from labvault.store.engine import guarded
from labvault.store.tables import account, alert, alert_delivery, api_token, honeytoken, patient_site


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- alerts ------------------------------------------------------------------------------------
    def raise_or_repeat(self, row: dict[str, Any]) -> tuple[Row, bool]:
        """Insert the alert, or count one more occurrence of the open one with the same dedup
        key; the stored row and whether it is new."""
        with guarded("raising the alert"), self.engine.begin() as conn:
            found = conn.execute(select(alert).where(alert.c.dedup_key == row["dedup_key"])).first()
            if found is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(alert), row)
                    return conn.execute(select(alert).where(alert.c.id == row["id"])).one(), True
                except IntegrityError:  # raised meanwhile by another worker or the watch process
                    found = conn.execute(select(alert).where(
                        alert.c.dedup_key == row["dedup_key"])).one()
            conn.execute(update(alert).where(alert.c.id == found.id).values(
                occurrences=alert.c.occurrences + 1, last_seen_at=row["last_seen_at"]))
            return conn.execute(select(alert).where(alert.c.id == found.id)).one(), False

    def alert(self, alert_id: uuid.UUID) -> Row | None:
        with guarded("reading the alert"), self.engine.connect() as conn:
            return conn.execute(select(alert).where(alert.c.id == alert_id)).first()

    def alerts(self, *, status: str | None = None, min_rank: Sequence[str] | None = None,
               limit: int = 100) -> list[Row]:
        q = select(alert).order_by(alert.c.raised_at.desc(), alert.c.id).limit(limit)
        if status is not None:
            q = q.where(alert.c.status == status)
        if min_rank is not None:
            q = q.where(alert.c.severity.in_(list(min_rank)))
        with guarded("listing alerts"), self.engine.connect() as conn:
            return list(conn.execute(q))

    def due(self, now: datetime) -> list[Row]:
        """Open alerts whose acknowledgement delay has run out."""
        q = select(alert).where(alert.c.status == "open", alert.c.next_escalation_at.is_not(None),
                                alert.c.next_escalation_at <= now).order_by(alert.c.raised_at)
        with guarded("reading due alerts"), self.engine.connect() as conn:
            return list(conn.execute(q))

    def update(self, alert_id: uuid.UUID, **values: Any) -> None:
        with guarded("updating the alert"), self.engine.begin() as conn:
            conn.execute(update(alert).where(alert.c.id == alert_id).values(**values))

    def escalate(self, alert_id: uuid.UUID, from_level: int, to_level: int,
                 next_at: datetime | None) -> bool:
        """Move an open alert to the next escalation level; False if another process did it
        first (each level is sent once, whoever ticks)."""
        with guarded("escalating the alert"), self.engine.begin() as conn:
            done = conn.execute(update(alert).where(
                alert.c.id == alert_id, alert.c.status == "open",
                alert.c.escalation_level == from_level).values(
                escalation_level=to_level, next_escalation_at=next_at))
            return done.rowcount == 1

    def acknowledge(self, alert_id: uuid.UUID, by: str, at: datetime, note: str | None) -> bool:
        with guarded("acknowledging the alert"), self.engine.begin() as conn:
            done = conn.execute(update(alert).where(alert.c.id == alert_id,
                                                    alert.c.status == "open").values(
                status="acknowledged", acknowledged_by=by, acknowledged_at=at, ack_note=note,
                next_escalation_at=None))
            return done.rowcount == 1

    def record_delivery(self, alert_id: uuid.UUID, level: int, channel: str, at: datetime,
                        outcome: str, reason: str | None = None) -> None:
        with guarded("recording the delivery"), self.engine.begin() as conn:
            conn.execute(insert(alert_delivery), {
                "alert_id": alert_id, "level": level, "channel": channel, "at": at,
                "outcome": outcome, "reason": reason})

    def deliveries(self, alert_id: uuid.UUID) -> list[Row]:
        q = select(alert_delivery).where(alert_delivery.c.alert_id == alert_id).order_by(
            alert_delivery.c.id)
        with guarded("reading deliveries"), self.engine.connect() as conn:
            return list(conn.execute(q))

    # -- facts the rules look up -------------------------------------------------------------------
    def sites_of(self, patient_id: uuid.UUID) -> frozenset[str]:
        q = select(patient_site.c.finess).where(patient_site.c.patient_id == patient_id)
        with guarded("reading patient sites"), self.engine.connect() as conn:
            return frozenset(r.finess for r in conn.execute(q))

    def known_sites(self) -> list[str]:
        """The lab sites patients' orders were sampled at."""
        q = select(patient_site.c.finess).distinct().order_by(patient_site.c.finess)
        with guarded("reading lab sites"), self.engine.connect() as conn:
            return [r.finess for r in conn.execute(q)]

    def account_sites(self) -> dict[uuid.UUID, str | None]:
        with guarded("reading account sites"), self.engine.connect() as conn:
            return {r.id: r.site for r in conn.execute(select(account.c.id, account.c.site))}

    def decoy_tags(self) -> set[bytes]:
        with guarded("reading decoys"), self.engine.connect() as conn:
            return {bytes(r.tag) for r in conn.execute(select(honeytoken.c.tag))}

    def add_decoys(self, tags: Sequence[tuple[bytes, bytes | None]], at: datetime,
                   by: str) -> None:
        """Record decoys: (tag of the patient id, tag of the monitored contact)."""
        with guarded("recording decoys"), self.engine.begin() as conn:
            conn.execute(insert(honeytoken), [
                {"tag": t, "contact_tag": c, "created_at": at, "created_by": by}
                for t, c in tags])

    def decoy_of_contact(self, contact_tag: bytes) -> bytes | None:
        """The patient tag of the decoy whose contact has this tag."""
        q = select(honeytoken.c.tag).where(honeytoken.c.contact_tag == contact_tag)
        with guarded("reading decoys"), self.engine.connect() as conn:
            found = conn.execute(q).first()
        return bytes(found.tag) if found is not None else None

    # -- automatic response ------------------------------------------------------------------------
    def lock(self, account_id: uuid.UUID, now: datetime) -> bool:
        """Lock an active account: sessions and tokens revoked in the same transaction."""
        with guarded("locking the account"), self.engine.begin() as conn:
            done = conn.execute(update(account).where(account.c.id == account_id,
                                                      account.c.status == "active").values(
                status="locked", locked_at=now, unlock_requests=None))
            _revoke_all(conn, account_id, now)
            return done.rowcount == 1

    def require_step_up(self, account_id: uuid.UUID, now: datetime) -> None:
        with guarded("asking for a second factor"), self.engine.begin() as conn:
            conn.execute(update(account).where(account.c.id == account_id)
                         .values(step_up_after=now))

    def revoke_token(self, token_id: uuid.UUID, now: datetime) -> bool:
        with guarded("revoking the token"), self.engine.begin() as conn:
            done = conn.execute(update(api_token).where(api_token.c.id == token_id,
                                                        api_token.c.revoked_at.is_(None))
                                .values(revoked_at=now))
            return done.rowcount == 1

    def account_row(self, account_id: uuid.UUID) -> Row | None:
        with guarded("reading the account"), self.engine.connect() as conn:
            return conn.execute(select(account.c.id, account.c.status, account.c.roles,
                                       account.c.locked_at, account.c.unlock_requests)
                                .where(account.c.id == account_id)).first()

    def unlock_request(self, account_id: uuid.UUID, requests: str, unlock: bool,
                       now: datetime) -> bool:
        """Record the unlock requests; with `unlock`, the account is active again and its next
        call needs a fresh second factor."""
        values: dict[str, Any] = {"unlock_requests": requests}
        if unlock:
            values.update(status="active", locked_at=None, unlock_requests=None,
                          step_up_after=now)
        with guarded("unlocking the account"), self.engine.begin() as conn:
            done = conn.execute(update(account).where(account.c.id == account_id,
                                                      account.c.status == "locked")
                                .values(**values))
            return done.rowcount == 1


def evidence_json(evidence: dict[str, Any]) -> str:
    return json.dumps(evidence, sort_keys=True, default=str)


__all__ = ["AlertStore", "evidence_json"]
