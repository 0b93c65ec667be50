"""Rows of the migration bookkeeping: migrations, import units, provenance, quarantine, reports.

Clear columns only, except the quarantined bytes, which arrive `Sealed` under the migration's
staging key. The vault's import desk is the only caller.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, func, insert, select, update

from labvault.store.engine import guarded
from labvault.store.tables import (
    import_unit,
    migration,
    migration_report,
    order_provenance,
    quarantine,
    source_patient,
)

STORED_OUTCOMES = ("new", "stored")  # the unit's orders are in the vault (new or matched patient)


class ImportStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- migrations ------------------------------------------------------------------------------
    def create_migration(self, migration_id: uuid.UUID, plan_sha256: bytes, at: datetime,
                         by: str, deadline: datetime) -> None:
        with guarded("registering the migration"), self.engine.begin() as conn:
            conn.execute(insert(migration).values(
                id=migration_id, plan_sha256=plan_sha256, created_at=at, created_by=by,
                status="staging", staging_deadline=deadline))

    def get_migration(self, migration_id: uuid.UUID) -> Row | None:
        with self.engine.connect() as conn:
            return conn.execute(select(migration).where(migration.c.id == migration_id)).first()

    def migrations(self) -> list[Row]:
        with self.engine.connect() as conn:
            return conn.execute(select(migration).order_by(migration.c.created_at)).all()

    def set_status(self, migration_id: uuid.UUID, status: str,
                   erased_at: datetime | None = None) -> None:
        values: dict[str, Any] = {"status": status}
        if erased_at is not None:
            values["erased_at"] = erased_at
        with self.engine.begin() as conn:
            conn.execute(update(migration).where(migration.c.id == migration_id).values(**values))

    # -- progress and lookups ----------------------------------------------------------------------
    def progress(self, migration_id: uuid.UUID) -> dict[int, int]:
        """Per file, the last unit committed: batches commit in order, so it is a prefix."""
        with self.engine.connect() as conn:
            q = (select(import_unit.c.file_index, func.max(import_unit.c.seq))
                 .where(import_unit.c.migration_id == migration_id)
                 .group_by(import_unit.c.file_index))
            return {int(f): int(s) for f, s in conn.execute(q)}

    def known_digests(self, digests: Sequence[bytes]) -> set[bytes]:
        """Which of these content digests a stored unit (of any migration) already has."""
        found: set[bytes] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(digests), 500):
                q = select(import_unit.c.content_digest).where(
                    import_unit.c.content_digest.in_(digests[start:start + 500]),
                    import_unit.c.outcome.in_(STORED_OUTCOMES))
                found.update(bytes(d) for (d,) in conn.execute(q))
        return found

    def patients_by_code(self, migration_id: uuid.UUID,
                         codes: Sequence[bytes]) -> dict[bytes, uuid.UUID]:
        out: dict[bytes, uuid.UUID] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(codes), 500):
                q = select(source_patient.c.code_bidx, source_patient.c.patient_id).where(
                    source_patient.c.migration_id == migration_id,
                    source_patient.c.code_bidx.in_(codes[start:start + 500]))
                out.update((bytes(c), p) for c, p in conn.execute(q))
        return out

    # -- reconciliation --------------------------------------------------------------------------
    def units(self, migration_id: uuid.UUID, file_index: int,
              seqs: Sequence[int]) -> dict[int, Row]:
        if not seqs:
            return {}
        with self.engine.connect() as conn:
            q = select(import_unit).where(import_unit.c.migration_id == migration_id,
                                          import_unit.c.file_index == file_index,
                                          import_unit.c.seq.between(min(seqs), max(seqs)))
            return {r.seq: r for r in conn.execute(q)}

    def orders_of_units(self, migration_id: uuid.UUID, file_index: int,
                        seqs: Sequence[int]) -> dict[int, list[uuid.UUID]]:
        out: dict[int, list[uuid.UUID]] = {}
        if not seqs:
            return out
        with self.engine.connect() as conn:
            q = (select(order_provenance.c.seq, order_provenance.c.order_id)
                 .where(order_provenance.c.migration_id == migration_id,
                        order_provenance.c.file_index == file_index,
                        order_provenance.c.seq.between(min(seqs), max(seqs))))
            for seq, order_id in conn.execute(q):
                out.setdefault(seq, []).append(order_id)
        return out

    def unit_counts(self, migration_id: uuid.UUID) -> dict[int, Counter[str]]:
        """Per file, units by outcome."""
        out: dict[int, Counter[str]] = {}
        with self.engine.connect() as conn:
            q = (select(import_unit.c.file_index, import_unit.c.outcome, func.count())
                 .where(import_unit.c.migration_id == migration_id)
                 .group_by(import_unit.c.file_index, import_unit.c.outcome))
            for f, outcome, n in conn.execute(q):
                out.setdefault(int(f), Counter())[outcome] = int(n)
        return out

    def units_beyond(self, migration_id: uuid.UUID, file_index: int, last_seq: int) -> int:
        """Units recorded for a file past the source's last unit: extras."""
        with self.engine.connect() as conn:
            q = select(func.count()).select_from(import_unit).where(
                import_unit.c.migration_id == migration_id, import_unit.c.file_index == file_index,
                import_unit.c.seq > last_seq)
            return int(conn.execute(q).scalar_one())

    def files_recorded(self, migration_id: uuid.UUID) -> set[int]:
        with self.engine.connect() as conn:
            q = select(import_unit.c.file_index).where(
                import_unit.c.migration_id == migration_id).distinct()
            return {int(f) for (f,) in conn.execute(q)}

    # -- quarantine --------------------------------------------------------------------------------
    def quarantine_rows(self, migration_id: uuid.UUID, batch: int = 500) -> Iterator[Row]:
        last = (-1, -1)
        while True:
            q = (select(quarantine).where(quarantine.c.migration_id == migration_id,
                                          (quarantine.c.file_index > last[0])
                                          | ((quarantine.c.file_index == last[0])
                                             & (quarantine.c.seq > last[1])))
                 .order_by(quarantine.c.file_index, quarantine.c.seq).limit(batch))
            with self.engine.connect() as conn:
                rows = conn.execute(q).all()
            if not rows:
                return
            yield from rows
            last = (rows[-1].file_index, rows[-1].seq)

    def quarantine_summary(self, migration_id: uuid.UUID) -> list[tuple[str, str, int]]:
        with self.engine.connect() as conn:
            q = (select(quarantine.c.field, quarantine.c.reason, func.count())
                 .where(quarantine.c.migration_id == migration_id)
                 .group_by(quarantine.c.field, quarantine.c.reason)
                 .order_by(func.count().desc(), quarantine.c.field))
            return [(f, r, int(n)) for f, r, n in conn.execute(q)]

    def drop_quarantine_bytes(self, migration_id: uuid.UUID) -> int:
        with self.engine.begin() as conn:
            done = conn.execute(update(quarantine).where(quarantine.c.migration_id == migration_id)
                                .values(raw=None))
        return int(done.rowcount or 0)

    # -- reports -------------------------------------------------------------------------------------
    def add_report(self, migration_id: uuid.UUID, kind: str, at: datetime, actor: str,
                   body: str) -> None:
        with guarded("storing a migration report"), self.engine.begin() as conn:
            conn.execute(insert(migration_report).values(migration_id=migration_id, kind=kind,
                                                         at=at, actor=actor, body=body))

    def reports(self, migration_id: uuid.UUID) -> list[Row]:
        with self.engine.connect() as conn:
            q = (select(migration_report).where(migration_report.c.migration_id == migration_id)
                 .order_by(migration_report.c.id))
            return conn.execute(q).all()
