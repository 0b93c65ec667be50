"""The key store: each patient's data key, wrapped under a master key version; a migration's
staging key; and a patient's pending data key while a re-key (the retention policy) is under way.

It is a database of its own (``keys.sqlite`` beside the data, or a separate PostgreSQL
database), so a copy of the data database never holds a data key. Deleting a row here is the
crypto-shredding of that patient: on SQLite, ``secure_delete`` overwrites the freed page and
the WAL is checkpointed and truncated; on PostgreSQL the table is vacuumed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, insert, select, text, update

from labvault.store.engine import checkpoint, guarded
from labvault.store.tables import data_key, pending_data_key, staging_key


@dataclass(frozen=True, slots=True)
class WrappedKey:
    patient_id: uuid.UUID
    kek_version: int
    dek_version: int
    wrapped: bytes

    def __repr__(self) -> str:
        return f"WrappedKey(patient_id={self.patient_id}, kek_version={self.kek_version})"


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_many(self, keys: Iterable[WrappedKey], at: datetime) -> None:
        rows = [{"patient_id": k.patient_id, "kek_version": k.kek_version,
                 "dek_version": k.dek_version, "wrapped": k.wrapped, "created_at": at}
                for k in keys]
        if rows:
            with guarded("storing data keys"), self.engine.begin() as conn:
                conn.execute(insert(data_key), rows)

    def get(self, patient_id: uuid.UUID) -> WrappedKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(data_key).where(data_key.c.patient_id == patient_id)).first()
        return None if row is None else WrappedKey(row.patient_id, row.kek_version,
                                                   row.dek_version, row.wrapped)

    def get_many(self, patient_ids: list[uuid.UUID]) -> dict[uuid.UUID, WrappedKey]:
        out: dict[uuid.UUID, WrappedKey] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(patient_ids), 500):
                q = select(data_key).where(data_key.c.patient_id.in_(patient_ids[start:start + 500]))
                for r in conn.execute(q):
                    out[r.patient_id] = WrappedKey(r.patient_id, r.kek_version, r.dek_version,
                                                   r.wrapped)
        return out

    def delete_many(self, patient_ids: list[uuid.UUID]) -> None:
        """Remove keys whose records were never stored (a failed write)."""
        with guarded("removing unused data keys"), self.engine.begin() as conn:
            for start in range(0, len(patient_ids), 500):
                conn.execute(delete(data_key).where(
                    data_key.c.patient_id.in_(patient_ids[start:start + 500])))

    def destroy(self, patient_id: uuid.UUID) -> bool:
        """Destroy the patient's data key, and the pending one of a re-key left halfway."""
        with self.engine.begin() as conn:
            gone = conn.execute(delete(data_key).where(data_key.c.patient_id == patient_id))
            pending = conn.execute(delete(pending_data_key)
                                   .where(pending_data_key.c.patient_id == patient_id))
        self._scrub()
        if pending.rowcount:
            self._scrub("pending_data_key")
        return bool(gone.rowcount or pending.rowcount)

    def _scrub(self, table: str = "data_key") -> None:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f"VACUUM (FULL) {table}"))
        else:
            checkpoint(self.engine)

    def count_by_version(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            q = select(data_key.c.kek_version, func.count()).group_by(data_key.c.kek_version)
            return {v: n for v, n in conn.execute(q)}

    def patients_under(self, kek_version: int) -> list[uuid.UUID]:
        """Patients whose data key is wrapped under a master key version."""
        q = select(data_key.c.patient_id).where(data_key.c.kek_version == kek_version)
        with self.engine.connect() as conn:
            return sorted(conn.execute(q).scalars())

    def iter_version(self, kek_version: int, batch: int = 1000) -> Iterator[list[WrappedKey]]:
        """Batches of keys still wrapped under `kek_version` (re-queried: callers rewrap them)."""
        while True:
            with self.engine.connect() as conn:
                q = (select(data_key).where(data_key.c.kek_version == kek_version)
                     .order_by(data_key.c.patient_id).limit(batch))
                rows = [WrappedKey(r.patient_id, r.kek_version, r.dek_version, r.wrapped)
                        for r in conn.execute(q)]
            if not rows:
                return
            yield rows

    def rewrap(self, keys: list[WrappedKey]) -> None:
        """Store keys rewrapped under another master key version. A key replaced meanwhile (a
        re-key swapped in the next `dek_version`) is left as it is: this one is stale."""
        with self.engine.begin() as conn:
            for k in keys:
                conn.execute(update(data_key).where(data_key.c.patient_id == k.patient_id,
                                                    data_key.c.dek_version == k.dek_version)
                             .values(kek_version=k.kek_version, wrapped=k.wrapped))

    # -- staging keys (one per migration) --------------------------------------------------------
    def insert_staging(self, migration_id: uuid.UUID, kek_version: int, wrapped: bytes,
                       at: datetime) -> None:
        with guarded("storing a staging key"), self.engine.begin() as conn:
            conn.execute(insert(staging_key).values(migration_id=migration_id,
                                                    kek_version=kek_version, wrapped=wrapped,
                                                    created_at=at))

    def get_staging(self, migration_id: uuid.UUID) -> tuple[int, bytes] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(staging_key.c.kek_version, staging_key.c.wrapped)
                               .where(staging_key.c.migration_id == migration_id)).first()
        return None if row is None else (row.kek_version, row.wrapped)

    def destroy_staging(self, migration_id: uuid.UUID) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(delete(staging_key)
                                .where(staging_key.c.migration_id == migration_id))
        self._scrub("staging_key")
        return bool(gone.rowcount)

    def staging_by_version(self, kek_version: int) -> list[tuple[uuid.UUID, bytes]]:
        with self.engine.connect() as conn:
            q = (select(staging_key.c.migration_id, staging_key.c.wrapped)
                 .where(staging_key.c.kek_version == kek_version))
            return [(r.migration_id, r.wrapped) for r in conn.execute(q)]

    def staging_count_by_version(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            q = (select(staging_key.c.kek_version, func.count())
                 .group_by(staging_key.c.kek_version))
            return {v: n for v, n in conn.execute(q)}

    def rewrap_staging(self, migration_id: uuid.UUID, kek_version: int, wrapped: bytes) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(staging_key).where(staging_key.c.migration_id == migration_id)
                         .values(kek_version=kek_version, wrapped=wrapped))

    # -- pending data keys (a patient's next data key while a re-key is under way) --------------
    def put_pending(self, patient_id: uuid.UUID, kek_version: int, wrapped: bytes,
                    at: datetime) -> None:
        """Store the patient's pending key. Refused (`StoreError`) if one is pending already:
        rows may be sealed under it, so it is never replaced."""
        with guarded("storing a pending data key"), self.engine.begin() as conn:
            conn.execute(insert(pending_data_key).values(patient_id=patient_id,
                                                         kek_version=kek_version,
                                                         wrapped=wrapped, created_at=at))

    def get_pending(self, patient_id: uuid.UUID) -> tuple[int, bytes] | None:
        with guarded("reading a pending data key"), self.engine.connect() as conn:
            row = conn.execute(select(pending_data_key.c.kek_version, pending_data_key.c.wrapped)
                               .where(pending_data_key.c.patient_id == patient_id)).first()
        return None if row is None else (row.kek_version, bytes(row.wrapped))

    def drop_pending(self, patient_id: uuid.UUID) -> bool:
        """Delete the patient's pending key and scrub its freed pages (it is a data key)."""
        with guarded("removing a pending data key"), self.engine.begin() as conn:
            gone = conn.execute(delete(pending_data_key)
                                .where(pending_data_key.c.patient_id == patient_id))
        self._scrub("pending_data_key")
        return bool(gone.rowcount)

    def pending_patients(self) -> list[uuid.UUID]:
        """Patients with a pending key: re-keys not finished."""
        with guarded("reading pending data keys"), self.engine.connect() as conn:
            return sorted(conn.execute(select(pending_data_key.c.patient_id)).scalars())

    def pending_by_version(self, kek_version: int) -> list[tuple[uuid.UUID, bytes]]:
        with self.engine.connect() as conn:
            q = (select(pending_data_key.c.patient_id, pending_data_key.c.wrapped)
                 .where(pending_data_key.c.kek_version == kek_version))
            return [(r.patient_id, bytes(r.wrapped)) for r in conn.execute(q)]

    def pending_count_by_version(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            q = (select(pending_data_key.c.kek_version, func.count())
                 .group_by(pending_data_key.c.kek_version))
            return {v: n for v, n in conn.execute(q)}

    def rewrap_pending(self, patient_id: uuid.UUID, old: tuple[int, bytes], kek_version: int,
                       wrapped: bytes) -> bool:
        """Replace the pending key `old` (its version and wrapped bytes) by its rewrapped form.
        False if it is no longer pending: the re-key finished, or another one began."""
        p = pending_data_key.c
        with self.engine.begin() as conn:
            done = conn.execute(update(pending_data_key).where(
                p.patient_id == patient_id, p.kek_version == old[0], p.wrapped == old[1])
                .values(kek_version=kek_version, wrapped=wrapped))
        return bool(done.rowcount)
