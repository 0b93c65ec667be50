"""The rows of the audit log: an event's stored columns, its chained body and the SQL over them.

An event's chained body is derived from its stored columns (time, actor, role, source, purpose,
action, outcome, patient ids, detail, request id, categories: see `body_sql`): the database
builds it from the table when the log is verified, and `body_of` builds the same bytes from the
column values about to be stored (`columns_of`). Every stored value is cleaned of control
characters first, so none holds the field separator.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labvault.audit.chain import epoch_of
from labvault.audit.sink import AuditEvent

SEP, NULL = "\x1f", "\x1e"  # field separator; an absent value. Never inside a stored value.
BODY_VERSION = "labvault/audit/body/v1"
FIELDS = ("at", "actor", "role", "source", "purpose", "action", "outcome", "patient_ids",
          "detail", "request_id", "categories")
NULLABLE = ("detail", "request_id", "categories")
LIMITS = {"actor": 200, "role": 50, "source": 200, "purpose": 200, "action": 100,
          "outcome": 20, "request_id": 64, "categories": 200}
EPOCH_KEY_CONTEXT = b"labvault/audit/epoch-key/v1|"


def body_sql(dialect: str) -> str:
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


def epoch_context(epoch: int) -> bytes:
    return EPOCH_KEY_CONTEXT + str(epoch).encode()


def head_epoch(seq: int) -> int:
    return epoch_of(seq) if seq > 0 else 0


def as_bytes(value: object) -> bytes:
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""


def event_of(r: Any) -> AuditEvent:
    """The event a stored row holds."""
    at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
    return AuditEvent(at, r.actor, r.role, r.source, r.purpose, r.action, r.outcome,
                      tuple(uuid.UUID(h) for h in json.loads(r.patient_ids)),
                      json.loads(r.detail) if r.detail else {}, r.request_id or "",
                      tuple(r.categories.split(",")) if r.categories else ())


_COLUMNS = ", ".join(FIELDS)
# The statements of the log, with ``?`` placeholders (`ChainedAuditLog` adapts them to the driver).
SQL = {
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

__all__ = ["BODY_VERSION", "FIELDS", "SQL", "Head", "LoggedEvent", "body_of", "body_sql",
           "columns_of", "event_of", "utc_text"]
