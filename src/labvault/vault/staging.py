"""Staging areas of migrations: registration, sealed source copies, lock, erasure, reports.

Source exports are staged sealed under a key of the migration's own
(`labvault.crypto.staging`), which the key store holds wrapped by the master key; quarantined
units are sealed under that key too, so erasing the staging area crypto-shreds both. A staging
area is erased on request or, at its deadline, by the first `labvault` command that opens the
vault — unless a run of that migration holds its lock. `ImportDesk` builds on this class.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.crypto.envelope import new_data_key, staging_key_context
from labvault.crypto.staging import DigestMismatch, open_sealed, seal_file, staging_context
from labvault.errors import ConfigurationError, KeyUnavailable, MigrationBusy, NotFound
from labvault.secret import Secret
from labvault.store.imports import ImportStore

if TYPE_CHECKING:
    from labvault.vault.core import Vault

P = Permission
_REPORT_PERMISSION = {"run": P.MIGRATION_RUN, "verify": P.MIGRATION_VERIFY,
                      "erase": P.MIGRATION_ERASE, "certificate": P.MIGRATION_READ}


@dataclass(frozen=True, slots=True)
class MigrationInfo:
    id: uuid.UUID
    plan_sha256: bytes
    created_at: datetime
    created_by: str
    status: str
    staging_deadline: datetime
    erased_at: datetime | None
    staged_files: int
    staged_bytes: int


@dataclass(frozen=True, slots=True)
class StagingErasure:
    migration_id: uuid.UUID
    erased_at: datetime
    actor: str
    key_destroyed: bool
    files_removed: int
    quarantine_bytes_dropped: int


class StagingArea:
    def __init__(self, vault: Vault, store: ImportStore, staging_dir: Path | None) -> None:
        self._v = vault
        self._store = store
        self._staging_dir = staging_dir
        self._staging_keys: dict[uuid.UUID, Secret[bytes]] = {}

    # -- migrations and staging ------------------------------------------------------------------
    def begin(self, principal: Principal, migration_id: uuid.UUID, plan: bytes,
              deadline: datetime) -> MigrationInfo:
        """Register a migration with its plan (the file's bytes) and create its staging key;
        again with the same plan, resume."""
        v = self._v
        v._authorize(principal, P.MIGRATION_RUN)
        plan_sha256 = hashlib.sha256(plan).digest()
        row = self._store.get_migration(migration_id)
        if row is not None:
            if row.plan_sha256 != plan_sha256:
                raise ConfigurationError("the plan file changed since this migration began; "
                                         "make a new plan")
            if row.erased_at is not None:
                raise ConfigurationError("this migration's staging area was erased; "
                                         "make a new plan to import again")
            return self.info(principal, migration_id)
        if deadline <= v._clock.now():
            raise ConfigurationError("the plan's staging deadline has passed; make a new plan")
        try:
            plan_doc = json.loads(plan)
        except ValueError:
            raise ConfigurationError("the plan is not a JSON document") from None
        v._event(principal, P.MIGRATION_RUN, "allowed", step="begin",
                 migration=str(migration_id))
        now = v._clock.now()
        if v._keystore.get_staging(migration_id) is None:
            version, wrapped = v._keys.wrap(new_data_key(), staging_key_context(migration_id))
            v._keystore.insert_staging(migration_id, version, wrapped, now)
        self._store.create_migration(migration_id, plan_sha256, now, principal.actor_id, deadline)
        self._store.add_report(migration_id, "plan", now, principal.actor_id,
                               json.dumps(_recorded_plan(plan_doc), sort_keys=True))
        return self.info(principal, migration_id)

    @contextmanager
    def exclusive(self, migration_id: uuid.UUID) -> Iterator[None]:
        """Hold the migration's lock: one run at a time, and no erasure during a run."""
        with self._lock(f"{migration_id.hex}.lock", "this migration is running in another "
                                                    "process"):
            yield

    @contextmanager
    def importing(self, migration_id: uuid.UUID) -> Iterator[None]:
        """The locks of a run: its migration's, and the vault's import lock, so that two
        migrations never match and create the same patients at the same time."""
        with self.exclusive(migration_id), self._lock("imports.lock", "another migration is "
                                                                       "importing into this vault"):
            yield

    @contextmanager
    def _lock(self, name: str, busy: str) -> Iterator[None]:
        if self._staging_dir is None:
            raise ConfigurationError("this vault has no staging directory")
        self._staging_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._staging_dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MigrationBusy(busy) from None
            yield
        finally:
            os.close(fd)

    def _staging_key(self, migration_id: uuid.UUID) -> Secret[bytes]:
        key = self._staging_keys.get(migration_id)
        if key is None:
            found = self._v._keystore.get_staging(migration_id)
            if found is None:
                raise KeyUnavailable(f"no staging key for migration {migration_id} (erased?)")
            key = self._v._keys.unwrap(found[0], found[1], staging_key_context(migration_id))
            self._staging_keys[migration_id] = key
        return key

    def _area(self, migration_id: uuid.UUID) -> Path:
        if self._staging_dir is None:
            raise ConfigurationError("this vault has no staging directory")
        return self._staging_dir / migration_id.hex

    def _staged_path(self, migration_id: uuid.UUID, file_index: int) -> Path:
        return self._area(migration_id) / f"{file_index:04d}.sealed"

    def stage(self, principal: Principal, migration_id: uuid.UUID, file_index: int,
              source: Path, expected_sha256: bytes, progress: Any = None) -> bool:
        """Copy a source export into the staging area, sealed. False if it was already there."""
        v = self._v
        v._authorize(principal, P.MIGRATION_RUN)
        target = self._staged_path(migration_id, file_index)
        if target.exists():
            return False
        v._event(principal, P.MIGRATION_RUN, "allowed", step="stage",
                 migration=str(migration_id), file=file_index)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # No symbolic link, only a regular file: what is staged is what was planned.
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise ConfigurationError(f"source file {file_index + 1} cannot be opened (missing, "
                                     "or a symbolic link)") from None
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise ConfigurationError(f"source file {file_index + 1} is not a regular file")
            try:
                seal_file(self._staging_key(migration_id), src, target,
                          staging_context(migration_id.hex, file_index),
                          expected_sha256=expected_sha256, progress=progress)
            except DigestMismatch:
                raise ConfigurationError(f"source file {file_index + 1} changed since the plan "
                                         "(SHA-256 differs); make a new plan") from None
        return True

    def open_staged(self, principal: Principal, migration_id: uuid.UUID, file_index: int,
                    permission: Permission = P.MIGRATION_RUN) -> BinaryIO:
        """The plaintext of a staged file, as a stream (for the run and the verification)."""
        if permission not in (P.MIGRATION_RUN, P.MIGRATION_VERIFY):
            raise ValueError("staged files open for a run or a verification only")
        v = self._v
        v._authorize(principal, permission)
        path = self._staged_path(migration_id, file_index)
        if not path.exists():
            raise NotFound("staged file", f"{migration_id}/{file_index}")
        v._event(principal, permission, "allowed", step="open-staged",
                 migration=str(migration_id), file=file_index)
        return open_sealed(self._staging_key(migration_id), path,
                           staging_context(migration_id.hex, file_index))

    def _report(self, principal: Principal, migration_id: uuid.UUID, kind: str,
                body: dict[str, Any]) -> None:
        """Keep a step's outcome (counts, never personal values) for the certificate."""
        v = self._v
        v._authorize(principal, _REPORT_PERMISSION[kind])
        v._event(principal, _REPORT_PERMISSION[kind], "allowed", step=f"report-{kind}",
                 migration=str(migration_id))
        self._store.add_report(migration_id, kind, v._clock.now(), principal.actor_id,
                               json.dumps(body, sort_keys=True, default=str))

    def _plan(self, migration_id: uuid.UUID) -> dict[str, Any]:
        found = [r for r in self._store.reports(migration_id) if r.kind == "plan"]
        if not found:
            raise NotFound("migration plan", migration_id)
        return json.loads(found[0].body)

    def reports(self, principal: Principal, migration_id: uuid.UUID) -> list[dict[str, Any]]:
        self._v._authorize(principal, P.MIGRATION_READ)
        return [{"kind": r.kind, "at": _aware(r.at), "actor": r.actor, "body": json.loads(r.body)}
                for r in self._store.reports(migration_id) if r.kind != "plan"]

    def info(self, principal: Principal, migration_id: uuid.UUID) -> MigrationInfo:
        self._v._authorize(principal, P.MIGRATION_READ)
        row = self._store.get_migration(migration_id)
        if row is None:
            raise NotFound("migration", migration_id)
        return self._info(row)

    def _info(self, row: Any) -> MigrationInfo:
        files = list(self._area(row.id).glob("*.sealed")) if self._staging_dir else []
        return MigrationInfo(row.id, bytes(row.plan_sha256), _aware(row.created_at),
                             row.created_by, row.status, _aware(row.staging_deadline),
                             _aware(row.erased_at) if row.erased_at else None, len(files),
                             sum(f.stat().st_size for f in files))

    def migrations(self, principal: Principal) -> list[MigrationInfo]:
        self._v._authorize(principal, P.MIGRATION_READ)
        return [self._info(r) for r in self._store.migrations()]

    def set_status(self, principal: Principal, migration_id: uuid.UUID, status: str) -> None:
        v = self._v
        v._authorize(principal, P.MIGRATION_RUN)
        row = self._store.get_migration(migration_id)
        if row is None or row.erased_at is not None:
            raise ConfigurationError("this migration's staging area was erased")
        v._event(principal, P.MIGRATION_RUN, "allowed", step="status", status=status,
                 migration=str(migration_id))
        self._store.set_status(migration_id, status)

    # -- erasure -----------------------------------------------------------------------------------
    def erase(self, principal: Principal, migration_id: uuid.UUID) -> StagingErasure:
        """Destroy the staging key, then the staged files and the quarantined bytes.

        Raises `MigrationBusy` while a run of the migration holds its lock.
        """
        v = self._v
        v._authorize(principal, P.MIGRATION_ERASE)
        if self._store.get_migration(migration_id) is None:
            raise NotFound("migration", migration_id)
        with self.exclusive(migration_id):
            return self._erase(principal, migration_id)

    def _erase(self, principal: Principal, migration_id: uuid.UUID) -> StagingErasure:
        v = self._v
        v._event(principal, P.MIGRATION_ERASE, "allowed", step="erase",
                 migration=str(migration_id))
        now = v._clock.now()
        destroyed = v._keystore.destroy_staging(migration_id)
        self._staging_keys.pop(migration_id, None)
        removed = 0
        area = self._area(migration_id)
        if area.exists():
            removed = sum(1 for f in area.iterdir() if f.suffix == ".sealed")
            shutil.rmtree(area)
        dropped = self._store.drop_quarantine_bytes(migration_id)
        self._store.set_status(migration_id, "erased", erased_at=now)
        self._store.add_report(migration_id, "erase", now, principal.actor_id, json.dumps(
            {"key_destroyed": destroyed, "files_removed": removed,
             "quarantine_bytes_dropped": dropped}))
        return StagingErasure(migration_id, now, principal.actor_id, destroyed, removed, dropped)

    def erase_expired(self, principal: Principal) -> list[StagingErasure]:
        """Erase every staging area past its deadline (run by every `labvault` command).

        A migration whose run is in progress is left for the next command.
        """
        now = self._v._clock.now()
        done = []
        for r in self._store.migrations():
            if r.erased_at is None and _aware(r.staging_deadline) <= now:
                try:
                    done.append(self.erase(principal, r.id))
                except MigrationBusy:
                    continue
        return done


def _recorded_plan(doc: dict[str, Any]) -> dict[str, Any]:
    """What the vault keeps of a plan: counts and digests. No paths, and attached reports by
    size and digest only (their names are often the patient's)."""
    try:
        return {
            "created_at": doc["created_at"], "created_by": doc["created_by"],
            "sources": [{"index": int(s["index"]), "name": s["name"], "format": s["format"],
                         "size": s["size"], "sha256": s["sha256"], "units": int(s["units"]),
                         "attachments": [{"index": a["index"], "size": a["size"],
                                          "sha256": a["sha256"]}
                                         for a in s.get("attachments", [])]}
                        for s in doc["sources"]],
        }
    except (KeyError, TypeError, ValueError):
        raise ConfigurationError("the plan lacks its sources' names, sizes, digests or "
                                 "counts") from None


def _aware(ts: datetime) -> datetime:
    """SQLite hands back naive UTC timestamps; PostgreSQL aware ones."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


__all__ = ["MigrationInfo", "StagingArea", "StagingErasure"]
