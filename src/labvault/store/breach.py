"""Queries of breach response: incidents, their scopes, and the audit events a scope reads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Row, func, insert, select

from labvault.crypto.envelope import FieldCipher
from labvault.crypto.signing import InvalidSignature
from labvault.errors import InvalidCiphertext
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


@dataclass(frozen=True, slots=True)
class StoredScope:
    """A stored scope with its document opened (the canonical JSON text that was signed)."""

    id: int
    incident_id: uuid.UUID
    computed_at: datetime
    computed_by: str
    selectors: str
    document: str
    digest: bytes
    signature: bytes
    key_id: str
    patients: int


class BreachStore:
    """`cipher` seals scope documents (per patient id they name the data, special categories
    included, an incident exposed), bound to the incident and the document's digest."""

    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self.engine = engine
        self._cipher = cipher

    def __repr__(self) -> str:
        return "BreachStore()"

    @staticmethod
    def _ref(incident_id: uuid.UUID, digest: bytes) -> str:
        return f"{incident_id.hex}/{bytes(digest).hex()}"

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
        """Store a scope; ``document`` is its canonical JSON text, stored sealed."""
        sealed = self._cipher.seal("incident_scope", "document",
                                   self._ref(row["incident_id"], row["digest"]),
                                   row["document"].encode("utf-8"))
        with guarded("recording the scope"), self.engine.begin() as conn:
            return conn.execute(insert(incident_scope),
                                {**row, "document": sealed}).inserted_primary_key[0]

    def scopes(self, incident_id: uuid.UUID) -> list[StoredScope]:
        q = select(incident_scope).where(incident_scope.c.incident_id == incident_id).order_by(
            incident_scope.c.id)
        with guarded("reading scopes"), self.engine.connect() as conn:
            return [self._opened(r) for r in conn.execute(q)]

    def scope(self, scope_id: int) -> StoredScope | None:
        q = select(incident_scope).where(incident_scope.c.id == scope_id)
        with guarded("reading the scope"), self.engine.connect() as conn:
            row = conn.execute(q).first()
        return self._opened(row) if row is not None else None

    def latest_scopes(self) -> list[tuple[uuid.UUID, datetime, int]]:
        """(incident id, detected at, latest scope id) of every incident with a scope, in order
        of detection."""
        latest = (select(incident_scope.c.incident_id,
                         func.max(incident_scope.c.id).label("scope_id"))
                  .group_by(incident_scope.c.incident_id).subquery())
        q = (select(incident.c.id, incident.c.detected_at, latest.c.scope_id)
             .join(latest, latest.c.incident_id == incident.c.id)
             .order_by(incident.c.detected_at, incident.c.id))
        with guarded("reading incidents"), self.engine.connect() as conn:
            return [(r.id, r.detected_at, r.scope_id) for r in conn.execute(q)]

    def _opened(self, row: Row) -> StoredScope:
        """The row with its document opened. A document that does not open (altered, moved to
        another incident or digest, or stored before scopes were sealed) raises
        `InvalidSignature`, as a document that does not match its signature does."""
        try:
            text = self._cipher.open("incident_scope", "document",
                                     self._ref(row.incident_id, row.digest), row.document)
        except InvalidCiphertext:
            raise InvalidSignature(f"scope {row.id} does not open: altered, moved, or stored "
                                   "before scopes were sealed (compute it again)") from None
        return StoredScope(row.id, row.incident_id, row.computed_at, row.computed_by,
                           row.selectors, text.decode("utf-8"), bytes(row.digest),
                           bytes(row.signature), row.key_id, row.patients)

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


__all__ = ["BreachStore", "StoredScope"]
