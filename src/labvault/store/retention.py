"""Queries of the retention policy: what a scan reads, the re-sealing of one patient's rows, the
key swap, and the signed erasure certificates.

Only rows move here: sealed values in and out, ids and clear dates. The vault opens and seals.

A re-key needs the patient's new data key to be durable before any row is sealed under it, and
the key store has one data key per patient. Until it is swapped in, the new key waits in the key
store's ``pending_data_key`` table (`KeyStore.put_pending`), wrapped for its patient as a pending
key (`pending_key_context`: it opens neither as a data key nor as a staging key): ``keys rotate``
moves it to a new master key version with the data and staging keys, and counts it before
retiring a version.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, Table, bindparam, delete, insert, select, update

from labvault.store.engine import guarded
from labvault.store.keystore import KeyStore, WrappedKey
from labvault.store.tables import (
    SealedBytes,
    attachment,
    audit_event,
    comment,
    data_key,
    erasure_certificate,
    lab_order,
    patient,
    patient_site,
    result,
)

# Children first: a delete never waits on a cascade.
RECORD_TABLES = (attachment, comment, result, lab_order)


def sealed_columns(table: Table) -> list[str]:
    """The columns sealed under the patient's key: the `SealedBytes` ones and ``findings``."""
    names = [c.name for c in table.c if isinstance(c.type, SealedBytes)]
    return names + (["findings"] if "findings" in table.c and "findings" not in names else [])


@dataclass(slots=True)
class ScanRows:
    """One patient's ids, positions, sealed dates and results' sealed findings (no other value
    is read)."""

    patient: Row
    orders: list[Row] = field(default_factory=list)
    results: list[Row] = field(default_factory=list)
    comments: list[Row] = field(default_factory=list)
    attachments: list[Row] = field(default_factory=list)


class PatientTx:
    """One patient's rows inside one transaction of the data database."""

    def __init__(self, conn: Any, patient_id: uuid.UUID) -> None:
        self._conn, self.patient_id = conn, patient_id
        # A first write takes SQLite's write lock at once, so that the rows read next cannot
        # change before this transaction commits.
        conn.execute(update(patient).where(patient.c.id == patient_id)
                     .values(created_at=patient.c.created_at))

    def rows(self, table: Table) -> list[Row]:
        col = table.c.id if table is patient else table.c.patient_id
        return list(self._conn.execute(select(table).where(col == self.patient_id)))

    def delete(self, table: Table, ids: Sequence[uuid.UUID]) -> None:
        for start in range(0, len(ids), 500):
            self._conn.execute(delete(table).where(table.c.id.in_(ids[start:start + 500]),
                                                   table.c.patient_id == self.patient_id))

    def update(self, table: Table, changes: list[dict[str, Any]]) -> None:
        """Set the given sealed columns of the given rows (each dict: ``id`` and columns)."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for change in changes:
            cols = tuple(sorted(k for k in change if k != "id"))
            if cols:
                by_columns[cols].append({"b_id": change["id"],
                                         **{f"v_{c}": change[c] for c in cols}})
        for cols, params in by_columns.items():
            stmt = update(table).where(table.c.id == bindparam("b_id")).values(
                {c: bindparam(f"v_{c}", type_=table.c[c].type) for c in cols})
            self._conn.execute(stmt, params)

    def keep_sites(self, finess: set[str]) -> None:
        """Drop the patient's care links to sites none of their remaining orders names."""
        self._conn.execute(delete(patient_site).where(
            patient_site.c.patient_id == self.patient_id,
            patient_site.c.finess.not_in(sorted(finess))))


class RetentionStore:
    def __init__(self, engine: Engine, keystore: KeyStore) -> None:
        self.engine = engine
        self.keystore = keystore

    # -- the scan --------------------------------------------------------------------------------
    def scan(self, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ScanRows]:
        """Live patients among `patient_ids`, with their records' ids and sealed dates."""
        out: dict[uuid.UUID, ScanRows] = {}
        o, r, c, a = lab_order.c, result.c, comment.c, attachment.c
        with guarded("reading records for retention"), self.engine.connect() as conn:
            for start in range(0, len(patient_ids), 500):
                ids = list(patient_ids[start:start + 500])
                for p in conn.execute(select(patient.c.id, patient.c.created_at,
                                             patient.c.birth_date).where(
                        patient.c.id.in_(ids), patient.c.erased_at.is_(None))):
                    out[p.id] = ScanRows(p)
                for name, q in (
                        ("orders", select(o.id, o.patient_id, o.position, o.created_at,
                                          o.sampled_at, o.requested_at).where(o.patient_id.in_(ids))
                         .order_by(o.position)),
                        ("results", select(r.id, r.patient_id, r.order_id, r.position,
                                           r.created_at, r.observed_at, r.findings)
                         .where(r.patient_id.in_(ids))),
                        ("comments", select(c.id, c.patient_id, c.order_id, c.result_id)
                         .where(c.patient_id.in_(ids))),
                        ("attachments", select(a.id, a.patient_id, a.result_id)
                         .where(a.patient_id.in_(ids)))):
                    for row in conn.execute(q):
                        if row.patient_id in out:
                            getattr(out[row.patient_id], name).append(row)
        return out

    @contextmanager
    def patient_transaction(self, patient_id: uuid.UUID) -> Iterator[PatientTx]:
        with guarded("re-sealing a patient's records"), self.engine.begin() as conn:
            yield PatientTx(conn, patient_id)

    # -- keys ------------------------------------------------------------------------------------
    def put_pending(self, patient_id: uuid.UUID, kek_version: int, wrapped: bytes,
                    at: datetime) -> None:
        self.keystore.put_pending(patient_id, kek_version, wrapped, at)

    def get_pending(self, patient_id: uuid.UUID) -> tuple[int, bytes] | None:
        return self.keystore.get_pending(patient_id)

    def drop_pending(self, patient_id: uuid.UUID) -> None:
        self.keystore.drop_pending(patient_id)  # scrubbed: it held a data key

    def pending_patients(self) -> list[uuid.UUID]:
        """Patients whose re-key was interrupted (a pending key of a patient no longer in the
        key store is dropped by the resume)."""
        return self.keystore.pending_patients()

    def swap_key(self, key: WrappedKey, old_dek_version: int) -> bool:
        """Replace the patient's data key of version `old_dek_version` by `key` (the old one is
        overwritten; `scrub` then clears the freed pages). False: it was not that version."""
        with guarded("replacing a data key"), self.keystore.engine.begin() as conn:
            done = conn.execute(update(data_key).where(
                data_key.c.patient_id == key.patient_id,
                data_key.c.dek_version == old_dek_version).values(
                kek_version=key.kek_version, dek_version=key.dek_version, wrapped=key.wrapped))
        return bool(done.rowcount)

    def scrub(self) -> None:
        self.keystore._scrub()

    # -- certificates ----------------------------------------------------------------------------
    def insert_certificate(self, row: dict[str, Any]) -> int:
        with guarded("storing the erasure certificate"), self.engine.begin() as conn:
            return int(conn.execute(insert(erasure_certificate), row).inserted_primary_key[0])

    def certificates(self, kind: str) -> list[Row]:
        e = erasure_certificate.c
        q = (select(e.id, e.issued_at, e.kind, e.issued_by, e.digest, e.key_id)
             .where(e.kind == kind).order_by(e.id))
        with guarded("listing erasure certificates"), self.engine.connect() as conn:
            return list(conn.execute(q))

    def certificate(self, certificate_id: int) -> Row | None:
        q = select(erasure_certificate).where(erasure_certificate.c.id == certificate_id)
        with guarded("reading an erasure certificate"), self.engine.connect() as conn:
            return conn.execute(q).first()

    def last_issued_at(self, kind: str) -> datetime | None:
        e = erasure_certificate.c
        q = select(e.issued_at).where(e.kind == kind).order_by(e.id.desc()).limit(1)
        with guarded("reading erasure certificates"), self.engine.connect() as conn:
            return conn.execute(q).scalar_one_or_none()

    def audit_head(self) -> tuple[int, bytes]:
        """The last chained audit event's position and hash (what a certificate is bound to)."""
        q = (select(audit_event.c.seq, audit_event.c.hash).where(audit_event.c.seq.is_not(None))
             .order_by(audit_event.c.seq.desc()).limit(1))
        with guarded("reading the audit head"), self.engine.connect() as conn:
            found = conn.execute(q).first()
        return (int(found.seq), bytes(found.hash)) if found is not None else (0, b"")


__all__ = ["RECORD_TABLES", "PatientTx", "RetentionStore", "ScanRows", "sealed_columns"]
