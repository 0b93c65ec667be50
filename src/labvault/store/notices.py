"""Queries of the notices to people (`breach_notice`) and of the contact columns they need.

A notice row holds internal ids, its channel, the keyed hash of its verification code, its
state (``queued`` until it is ``done``), how many attempts were made and when the next one is
due, and the scope an incident notice speaks from; the outcome (provider reference, last
error) is sealed by the caller. `claim` is a
compare-and-set on the attempt count: two workers never send the same notice at once; `record`
writes an attempt's outcome only while the attempt still holds its claim. An incident has at
most one notice per patient and channel, and one update per patient, channel and scope (unique
indexes): `insert` skips what is already there, so two people queueing at once queue each
notice once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from labvault.store.engine import guarded
from labvault.store.tables import breach_notice, patient

QUEUED, DONE = "queued", "done"
INCIDENT_KINDS = ("incident", "incident-update")


class NoticeStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record notices; those recorded (an incident's notice, or an update from a scope, to
        a patient on a channel that already has one is not: the first stays)."""
        if not rows:
            return []
        n = breach_notice.c
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        # No conflict target: either partial unique index (first notice, update) may apply.
        stmt = dialect.insert(breach_notice).on_conflict_do_nothing().returning(n.id)
        with guarded("recording notices"), self.engine.begin() as conn:
            kept = {r.id for r in conn.execute(stmt, list(rows))}
        return [r for r in rows if r["id"] in kept]

    def pairs(self, incident_id: uuid.UUID) -> set[tuple[uuid.UUID, str]]:
        """(patient, channel) of the notices already recorded for an incident."""
        n = breach_notice.c
        q = select(n.patient_id, n.channel).where(n.incident_id == incident_id,
                                                  n.kind == "incident")
        with guarded("reading notices"), self.engine.connect() as conn:
            return {(r.patient_id, r.channel) for r in conn.execute(q)}

    def _due(self, now: datetime, channels: Sequence[str]) -> Any:
        n = breach_notice.c
        return and_(n.state == QUEUED, n.channel.in_(list(channels)),
                    or_(n.next_attempt_at.is_(None), n.next_attempt_at <= now))

    def due(self, now: datetime, channels: Sequence[str], limit: int | None = None) -> list[Row]:
        """Queued notices of the given channels whose next attempt is due, oldest first."""
        n = breach_notice.c
        q = select(breach_notice).where(self._due(now, channels)).order_by(
            n.next_attempt_at, n.created_at, n.id)
        if limit is not None:
            q = q.limit(limit)
        with guarded("reading the notice queue"), self.engine.connect() as conn:
            return list(conn.execute(q))

    def untaken(self, rows: Sequence[Row], now: datetime) -> list[Row]:
        """Those of `rows` (read from `due`) still due and unclaimed since: no other worker
        made an attempt of them in between."""
        if not rows:
            return []
        n = breach_notice.c
        q = select(n.id, n.attempts).where(n.id.in_([r.id for r in rows]), n.state == QUEUED,
                                           or_(n.next_attempt_at.is_(None),
                                               n.next_attempt_at <= now))
        with guarded("reading the notice queue"), self.engine.connect() as conn:
            still = {(r.id, r.attempts) for r in conn.execute(q)}
        return [r for r in rows if (r.id, r.attempts) in still]

    def count_due(self, now: datetime, channels: Sequence[str]) -> int:
        q = select(func.count()).select_from(breach_notice).where(self._due(now, channels))
        with guarded("reading the notice queue"), self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def claim(self, notice_id: uuid.UUID, attempts: int, until: datetime) -> bool:
        """Start attempt ``attempts + 1`` of a queued notice and hold it until `until` (a
        worker that dies releases it then); False if another worker took it first."""
        n = breach_notice.c
        with guarded("claiming a notice"), self.engine.begin() as conn:
            done = conn.execute(update(breach_notice).where(
                n.id == notice_id, n.state == QUEUED, n.attempts == attempts,
            ).values(next_attempt_at=until, attempts=attempts + 1))
            return done.rowcount == 1

    def record(self, notice_id: uuid.UUID, attempts: int, **values: Any) -> bool:
        """Write the outcome of attempt number `attempts` (the claim's); False, and nothing
        written, if the notice was claimed again since (its lease ran out) or is done."""
        n = breach_notice.c
        with guarded("recording a delivery"), self.engine.begin() as conn:
            done = conn.execute(update(breach_notice).where(
                n.id == notice_id, n.state == QUEUED, n.attempts == attempts).values(**values))
            return done.rowcount == 1

    def by_tag(self, tag: bytes) -> Row | None:
        q = select(breach_notice.c.kind, breach_notice.c.incident_id, breach_notice.c.channel,
                   breach_notice.c.created_at).where(breach_notice.c.code_tag == tag)
        with guarded("reading notices"), self.engine.connect() as conn:
            return conn.execute(q).first()

    def of_incident(self, incident_id: uuid.UUID) -> list[Row]:
        """An incident's notices and updates (`kind` says which)."""
        n = breach_notice.c
        q = select(n.id, n.kind, n.patient_id, n.channel, n.scope_id, n.state, n.attempts,
                   n.created_at, n.delivery).where(
            n.incident_id == incident_id, n.kind.in_(INCIDENT_KINDS))
        with guarded("reading notices"), self.engine.connect() as conn:
            return list(conn.execute(q))

    def delete_letters(self, notice_ids: Sequence[uuid.UUID]) -> int:
        """Forget letters recorded for a document that never reached paper."""
        if not notice_ids:
            return 0
        n = breach_notice.c
        with guarded("withdrawing letters"), self.engine.begin() as conn:
            return conn.execute(delete(breach_notice).where(
                n.id.in_(list(notice_ids)), n.channel == "letter")).rowcount

    def confirm_letters(self, notice_ids: Sequence[uuid.UUID]) -> int:
        """Letters recorded for a document now on disk: done."""
        if not notice_ids:
            return 0
        n = breach_notice.c
        with guarded("confirming letters"), self.engine.begin() as conn:
            return conn.execute(update(breach_notice).where(
                n.id.in_(list(notice_ids)), n.channel == "letter", n.state == QUEUED,
            ).values(state=DONE)).rowcount

    def postal(self, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Row]:
        """The sealed name and postal address of patients (and whether they were erased),
        to address a letter."""
        p = patient.c
        q = select(p.id, p.erased_at, p.last_name, p.first_names, p.address).where(
            p.id.in_(list(patient_ids)))
        with guarded("reading addresses"), self.engine.connect() as conn:
            return {r.id: r for r in conn.execute(q)}

    def contacts(self, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Row]:
        """The sealed e-mail and phone columns of patients (and whether they were erased):
        only these two fields are opened to address a notice."""
        p = patient.c
        q = select(p.id, p.erased_at, p.email, p.phone).where(p.id.in_(list(patient_ids)))
        with guarded("reading contacts"), self.engine.connect() as conn:
            return {r.id: r for r in conn.execute(q)}


__all__ = ["DONE", "INCIDENT_KINDS", "QUEUED", "NoticeStore"]
