"""Rows of the data database: only `Sealed` personal values and clear metadata go in or out.

The vault turns records into rows (sealing every personal field) and rows back into records;
this module only moves rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, Table, delete, func, insert, select, update

from labvault.crypto.envelope import Sealed
from labvault.store.engine import guarded
from labvault.store.tables import (
    SealedBytes,
    attachment,
    comment,
    import_unit,
    lab_order,
    patient,
    patient_site,
    result,
)


@dataclass
class RowBatch:
    """Rows of one write, in dependency order."""

    patients: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    sites: set[tuple[uuid.UUID, str]] = field(default_factory=set)  # (patient, FINESS) pairs

    def __len__(self) -> int:
        return len(self.patients)


@dataclass(frozen=True, slots=True)
class PatientRows:
    patient: Row
    orders: Sequence[Row]
    results: Sequence[Row]
    comments: Sequence[Row]
    attachments: Sequence[Row] = ()


class RecordStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert(self, batch: RowBatch,
               also: Sequence[tuple[Table, list[dict[str, Any]]]] = ()) -> None:
        """Write the batch, and the rows of `also` after it, in one transaction."""
        with guarded("storing records"), self.engine.begin() as conn:
            for table, rows in ((patient, batch.patients), (lab_order, batch.orders),
                                (result, batch.results), (comment, batch.comments),
                                (attachment, batch.attachments), *also):
                if rows:
                    conn.execute(insert(table), rows)
            if batch.sites:
                _insert_sites(conn, batch.sites)

    def ids_by_index_many(self, column: str, values: Sequence[bytes]) -> dict[bytes, list[uuid.UUID]]:
        col = patient.c[column]
        out: dict[bytes, list[uuid.UUID]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(values), 500):
                q = select(col, patient.c.id).where(col.in_(values[start:start + 500]),
                                                    patient.c.erased_at.is_(None))
                for r in conn.execute(q):
                    out.setdefault(bytes(r[0]), []).append(r.id)
        return out

    def load_orders(self, order_ids: Sequence[uuid.UUID]) -> PatientRows:
        """Rows of the given orders with their results, comments and attachments, in stored
        order (``patient`` is None: the rows may belong to several patients)."""
        orders: list[Row] = []
        results: list[Row] = []
        comments: list[Row] = []
        files: list[Row] = []
        with self.engine.connect() as conn:
            for start in range(0, len(order_ids), 500):
                ids = order_ids[start:start + 500]
                orders += conn.execute(select(lab_order).where(lab_order.c.id.in_(ids))).all()
                results += conn.execute(select(result).where(result.c.order_id.in_(ids))).all()
                comments += conn.execute(select(comment).where(comment.c.order_id.in_(ids))).all()
                files += conn.execute(select(attachment)
                                      .where(attachment.c.order_id.in_(ids))).all()
        key = lambda r: r.position  # noqa: E731
        return PatientRows(None, sorted(orders, key=key), sorted(results, key=key),  # type: ignore[arg-type]
                           sorted(comments, key=key), sorted(files, key=key))

    def existing(self, patient_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these patients have a row (erased or not)."""
        found: set[uuid.UUID] = set()
        with guarded("reading patients"), self.engine.connect() as conn:
            for start in range(0, len(patient_ids), 500):
                q = select(patient.c.id).where(patient.c.id.in_(patient_ids[start:start + 500]))
                found.update(r.id for r in conn.execute(q))
        return found

    def live(self, patient_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these patients exist and are not erased."""
        found: set[uuid.UUID] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(patient_ids), 500):
                q = select(patient.c.id).where(patient.c.id.in_(patient_ids[start:start + 500]),
                                               patient.c.erased_at.is_(None))
                found.update(r.id for r in conn.execute(q))
        return found

    def next_positions(self, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[int]]:
        """Per patient, the next order position and the last result and comment positions.

        Orders count from 0, results and comments from 1 (see `Vault._seal_orders`).
        """
        out = {pid: [0, 0, 0] for pid in patient_ids}
        with self.engine.connect() as conn:
            for i, table in enumerate((lab_order, result, comment)):
                for start in range(0, len(patient_ids), 500):
                    q = (select(table.c.patient_id, func.max(table.c.position))
                         .where(table.c.patient_id.in_(patient_ids[start:start + 500]))
                         .group_by(table.c.patient_id))
                    for pid, top in conn.execute(q):
                        out[pid][i] = int(top) + (1 if i == 0 else 0)
        return out

    def ids_by_index(self, column: str, value: bytes) -> list[uuid.UUID]:
        col = patient.c[column]
        q = select(patient.c.id).where(col == value, patient.c.erased_at.is_(None))
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(q)]

    def load(self, patient_id: uuid.UUID, with_results: bool = True) -> PatientRows | None:
        with self.engine.connect() as conn:
            p = conn.execute(select(patient).where(patient.c.id == patient_id)).first()
            if p is None:
                return None
            if not with_results:
                return PatientRows(p, (), (), ())
            orders = conn.execute(select(lab_order).where(lab_order.c.patient_id == patient_id)
                                  .order_by(lab_order.c.position)).all()
            results = conn.execute(select(result).where(result.c.patient_id == patient_id)
                                   .order_by(result.c.position)).all()
            comments = conn.execute(select(comment).where(comment.c.patient_id == patient_id)
                                    .order_by(comment.c.position)).all()
            files = conn.execute(select(attachment).where(attachment.c.patient_id == patient_id)
                                 .order_by(attachment.c.position)).all()
        return PatientRows(p, orders, results, comments, files)

    def iter_ids(self, batch: int = 1000) -> Iterator[list[uuid.UUID]]:
        """Ids of live (not erased) patients, in batches, in id order."""
        last: uuid.UUID | None = None
        while True:
            q = select(patient.c.id).where(patient.c.erased_at.is_(None))
            if last is not None:
                q = q.where(patient.c.id > last)
            with self.engine.connect() as conn:
                ids = [r.id for r in conn.execute(q.order_by(patient.c.id).limit(batch))]
            if not ids:
                return
            yield ids
            last = ids[-1]

    def count(self) -> int:
        with self.engine.connect() as conn:
            q = select(func.count()).select_from(patient).where(patient.c.erased_at.is_(None))
            return int(conn.execute(q).scalar_one())

    def erase(self, patient_id: uuid.UUID, at: datetime) -> None:
        """Drop the patient's ciphertext and keep a tombstone row (id and erasure time)."""
        sealed_null = {c.name: None for c in patient.c if isinstance(c.type, SealedBytes)}
        with self.engine.begin() as conn:
            for table in (attachment, comment, result, lab_order, patient_site):
                conn.execute(delete(table).where(table.c.patient_id == patient_id))
            # The units' content digests go; the keyed legacy-code entry stays, so that a
            # later unit of the same person within the migration is recognised as erased and
            # quarantined instead of being imported again as a new patient.
            conn.execute(update(import_unit).where(import_unit.c.patient_id == patient_id)
                         .values(content_digest=None))
            conn.execute(update(patient).where(patient.c.id == patient_id).values(
                erased_at=at, nir_bidx=None, name_birth_bidx=None, **sealed_null))

    def order_results(self, order_id: uuid.UUID) -> tuple[uuid.UUID, Sequence[Row]] | None:
        """The patient an order belongs to, and its results' ids, refs (patient, order,
        position) and sealed status, in stored order (None: no such order)."""
        with guarded("reading an order"), self.engine.connect() as conn:
            owner = conn.execute(select(lab_order.c.patient_id)
                                 .where(lab_order.c.id == order_id)).scalar_one_or_none()
            if owner is None:
                return None
            rows = conn.execute(
                select(result.c.id, result.c.patient_id, result.c.order_id, result.c.position,
                       result.c.status)
                .where(result.c.order_id == order_id).order_by(result.c.position)).all()
        return owner, rows

    def set_result_status(self, sealed: dict[uuid.UUID, Sealed]) -> None:
        """Replace the sealed ``status`` of the given results (result id -> new ciphertext) in
        one transaction; no other column is touched."""
        if not sealed:
            return
        with guarded("updating result status"), self.engine.begin() as conn:
            for rid, status in sealed.items():
                conn.execute(update(result).where(result.c.id == rid).values(status=status))

    def orders_of(self, patient_ids: Sequence[uuid.UUID]) -> list[Row]:
        """The order rows of the given patients (one query per 500 patients)."""
        out: list[Row] = []
        with guarded("reading orders"), self.engine.connect() as conn:
            for start in range(0, len(patient_ids), 500):
                out += conn.execute(select(lab_order).where(
                    lab_order.c.patient_id.in_(patient_ids[start:start + 500]))).all()
        return out


def _insert_sites(conn: Any, pairs: set[tuple[uuid.UUID, str]]) -> None:
    """Add the (patient, site) pairs not yet known: an order at a site already linked adds
    nothing."""
    ids = sorted({pid for pid, _ in pairs})
    known: set[tuple[uuid.UUID, str]] = set()
    for start in range(0, len(ids), 500):
        q = select(patient_site.c.patient_id, patient_site.c.finess).where(
            patient_site.c.patient_id.in_(ids[start:start + 500]))
        known.update((r.patient_id, r.finess) for r in conn.execute(q))
    fresh = [{"patient_id": pid, "finess": f} for pid, f in sorted(pairs - known)]
    if fresh:
        conn.execute(insert(patient_site), fresh)

