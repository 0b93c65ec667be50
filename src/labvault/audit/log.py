"""The audit log in the data database, every event chained (`labvault.audit.chain`) as written.

An event's chained body is derived from its stored columns (`labvault.audit.rows`), so `verify`
recomputes it from the table and an edit of any column breaks the chain at that event. The
reading methods (streaming, checkpoints, index checks) are in `labvault.audit.reading`.

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
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from labvault.audit.chain import CHECKPOINT, EPOCH, GENESIS, ChainWriter, Checkpoint
from labvault.audit.reading import ChainReading
from labvault.audit.rows import (
    BODY_VERSION,
    FIELDS,
    SQL,
    Head,
    LoggedEvent,
    body_of,
    body_sql,
    columns_of,
    epoch_context,
    head_epoch,
    utc_text,
)
from labvault.audit.sink import AuditEvent
from labvault.clock import Clock
from labvault.crypto.keys import KeyProvider
from labvault.crypto.signing import Signer
from labvault.errors import AuditUnavailable, LabvaultError
from labvault.secret import Secret
from labvault.store.tables import audit_head


class ChainedAuditLog(ChainReading):
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
        self._sql = {name: self._param(sql) for name, sql in SQL.items()}
        self.body_sql = body_sql(self._dialect)

    def __repr__(self) -> str:
        return f"ChainedAuditLog(dialect={self._dialect})"

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
        version, wrapped = self._keys.wrap(key, epoch_context(0))
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
        version, wrapped = self._keys.wrap(writer.key, epoch_context(head_epoch(writer.seq)))
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
            if head_epoch(last) == head_epoch(seq0) and seq0 // CHECKPOINT == last // CHECKPOINT:
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
        key = self._epoch_key(version, bytes(wrapped), head_epoch(first - 1))
        pending: list[bytes] = []
        if (first - 1) // CHECKPOINT != new_last // CHECKPOINT:  # a checkpoint falls here
            cur.execute(sql["hashes"], ((first - 1) // CHECKPOINT * CHECKPOINT + 1, first - 1))
            pending = [bytes(h) for (h,) in cur.fetchall()]
        writer = ChainWriter(key, seq=first - 1, last_hash=bytes(last_hash),
                             signer=self._signer, pending=pending)
        rows, index, out = self._rows(cur, writer, events, now)
        self._insert(cur, rows, index)
        if head_epoch(new_last) != head_epoch(first - 1):
            # The epoch closed: the new key replaces the old one, which is gone from here on.
            version, new_wrapped = self._keys.wrap(writer.key,
                                                   epoch_context(head_epoch(new_last)))
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
        key = self._keys.unwrap(version, wrapped, epoch_context(epoch))
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
                epoch = head_epoch(seq)
                key = self._epoch_key(version, bytes(wrapped), epoch)
                new_version, new_wrapped = self._keys.wrap(key, epoch_context(epoch))
                cur.execute(self._sql["head_rekey"], (seq, bytes(last_hash), new_version,
                                                      new_wrapped, self._ts(self._clock.now())))
                self._key_cache = (new_version, new_wrapped, key)
            conn.commit()
        except self._errors:
            conn.rollback()
            raise AuditUnavailable("the audit epoch key could not be rewrapped") from None
        finally:
            conn.close()


__all__ = ["BODY_VERSION", "EPOCH", "FIELDS", "ChainedAuditLog", "Head", "LoggedEvent", "body_of",
           "columns_of"]
