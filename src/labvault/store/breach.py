"""Queries of breach response: incidents, their scopes, and the audit events a scope reads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Row, func, insert, select

from labvault.store.engine import guarded
from labvault.store.tables import (
    audit_event,
    comment,
    import_unit,
    incident,
    incident_scope,
    migration,
    order_provenance,
    quarantine,
    result,
)


class BreachStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_incident(self, row: dict[str, Any]) -> None:
        with guarded("recording the incident"), self.engine.begin() as conn:
            conn.execute(insert(incident), row)

    def incident(self, incident_id: uuid.UUID) -> Row | None:
        with guarded("reading the incident"), self.engine.connect() as conn:
            return conn.execute(select(incident).where(incident.c.id == incident_id)).first()

    def incidents(self) -> list[Row]:
        with guarded("listing incidents"), self.engine.connect() as conn:
            return list(conn.execute(select(incident).order_by(incident.c.opened_at)))

    def insert_scope(self, row: dict[str, Any]) -> int:
        with guarded("recording the scope"), self.engine.begin() as conn:
            return conn.execute(insert(incident_scope), row).inserted_primary_key[0]

    def scopes(self, incident_id: uuid.UUID) -> list[Row]:
        q = select(incident_scope).where(incident_scope.c.incident_id == incident_id).order_by(
            incident_scope.c.id)
        with guarded("reading scopes"), self.engine.connect() as conn:
            return list(conn.execute(q))

    def head_seq(self) -> tuple[int, bytes]:
        """The last stored event's position and chain hash."""
        q = select(audit_event.c.seq, audit_event.c.hash).where(
            audit_event.c.seq.is_not(None)).order_by(audit_event.c.seq.desc()).limit(1)
        with guarded("reading the audit head"), self.engine.connect() as conn:
            found = conn.execute(q).first()
        return (found.seq, bytes(found.hash)) if found is not None else (0, b"")

    def hash_at(self, seq: int) -> bytes:
        q = select(audit_event.c.hash).where(audit_event.c.seq == seq)
        with guarded("reading the audit log"), self.engine.connect() as conn:
            found = conn.execute(q).scalar_one_or_none()
        return bytes(found) if found is not None else b""

    def events(self, *, up_to_seq: int, actions: Sequence[str], since: datetime | None,
               until: datetime | None, actor: str | None,
               yield_per: int = 20_000) -> Iterator[Row]:
        """Allowed events of the given actions up to a position, in order; `actor` matches an
        actor and its tokens (``account:<id>`` and ``account:<id>/token:…``)."""
        e = audit_event.c
        q = select(e.seq, e.at, e.actor, e.source, e.action, e.patient_ids, e.categories).where(
            e.seq <= up_to_seq, e.action.in_(list(actions)), e.outcome == "allowed")
        if since is not None:  # compared in UTC: SQLite stores times without their offset
            q = q.where(e.at >= since.astimezone(UTC))
        if until is not None:
            q = q.where(e.at < until.astimezone(UTC))
        if actor is not None:
            q = q.where((e.actor == actor) | e.actor.startswith(actor + "/", autoescape=True))
        q = q.order_by(e.seq)
        with guarded("reading the audit log"), self.engine.connect() as conn:
            yield from conn.execution_options(yield_per=yield_per).execute(q)

    def migration_exists(self, migration_id: uuid.UUID) -> bool:
        q = select(migration.c.id).where(migration.c.id == migration_id)
        with guarded("reading migrations"), self.engine.connect() as conn:
            return conn.execute(q).first() is not None

    def staged_patients(self, migration_id: uuid.UUID) -> list[uuid.UUID]:
        """Patients stored from a migration's staged units (each once)."""
        q = select(import_unit.c.patient_id).where(
            import_unit.c.migration_id == migration_id,
            import_unit.c.patient_id.is_not(None)).distinct()
        with guarded("reading import units"), self.engine.connect() as conn:
            return sorted(conn.execute(q).scalars())

    def quarantined(self, migration_id: uuid.UUID) -> int:
        q = select(func.count()).select_from(quarantine).where(
            quarantine.c.migration_id == migration_id)
        with guarded("reading the quarantine"), self.engine.connect() as conn:
            return conn.execute(q).scalar_one()

    def finding_rows(self, patient_ids: Sequence[uuid.UUID],
                     migration_id: uuid.UUID | None = None) -> Iterator[tuple[str, Row]]:
        """("results" | "comments", row) of the given patients, with what opens their sealed
        findings (never their text); only rows of orders a migration stored when it is given."""
        r, c = result.c, comment.c
        queries = [
            ("results", select(r.id, r.patient_id, r.order_id, r.position, r.created_at,
                               r.findings).where(r.patient_id.in_(patient_ids))),
            ("comments", select(c.id, c.patient_id, c.order_id, c.result_id, c.position,
                                c.created_at, c.findings).where(c.patient_id.in_(patient_ids)))]
        with guarded("reading findings"), self.engine.connect() as conn:
            for kind, q in queries:
                if migration_id is not None:
                    table = result if kind == "results" else comment
                    q = q.where(table.c.order_id.in_(
                        select(order_provenance.c.order_id).where(
                            order_provenance.c.migration_id == migration_id)))
                for row in conn.execute(q):
                    yield kind, row


__all__ = ["BreachStore"]
