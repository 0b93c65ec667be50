"""The audit hook of the vault: every call appends an event before any data moves.

An event carries who, from where, why, which action, on which internal patient ids, and the
outcome — never a personal value. `AuditSink.append` raises `AuditUnavailable` when the event
cannot be written, and the vault then refuses the call (fail closed).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import SQLAlchemyError

from labvault.errors import AuditUnavailable
from labvault.store.tables import audit_event


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: datetime
    actor: str
    role: str
    source: str
    purpose: str
    action: str  # source:subject:action, e.g. vault:patient:read
    outcome: str  # allowed | denied
    patient_ids: tuple[uuid.UUID, ...] = ()
    detail: dict[str, object] = field(default_factory=dict)
    request_id: str = ""
    categories: tuple[str, ...] = ()  # field categories touched: identity, results...


class AuditSink(Protocol):
    def append(self, event: AuditEvent) -> None: ...


class DatabaseAuditSink:
    """Appends events to the ``audit_event`` table, one committed transaction per event."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def append(self, event: AuditEvent) -> None:
        row = {
            "at": event.at, "actor": event.actor, "role": event.role, "source": event.source,
            "purpose": event.purpose, "action": event.action, "outcome": event.outcome,
            "patient_ids": json.dumps([p.hex for p in event.patient_ids]),
            "detail": json.dumps(event.detail, sort_keys=True) if event.detail else None,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(audit_event), row)
        except SQLAlchemyError:
            raise AuditUnavailable("the audit event could not be written") from None

    def events(self, action: str | None = None) -> list[AuditEvent]:
        q = select(audit_event).order_by(audit_event.c.id)
        if action:
            q = q.where(audit_event.c.action == action)
        with self._engine.connect() as conn:
            return [
                AuditEvent(r.at, r.actor, r.role, r.source, r.purpose, r.action, r.outcome,
                           tuple(uuid.UUID(h) for h in json.loads(r.patient_ids)),
                           json.loads(r.detail) if r.detail else {})
                for r in conn.execute(q)
            ]
