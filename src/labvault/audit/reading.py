"""The read side of the audit log: stored events streamed as chained events (bodies rebuilt
from their columns), signed checkpoints, events outside the chain, and the patient index
(``audit_event_patient``) compared with the events' chained patient ids by the database.

`ChainReading` is mixed into `labvault.audit.log.ChainedAuditLog`, which provides the engine,
its dialect and the statements.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

from sqlalchemy import Engine, func, select

from labvault.audit.chain import ChainedEvent, Checkpoint
from labvault.audit.rows import FIELDS, LoggedEvent, as_bytes, event_of
from labvault.audit.sink import AuditEvent
from labvault.store.tables import audit_checkpoint, audit_event, audit_event_patient


class ChainReading:
    """The reading methods of `ChainedAuditLog`."""

    engine: Engine
    body_sql: str
    _dialect: str
    _errors: tuple[type[BaseException], ...]
    _sql: dict[str, str]

    def _param(self, sql: str) -> str:
        return sql if self._dialect == "sqlite" else sql.replace("?", "%s")

    def iter_chained(self, start: int = 1, end: int | None = None,
                     batch: int = 20_000) -> Iterator[ChainedEvent]:
        """The stored events from `start` to `end` (inclusive) in chain order, bodies rebuilt
        from their columns. Streams through the driver's cursor."""
        last = end if end is not None else 2**62
        conn = self.engine.raw_connection()
        try:
            if self._dialect == "sqlite":
                cur = conn.cursor()
            else:  # a server-side cursor: rows come in batches, not all at once
                cur = conn.cursor(name=f"audit_stream_{uuid.uuid4().hex[:12]}")
                cur.itersize = batch
            cur.execute(self._sql["stream"].format(body=self.body_sql), (start, last))
            ce, fields = ChainedEvent, len(FIELDS)
            while rows := cur.fetchmany(batch):
                for seq, body, h, t in rows:
                    if type(body) is not bytes or body.count(b"\x1f") != fields:
                        body = b""  # a value holding a separator, or no value: not as written
                    if type(h) is not bytes or type(t) is not bytes:
                        h, t = as_bytes(h), as_bytes(t)
                    yield ce(seq, body, h, t)
        finally:
            conn.close()  # the pool's reset ends the transaction (and a server-side cursor)

    def checkpoints(self, start: int = 1, end: int | None = None) -> list[Checkpoint]:
        q = select(audit_checkpoint).where(audit_checkpoint.c.last >= start)
        if end is not None:
            q = q.where(audit_checkpoint.c.last <= end)
        with self.engine.connect() as conn:
            return [Checkpoint(r.first, r.last, r.last_hash, r.root, r.signature)
                    for r in conn.execute(q.order_by(audit_checkpoint.c.last))]

    def stored_hash(self, seq: int) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(select(audit_event.c.hash).where(audit_event.c.seq == seq)).scalar()

    def stray(self, after: int) -> tuple[int, bool] | None:
        """The first stored event outside the chain: its place, and whether it has no position
        at all (else it lies beyond `after`); None if there is none."""
        with self.engine.connect() as conn:
            beyond = conn.execute(select(func.min(audit_event.c.seq))
                                  .where(audit_event.c.seq > after)).scalar()
            loose = conn.execute(select(func.min(audit_event.c.id))
                                 .where(audit_event.c.seq.is_(None))).scalar()
            if loose is not None:
                before = conn.execute(select(func.max(audit_event.c.seq))
                                      .where(audit_event.c.id < loose)).scalar()
                return (before or 0) + 1, True
        return None if beyond is None else (after + 1, False)

    def index_agrees(self, start: int, end: int) -> bool:
        """Whether the patient index (``audit_event_patient``) of events `start` to `end` is
        exactly the chained ``patient_ids`` of those events, checked by counts in the database
        (no row per event comes back): the index rows in the range, those whose event names
        their patient, and the ids the events name. The three agree only when the two sets are
        equal (an event naming one patient twice makes them differ: `index_mismatch` then
        decides). Meaningful once the events' columns are verified; False if the database could
        not compute it (a column that is not as written)."""
        sql = INDEX_SQL[self._dialect]
        try:
            with self.engine.connect() as conn:
                rows, matched = conn.exec_driver_sql(self._param(sql["rows"]), (start, end)).one()
                named = conn.exec_driver_sql(self._param(sql["named"]), (start, end)).scalar()
        except self._errors:
            return False
        return rows == matched == (named or 0)

    def index_mismatch(self, start: int, end: int) -> int | None:
        """The first event from `start` to `end` whose index rows differ from its chained
        ``patient_ids`` (a row missing, extra or altered), or None. For verified events."""
        sql = INDEX_SQL[self._dialect]
        with self.engine.connect() as conn:
            found = [conn.exec_driver_sql(self._param(sql[q]), (start, end)).scalar()
                     for q in ("missing", "extra")]
        found = [seq for seq in found if seq is not None]
        return min(found) if found else None

    def logged(self, *, since_seq: int = 0, limit: int | None = None,
               patient_id: uuid.UUID | None = None, newest_first: bool = False,
               yield_per: int = 5_000) -> Iterator[LoggedEvent]:
        """Stored events after `since_seq` (optionally only those naming a patient)."""
        e = audit_event.c
        q = select(audit_event).where(e.seq > since_seq)
        if patient_id is not None:
            q = q.join(audit_event_patient, audit_event_patient.c.seq == e.seq).where(
                audit_event_patient.c.patient_id == patient_id)
        q = q.order_by(e.seq.desc() if newest_first else e.seq)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            for r in conn.execution_options(yield_per=yield_per).execute(q):
                yield LoggedEvent(r.seq, event_of(r), r.hash or b"", r.tag or b"")

    def events(self, action: str | None = None) -> list[AuditEvent]:
        """Every stored event in order (tests, small logs)."""
        return [le.event for le in self.logged() if action is None or le.event.action == action]

    def recovered_ids(self) -> set[str]:
        """Journal ids of events already recovered into the chain from a file copy."""
        q = select(audit_event.c.detail).where(audit_event.c.detail.like('%"recovered_from"%'))
        with self.engine.connect() as conn:
            return {str(json.loads(d).get("recovered_from")) for (d,) in conn.execute(q)}


# The patient index against the events' chained patient ids (a JSON array of hex ids).
INDEX_SQL = {
    "sqlite": {
        "rows": "SELECT count(*), count(e.seq) FROM audit_event_patient p LEFT JOIN audit_event e "
                "ON e.seq = p.seq AND instr(e.patient_ids, '\"' || p.patient_id || '\"') > 0 "
                "WHERE p.seq BETWEEN ? AND ?",
        "named": "SELECT sum(json_array_length(patient_ids)) FROM audit_event "
                 "WHERE seq BETWEEN ? AND ?",
        "missing": "SELECT min(e.seq) FROM audit_event e, json_each(e.patient_ids) j "
                   "WHERE e.seq BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM "
                   "audit_event_patient p WHERE p.patient_id = j.value AND p.seq = e.seq)",
        "extra": "SELECT min(p.seq) FROM audit_event_patient p WHERE p.seq BETWEEN ? AND ? "
                 "AND NOT EXISTS (SELECT 1 FROM audit_event e, json_each(e.patient_ids) j "
                 "WHERE e.seq = p.seq AND j.value = p.patient_id)",
    },
    "postgresql": {
        "rows": "SELECT count(*), count(e.seq) FROM audit_event_patient p LEFT JOIN audit_event e "
                "ON e.seq = p.seq AND strpos(e.patient_ids, '\"' || "
                "replace(p.patient_id::text, '-', '') || '\"') > 0 WHERE p.seq BETWEEN ? AND ?",
        "named": "SELECT sum(json_array_length(patient_ids::json)) FROM audit_event "
                 "WHERE seq BETWEEN ? AND ?",
        "missing": "SELECT min(e.seq) FROM audit_event e, "
                   "json_array_elements_text(e.patient_ids::json) j(value) "
                   "WHERE e.seq BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM "
                   "audit_event_patient p WHERE p.patient_id = j.value::uuid AND p.seq = e.seq)",
        "extra": "SELECT min(p.seq) FROM audit_event_patient p WHERE p.seq BETWEEN ? AND ? "
                 "AND NOT EXISTS (SELECT 1 FROM audit_event e, "
                 "json_array_elements_text(e.patient_ids::json) j(value) "
                 "WHERE e.seq = p.seq AND j.value = replace(p.patient_id::text, '-', ''))",
    },
}

__all__ = ["INDEX_SQL", "ChainReading"]
