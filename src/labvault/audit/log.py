"""The audit log in the data database, every event chained (`labvault.audit.chain`) as written.

An event's chained body is derived from its stored columns (time, actor, role, source, purpose,
action, outcome, patient ids, detail, request id, categories: see `BODY_SQL`), so `verify`
recomputes it from the table and an edit of any column breaks the chain at that event.

`append` is one transaction: it takes the chain head (the ``audit_head`` row, locked by the
``UPDATE`` that opens the transaction, on SQLite and PostgreSQL alike, so writers in several
processes queue and never fork the chain), inserts the event with its position, hash and tag,
indexes the patient ids it names, advances the head and, every ``CHECKPOINT`` events, signs a
checkpoint over the hashes read back from the table. The epoch key is stored wrapped by the
master key; it is rewrapped only when its epoch closes, overwriting the previous one. Any
failure rolls back everything and raises `AuditUnavailable`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from labvault.audit.chain import (
    CHECKPOINT,
    EPOCH,
    GENESIS,
    ChainedEvent,
    ChainWriter,
    Checkpoint,
    epoch_of,
)
from labvault.audit.sink import AuditEvent
from labvault.clock import Clock
from labvault.crypto.keys import KeyProvider
from labvault.crypto.signing import Signer
from labvault.errors import AuditUnavailable, LabvaultError
from labvault.secret import Secret
from labvault.store.tables import audit_checkpoint, audit_event, audit_event_patient, audit_head

SEP, NULL = "\x1f", "\x1e"  # field separator; an absent value. Never inside a stored value.
BODY_VERSION = "labvault/audit/body/v1"
FIELDS = ("at", "actor", "role", "source", "purpose", "action", "outcome", "patient_ids",
          "detail", "request_id", "categories")
NULLABLE = ("detail", "request_id", "categories")
LIMITS = {"actor": 200, "role": 50, "source": 200, "purpose": 200, "action": 100,
          "outcome": 20, "request_id": 64, "categories": 200}
EPOCH_KEY_CONTEXT = b"labvault/audit/epoch-key/v1|"


def _body_sql(dialect: str) -> str:
    """The chained body, built by the database from the stored columns."""
    if dialect == "sqlite":
        at, sep, null, wrap = "at", "char(31)", "char(30)", "CAST({} AS BLOB)"
    else:
        at = "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        sep, null, wrap = "chr(31)", "chr(30)", "convert_to({}, 'UTF8')"
    parts = [f"'{BODY_VERSION}'"] + [
        at if f == "at" else f"coalesce({f}, {null})" if f in NULLABLE else f for f in FIELDS]
    return wrap.format(f" || {sep} || ".join(parts))


def body_of(values: dict[str, str | None]) -> bytes:
    """The same body, from the column values about to be stored."""
    return SEP.join([BODY_VERSION, *(NULL if values[f] is None else values[f]
                                     for f in FIELDS)]).encode("utf-8")


_CONTROL = re.compile("[\x00-\x1f\x7f]")  # the separators, line breaks, escapes, DEL


def _clean(value: str, limit: int | None = None) -> str:
    """A value as stored and chained: every control character (below 0x20, and DEL) becomes
    "?", so no stored value holds a separator or can break a line of an export."""
    if _CONTROL.search(value) is not None:
        value = _CONTROL.sub("?", value)
    return value[:limit] if limit is not None and len(value) > limit else value


_detail_json = json.JSONEncoder(sort_keys=True, default=str).encode


def utc_text(at: datetime) -> str:
    """A time as stored on SQLite and chained: UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(" ", "microseconds")


def columns_of(event: AuditEvent) -> dict[str, str | None]:
    """An event's column values as stored (text); the time in UTC."""
    return {
        "at": utc_text(event.at),
        "actor": _clean(event.actor, 200), "role": _clean(event.role, 50),
        "source": _clean(event.source, 200), "purpose": _clean(event.purpose, 200),
        "action": _clean(event.action, 100), "outcome": _clean(event.outcome, 20),
        "patient_ids": '["' + '", "'.join([p.hex for p in event.patient_ids]) + '"]'
        if event.patient_ids else "[]",
        "detail": _detail_json(event.detail) if event.detail else None,
        "request_id": _clean(event.request_id, 64) if event.request_id else None,
        "categories": _clean(",".join(event.categories), 200) if event.categories else None,
    }


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    last_hash: bytes
    kek_version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as stored: its position in the chain, the event, its hash and tag."""

    seq: int
    event: AuditEvent
    hash: bytes
    tag: bytes


def _epoch_context(epoch: int) -> bytes:
    return EPOCH_KEY_CONTEXT + str(epoch).encode()


def _head_epoch(seq: int) -> int:
    return epoch_of(seq) if seq > 0 else 0


class ChainedAuditLog:
    """The audit sink of the vault: the ``audit_event`` table as a hash chain."""

    def __init__(self, engine: Engine, keys: KeyProvider, signer: Signer, clock: Clock) -> None:
        self.engine = engine
        self._keys = keys
        self._signer = signer
        self._clock = clock
        self._dialect = engine.dialect.name
        self._errors = (engine.dialect.loaded_dbapi.Error, SQLAlchemyError, LabvaultError,
                        OSError, ValueError, TypeError)
        self._integrity = engine.dialect.loaded_dbapi.IntegrityError
        self._lock = threading.Lock()
        self._conn: Any = None  # kept between appends; dropped on any failure
        self._seen: tuple[int, bytes, Secret[bytes]] | None = None  # the head as left here
        self._key_cache: tuple[int, bytes, Secret[bytes]] | None = None
        self._sql = {name: self._param(sql) for name, sql in _SQL.items()}
        self.body_sql = _body_sql(self._dialect)

    def __repr__(self) -> str:
        return f"ChainedAuditLog(dialect={self._dialect})"

    def _param(self, sql: str) -> str:
        return sql if self._dialect == "sqlite" else sql.replace("?", "%s")

    def _ts(self, at: datetime) -> Any:
        if self._dialect == "sqlite":
            return utc_text(at)
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)

    def _pid(self, hex_id: str) -> Any:
        return hex_id if self._dialect == "sqlite" else uuid.UUID(hex_id)

    # -- initialisation ------------------------------------------------------------------------
    def head(self) -> Head | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        if row is None:
            return None
        at = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
        return Head(row.seq, row.last_hash, row.kek_version, at)

    def initialise(self, k0: Secret[bytes] | None = None) -> Secret[bytes] | None:
        """Create the head with a fresh random k0 (or the one given) and return it; None if the
        chain already exists. Events stored before the chain existed are chained now, in the
        order they were written."""
        key = k0 if k0 is not None else Secret(os.urandom(32))
        version, wrapped = self._keys.wrap(key, _epoch_context(0))
        now = self._clock.now()
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                cur.execute(self._sql["head_insert"], (0, GENESIS, version, wrapped, self._ts(now)))
            except self._integrity:
                conn.rollback()
                return None  # another process initialised it
            cur.execute(self._sql["unsequenced"])
            legacy = cur.fetchall()
            if legacy:
                self._chain_legacy(cur, key, legacy, now)
            conn.commit()
        except self._errors:
            conn.rollback()
            raise AuditUnavailable("the audit chain could not be initialised") from None
        finally:
            conn.close()
        return key

    def _chain_legacy(self, cur: Any, key: Secret[bytes], rows: list[Any], now: datetime) -> None:
        writer = ChainWriter(key, signer=self._signer)
        for row_id, *_ in rows:
            cur.execute(self._sql["legacy_body"].format(body=self.body_sql), (row_id,))
            body = bytes(cur.fetchone()[0])
            event, mark = writer.append(body)
            cur.execute(self._sql["legacy_chain"], (event.seq, event.hash, event.tag, row_id))
            cur.execute(self._sql["legacy_ids"], (row_id,))
            ids = json.loads(cur.fetchone()[0] or "[]")
            if ids:
                cur.executemany(self._sql["index"], [(self._pid(h), event.seq) for h in set(ids)])
            if mark is not None:
                self._store_checkpoint(cur, mark, now)
        version, wrapped = self._keys.wrap(writer.key, _epoch_context(_head_epoch(writer.seq)))
        cur.execute(self._sql["head_rekey"], (writer.seq, writer.last_hash, version, wrapped,
                                              self._ts(now)))

    # -- appending -----------------------------------------------------------------------------
    def append(self, event: AuditEvent) -> LoggedEvent:
        """Chain and store one event (one transaction); `AuditUnavailable` on any failure."""
        return self.append_many([event])[0]

    def append_many(self, events: Iterable[AuditEvent]) -> list[LoggedEvent]:
        """Chain and store events in one transaction (recovery, tests, benchmarks)."""
        batch = list(events)
        with self._lock:
            conn = self._conn or self.engine.raw_connection()
            self._conn = None
            try:
                out, seen = self._append(conn.cursor(), batch)
                conn.commit()
            except self._errors:
                self._seen = None
                try:
                    conn.rollback()
                except self._errors:
                    conn.invalidate()
                conn.close()
                raise AuditUnavailable("the audit event could not be written") from None
            self._seen = seen
            if self._dialect == "sqlite":
                self._conn = conn  # a local file: the connection cannot drop in between
            else:
                conn.close()  # back to the pool, which checks it before the next use
            return out

    def _append(self, cur: Any, events: list[AuditEvent]
                ) -> tuple[list[LoggedEvent], tuple[int, bytes, Secret[bytes]] | None]:
        """Write `events`; return them and the head they leave."""
        if not events:
            return [], self._seen
        now = self._clock.now()
        seen = self._seen
        if seen is not None:
            # The head as this process left it: claim it by advancing it, in the statement that
            # takes the lock; if another writer moved it since, take it the long way below.
            seq0, hash0, key = seen
            last = seq0 + len(events)
            if _head_epoch(last) == _head_epoch(seq0) and seq0 // CHECKPOINT == last // CHECKPOINT:
                writer = ChainWriter(key, seq=seq0, last_hash=hash0)
                rows, index, out = self._rows(cur, writer, events, now)
                cur.execute(self._sql["head_claim"], (last, writer.last_hash, self._ts(now),
                                                      seq0, hash0))
                if cur.rowcount == 1:
                    self._insert(cur, rows, index)
                    return out, (last, writer.last_hash, key)
        return self._append_locked(cur, events, now)

    def _append_locked(self, cur: Any, events: list[AuditEvent], now: datetime
                       ) -> tuple[list[LoggedEvent], tuple[int, bytes, Secret[bytes]]]:
        sql = self._sql
        cur.execute(sql["head_take"], (len(events),))
        row = cur.fetchone()
        if row is None:
            raise AuditUnavailable("the audit chain is not initialised")
        new_last, last_hash, version, wrapped = row
        first = new_last - len(events) + 1
        key = self._epoch_key(version, bytes(wrapped), _head_epoch(first - 1))
        pending: list[bytes] = []
        if (first - 1) // CHECKPOINT != new_last // CHECKPOINT:  # a checkpoint falls here
            cur.execute(sql["hashes"], ((first - 1) // CHECKPOINT * CHECKPOINT + 1, first - 1))
            pending = [bytes(h) for (h,) in cur.fetchall()]
        writer = ChainWriter(key, seq=first - 1, last_hash=bytes(last_hash),
                             signer=self._signer, pending=pending)
        rows, index, out = self._rows(cur, writer, events, now)
        self._insert(cur, rows, index)
        if _head_epoch(new_last) != _head_epoch(first - 1):
            # The epoch closed: the new key replaces the old one, which is gone from here on.
            version, new_wrapped = self._keys.wrap(writer.key,
                                                   _epoch_context(_head_epoch(new_last)))
            cur.execute(sql["head_rekey"], (new_last, writer.last_hash, version, new_wrapped,
                                            self._ts(now)))
            self._key_cache = (version, new_wrapped, writer.key)
        else:
            cur.execute(sql["head_advance"], (writer.last_hash, self._ts(now)))
        return out, (new_last, writer.last_hash, writer.key)

    def _rows(self, cur: Any, writer: ChainWriter, events: list[AuditEvent], now: datetime
              ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, int]], list[LoggedEvent]]:
        out, rows, index = [], [], []
        sqlite = self._dialect == "sqlite"
        for event in events:
            values = columns_of(event)
            chained, mark = writer.append(body_of(values))
            rows.append((values["at"] if sqlite else self._ts(event.at),
                         *(values[f] for f in FIELDS[1:]), chained.seq, chained.hash,
                         chained.tag))
            index.extend((self._pid(p.hex), chained.seq) for p in dict.fromkeys(event.patient_ids))
            out.append(LoggedEvent(chained.seq, event, chained.hash, chained.tag))
            if mark is not None:
                self._store_checkpoint(cur, mark, now)
        return rows, index, out

    def _insert(self, cur: Any, rows: list[tuple[Any, ...]], index: list[tuple[Any, int]]) -> None:
        if len(rows) == 1:
            cur.execute(self._sql["insert"], rows[0])
        else:
            cur.executemany(self._sql["insert"], rows)
        if index:
            cur.executemany(self._sql["index"], index)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _epoch_key(self, version: int, wrapped: bytes, epoch: int) -> Secret[bytes]:
        cached = self._key_cache
        if cached is not None and cached[0] == version and cached[1] == wrapped:
            return cached[2]
        key = self._keys.unwrap(version, wrapped, _epoch_context(epoch))
        self._key_cache = (version, wrapped, key)
        return key

    def _store_checkpoint(self, cur: Any, mark: Checkpoint, now: datetime) -> None:
        cur.execute(self._sql["checkpoint"], (mark.last, mark.first, mark.last_hash, mark.root,
                                              mark.signature, self._signer.key_id,
                                              self._ts(now)))

    def rekey(self) -> None:
        """Rewrap the current epoch key under the active master key version (key rotation:
        the old version may be retired next)."""
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(self._sql["head_take"], (0,))
            row = cur.fetchone()
            if row is not None:
                seq, last_hash, version, wrapped = row
                epoch = _head_epoch(seq)
                key = self._epoch_key(version, bytes(wrapped), epoch)
                new_version, new_wrapped = self._keys.wrap(key, _epoch_context(epoch))
                cur.execute(self._sql["head_rekey"], (seq, bytes(last_hash), new_version,
                                                      new_wrapped, self._ts(self._clock.now())))
                self._key_cache = (new_version, new_wrapped, key)
            conn.commit()
        except self._errors:
            conn.rollback()
            raise AuditUnavailable("the audit epoch key could not be rewrapped") from None
        finally:
            conn.close()

    # -- reading -------------------------------------------------------------------------------
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
                        h, t = _as_bytes(h), _as_bytes(t)
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
        sql = _INDEX_SQL[self._dialect]
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
        sql = _INDEX_SQL[self._dialect]
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
                yield LoggedEvent(r.seq, _event_of(r), r.hash or b"", r.tag or b"")

    def events(self, action: str | None = None) -> list[AuditEvent]:
        """Every stored event in order (tests, small logs)."""
        return [le.event for le in self.logged() if action is None or le.event.action == action]

    def recovered_ids(self) -> set[str]:
        """Journal ids of events already recovered into the chain from a file copy."""
        q = select(audit_event.c.detail).where(audit_event.c.detail.like('%"recovered_from"%'))
        with self.engine.connect() as conn:
            return {str(json.loads(d).get("recovered_from")) for (d,) in conn.execute(q)}


def _as_bytes(value: object) -> bytes:
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""


def _event_of(r: Any) -> AuditEvent:
    at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
    return AuditEvent(at, r.actor, r.role, r.source, r.purpose, r.action, r.outcome,
                      tuple(uuid.UUID(h) for h in json.loads(r.patient_ids)),
                      json.loads(r.detail) if r.detail else {}, r.request_id or "",
                      tuple(r.categories.split(",")) if r.categories else ())


_COLUMNS = ", ".join(FIELDS)
_SQL = {
    "head_insert": "INSERT INTO audit_head (id, seq, last_hash, kek_version, epoch_key, "
                   "updated_at) VALUES (1, ?, ?, ?, ?, ?)",
    "head_take": "UPDATE audit_head SET seq = seq + ? WHERE id = 1 "
                 "RETURNING seq, last_hash, kek_version, epoch_key",
    "head_advance": "UPDATE audit_head SET last_hash = ?, updated_at = ? WHERE id = 1",
    "head_claim": "UPDATE audit_head SET seq = ?, last_hash = ?, updated_at = ? "
                  "WHERE id = 1 AND seq = ? AND last_hash = ?",
    "head_rekey": "UPDATE audit_head SET seq = ?, last_hash = ?, kek_version = ?, epoch_key = ?, "
                  "updated_at = ? WHERE id = 1",
    "hashes": "SELECT hash FROM audit_event WHERE seq BETWEEN ? AND ? ORDER BY seq",
    "insert": f"INSERT INTO audit_event ({_COLUMNS}, seq, hash, tag) "  # noqa: S608 - constant names
              f"VALUES ({', '.join('?' * (len(FIELDS) + 3))})",
    "index": "INSERT INTO audit_event_patient (patient_id, seq) VALUES (?, ?)",
    "checkpoint": "INSERT INTO audit_checkpoint (last, first, last_hash, root, signature, key_id, "
                  "at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "unsequenced": "SELECT id FROM audit_event WHERE seq IS NULL ORDER BY id",
    "legacy_body": "SELECT {body} FROM audit_event WHERE id = ?",
    "legacy_chain": "UPDATE audit_event SET seq = ?, hash = ?, tag = ? WHERE id = ?",
    "legacy_ids": "SELECT patient_ids FROM audit_event WHERE id = ?",
    "stream": "SELECT seq, {body}, hash, tag FROM audit_event WHERE seq BETWEEN ? AND ? "
              "ORDER BY seq",
}

# The patient index against the events' chained patient ids (a JSON array of hex ids).
_INDEX_SQL = {
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

__all__ = ["EPOCH", "ChainedAuditLog", "Head", "LoggedEvent", "body_of", "columns_of"]
