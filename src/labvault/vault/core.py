"""The one door to personal data.

Every call takes a `Principal` and, in this order: checks the permission (deny by default),
appends the audit event (fail closed: no audit, no data), reads or writes ciphertext through
the store, and opens or seals it with the patient's data key. Nothing else in labvault holds
keys, ciphertext or the patient tables.

Searches run their blind-index query before the audit event is written, so that the event can
name the internal ids the search returned (or record a miss); nothing is returned before the
event is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.exc import SQLAlchemyError

from labvault import codec
from labvault.access.permissions import Permission, allowed, reaches, require_fresh_mfa
from labvault.access.principal import Principal
from labvault.audit.copy import JOURNAL_KEY, AuditTrail, copy_from_setting
from labvault.audit.log import ChainedAuditLog
from labvault.audit.sink import AuditEvent, AuditSink
from labvault.breach import findings
from labvault.clock import Clock, SystemClock
from labvault.config import Settings
from labvault.crypto.blind import NAME_BIRTH_INDEX, NIR_INDEX, BlindIndex
from labvault.crypto.envelope import (
    AesGcmFieldCipher,
    FieldCipher,
    RecordRef,
    Sealed,
    dek_context,
    new_data_key,
    staging_key_context,
)
from labvault.crypto.keys import KeyProvider, LocalKeyFile
from labvault.crypto.signing import Signer
from labvault.domain.normalize import name_birth_key, normalize_nir, patient_nir
from labvault.domain.records import Attachment, Comment, Order, Patient, PatientRecord, Result
from labvault.domain.validation import validate_record
from labvault.errors import AccessDenied, KeyUnavailable, NotFound, StepUpRequired, StoreError
from labvault.secret import Secret
from labvault.store import schema
from labvault.store.engine import make_engine, sqlite_path
from labvault.store.imports import ImportStore
from labvault.store.keystore import KeyStore, WrappedKey
from labvault.store.records import RecordStore, RowBatch
from labvault.vault.imports import ImportDesk
from labvault.watch.shape import SEARCH_SHAPE_KEY, SearchShape

if TYPE_CHECKING:
    from labvault.breach.desk import BreachDesk
    from labvault.vault.accounts import AccountDesk
    from labvault.vault.audit import AuditDesk
    from labvault.vault.results import ResultDesk
    from labvault.vault.retention import RetentionDesk
    from labvault.watch.desk import WatchDesk

CipherFactory = Callable[[Secret[bytes], int], FieldCipher]
Progress = Callable[[int], None]
DEK_VERSION = 1

# Field categories an event names (what was touched, never the values).
IDENTIFIERS = ("identifiers",)
IDENTITY = ("identity", "administrative")
FULL_RECORD = ("identity", "administrative", "orders", "results", "comments", "attachments")


@dataclass(frozen=True, slots=True)
class Erasure:
    patient_id: uuid.UUID
    erased_at: Any
    key_destroyed: bool


@dataclass(frozen=True, slots=True)
class Rotation:
    new_version: int
    rewrapped: int
    retired: tuple[int, ...]


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Vault:
    def __init__(
        self,
        *,
        records: RecordStore,
        keystore: KeyStore,
        keys: KeyProvider,
        audit: AuditSink,
        clock: Clock | None = None,
        cipher_factory: CipherFactory = AesGcmFieldCipher,
        staging_dir: Path | None = None,
    ) -> None:
        self._records = records
        self._keystore = keystore
        self._keys = keys
        self._audit = audit
        self._clock = clock or SystemClock()
        self._cipher_factory = cipher_factory
        self._nir_index = BlindIndex(NIR_INDEX, keys.index_key(NIR_INDEX))
        self._name_index = BlindIndex(NAME_BIRTH_INDEX, keys.index_key(NAME_BIRTH_INDEX))
        self.imports = ImportDesk(self, ImportStore(records.engine), staging_dir)
        self._search_shape = SearchShape(keys.index_key(SEARCH_SHAPE_KEY))

    def __repr__(self) -> str:
        return f"Vault(keys={self._keys!r})"

    @cached_property
    def accounts(self) -> AccountDesk:
        """Named accounts, enrolment, MFA, sessions and service tokens."""
        from labvault.vault.accounts import AccountDesk

        return AccountDesk(self)

    @cached_property
    def audit_log(self) -> AuditDesk:
        """Reading, verifying and exporting the audit log (itself audited)."""
        from labvault.vault.audit import AuditDesk

        return AuditDesk(self)

    @cached_property
    def results(self) -> ResultDesk:
        """Orders and results entered for patients already stored, and their validation."""
        from labvault.vault.results import ResultDesk

        return ResultDesk(self)

    @cached_property
    def breach(self) -> BreachDesk:
        """Incidents and their scopes, computed from the audit log and signed."""
        from labvault.breach.desk import BreachDesk

        return BreachDesk(self)

    @cached_property
    def retention(self) -> RetentionDesk:
        """Retention: crypto-shredding what is past its term, signed erasure certificates."""
        from labvault.vault.retention import RetentionDesk

        return RetentionDesk(self)

    @cached_property
    def watch(self) -> WatchDesk:
        """Supervision: alerts, their acknowledgement, account unlocking, honeytokens."""
        from labvault.watch.desk import WatchDesk

        return WatchDesk(self)

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        passphrase: Secret[str] | None = None,
        clock: Clock | None = None,
        cipher_factory: CipherFactory = AesGcmFieldCipher,
        keys: KeyProvider | None = None,
    ) -> Vault:
        settings.check()
        data_engine = make_engine(settings.database_url)
        key_engine = make_engine(settings.keystore_url)
        schema.upgrade(data_engine, "data")
        schema.upgrade(key_engine, "keys")
        provider = keys or LocalKeyFile.open(settings.key_file, passphrase)
        clock = clock or SystemClock()
        return cls(records=RecordStore(data_engine), keystore=KeyStore(key_engine),
                   keys=provider, audit=_audit_trail(settings, data_engine, provider, clock),
                   clock=clock, cipher_factory=cipher_factory,
                   staging_dir=settings.data_dir / "staging")

    @classmethod
    def init(cls, settings: Settings, *, passphrase: Secret[str] | None = None,
             clock: Clock | None = None,
             cipher_factory: CipherFactory = AesGcmFieldCipher) -> Vault:
        """Create a new vault: settings file, key file (0600), both databases' schemas."""
        LocalKeyFile.create(settings.key_file, passphrase)
        settings.save()
        return cls.open(settings, passphrase=passphrase, clock=clock,
                        cipher_factory=cipher_factory)

    def close(self) -> None:
        self._audit.close()
        self._records.engine.dispose()
        self._keystore.engine.dispose()

    # -- the gate ------------------------------------------------------------------------------
    def _event(self, principal: Principal, permission: Permission, outcome: str,
               patient_ids: Iterable[uuid.UUID] = (), categories: tuple[str, ...] = (),
               **detail: object) -> None:
        self._audit.append(AuditEvent(
            at=self._clock.now(), actor=principal.actor_id, role=principal.role,
            source=principal.source, purpose=principal.purpose, action=str(permission),
            outcome=outcome, patient_ids=tuple(patient_ids), detail=detail,
            request_id=principal.request_id, categories=categories))

    def _authorize(self, principal: Principal, permission: Permission,
                   patient_ids: Iterable[uuid.UUID] = ()) -> None:
        """Deny by default; a refusal is audited too. Bulk operations want a fresh MFA proof."""
        ids = list(patient_ids)
        if not allowed(principal, permission) or not reaches(principal, ids):
            self._event(principal, permission, "denied", ids)
            raise AccessDenied(principal.actor_id, principal.role, permission)
        try:
            if principal.step_up_due:  # the watcher asked for a fresh second factor
                raise StepUpRequired(permission)
            require_fresh_mfa(principal, permission, len(ids), self._clock.now())
        except StepUpRequired:
            self._event(principal, permission, "step_up_required", ids)
            raise

    def _cipher_for(self, patient_id: uuid.UUID, wrapped: WrappedKey | None) -> FieldCipher:
        if wrapped is None:
            raise KeyUnavailable(f"no data key for patient {patient_id} (erased or unknown)")
        dek = self._keys.unwrap(wrapped.kek_version, wrapped.wrapped, dek_context(patient_id))
        return self._cipher_factory(dek, wrapped.dek_version)

    # -- writing -------------------------------------------------------------------------------
    def put_patient(self, principal: Principal, record: PatientRecord) -> uuid.UUID:
        self.put_patients(principal, [record])
        return record.id

    def put_patients(self, principal: Principal, records: Iterable[PatientRecord], *,
                     batch_size: int = 500, progress: Progress | None = None) -> int:
        """Validate, seal and store patient records; returns how many were stored."""
        self._authorize(principal, Permission.PATIENT_CREATE)
        stored = 0
        for chunk in _batched(records, batch_size):
            for record in chunk:
                validate_record(record)
            now = self._clock.now()
            self._event(principal, Permission.PATIENT_CREATE, "allowed", [r.id for r in chunk],
                        results=sum(r.result_count() for r in chunk))
            batch, keys = RowBatch(), []
            for record in chunk:
                dek = new_data_key()
                kek_version, wrapped = self._keys.wrap(dek, dek_context(record.id))
                keys.append(WrappedKey(record.id, kek_version, DEK_VERSION, wrapped))
                self._seal_record(record, self._cipher_factory(dek, DEK_VERSION), now, batch)
            # The key is committed first: a crash in between leaves an unused key, never
            # ciphertext that no key opens.
            self._keystore.insert_many(keys, now)
            try:
                self._records.insert(batch)
            except BaseException:
                # Leave no orphan key behind: a retry with the same ids must succeed.
                self._drop_unused_keys([k.patient_id for k in keys])
                raise
            stored += len(chunk)
            if progress:
                progress(len(chunk))
        return stored

    def _drop_unused_keys(self, patient_ids: list[uuid.UUID]) -> None:
        """After a failed write, delete the keys of patients whose rows were not stored.

        A commit can succeed while the client sees an error (a connection lost on the
        acknowledgement): keys of rows that exist are kept. If the database cannot say, every
        key is kept — an unused key is harmless, a lost one loses the patient's data.
        """
        try:
            stored = self._records.existing(patient_ids)
        except (StoreError, SQLAlchemyError, OSError):
            return
        unused = [pid for pid in patient_ids if pid not in stored]
        if unused:
            self._keystore.delete_many(unused)

    def _seal_record(self, record: PatientRecord, cipher: FieldCipher, now: Any,
                     batch: RowBatch) -> None:
        self._seal_patient(record.patient, cipher, now, batch)
        self._seal_orders(record.id, record.orders, cipher, now, batch, [0, 0, 0])

    def _seal_patient(self, p: Patient, cipher: FieldCipher, now: Any, batch: RowBatch) -> None:
        pid = p.id
        row = _seal(cipher, "patient", pid, p, codec.PATIENT)
        nir = patient_nir(p)
        row.update(id=pid, created_at=now,
                   nir_bidx=self._nir_index.compute(nir) if nir else None,
                   name_birth_bidx=self._name_index.compute(name_birth_key(p.last_name,
                                                                           p.birth_date)))
        batch.patients.append(row)

    def _seal_orders(self, pid: uuid.UUID, orders: Iterable[Order], cipher: FieldCipher,
                     now: Any, batch: RowBatch, positions: list[int]) -> None:
        """Seal orders appended to a patient; `positions` (next order, last result, last
        comment) is advanced in place."""
        order_position, result_position, position = positions
        for order in orders:
            orow = _seal(cipher, "lab_order", _order_ref(order.id, pid, order_position), order,
                         codec.ORDER)
            orow.update(id=order.id, patient_id=pid, position=order_position, created_at=now)
            batch.orders.append(orow)
            batch.sites.add((pid, order.lab_finess))
            for c in order.comments:
                position += 1
                batch.comments.append(self._comment_row(cipher, c, pid, order.id, None,
                                                        position, now))
            for res in order.results:
                result_position += 1
                rrow = _seal(cipher, "result",
                             _result_ref(res.id, pid, order.id, result_position), res, codec.RESULT)
                rrow.update(id=res.id, order_id=order.id, patient_id=pid,
                            position=result_position, created_at=now,
                            findings=cipher.seal(
                                "result", "findings",
                                _result_ref(res.id, pid, order.id, result_position),
                                findings.of_result(res.code_system, res.code, res.label)))
                batch.results.append(rrow)
                for c in res.comments:
                    position += 1
                    batch.comments.append(self._comment_row(cipher, c, pid, order.id, res.id,
                                                            position, now))
                for n, a in enumerate(res.attachments):
                    arow = _seal(cipher, "attachment",
                                 _attachment_ref(a.id, pid, order.id, res.id, n), a,
                                 codec.ATTACHMENT)
                    arow.update(id=a.id, patient_id=pid, order_id=order.id, result_id=res.id,
                                position=n, created_at=now)
                    batch.attachments.append(arow)
            order_position += 1
        positions[:] = [order_position, result_position, position]

    @staticmethod
    def _comment_row(cipher: FieldCipher, c: Comment, pid: uuid.UUID, order_id: uuid.UUID,
                     result_id: uuid.UUID | None, position: int, now: Any) -> dict[str, Any]:
        ref = _comment_ref(c.id, pid, order_id, result_id, position)
        return {"id": c.id, "patient_id": pid, "order_id": order_id, "result_id": result_id,
                "position": position, "created_at": now,
                "text": cipher.seal("comment", "text", ref, c.text.encode("utf-8")),
                "findings": cipher.seal("comment", "findings", ref, findings.of_comment(c.text))}

    # -- searching -----------------------------------------------------------------------------
    def find_patients(self, principal: Principal, *, nir: str | None = None,
                      last_name: str | None = None,
                      birth_date: date | None = None) -> list[uuid.UUID]:
        """Exact-match search by NIR, or by last name + birth date, through blind indexes."""
        self._authorize(principal, Permission.PATIENT_SEARCH)
        if nir is not None:
            by = "nir"
            normalised = normalize_nir(nir)
            ids = self._records.ids_by_index("nir_bidx", self._nir_index.compute(normalised))
            shape = self._search_shape.of_nir(normalised)
        elif last_name is not None and birth_date is not None:
            by = "name_birth"
            ids = self._records.ids_by_index(
                "name_birth_bidx", self._name_index.compute(name_birth_key(last_name, birth_date)))
            shape = self._search_shape.of_name_birth(last_name, birth_date)
        else:
            raise ValueError("search by nir, or by last_name and birth_date")
        try:  # a search that names many patients is a bulk read
            require_fresh_mfa(principal, Permission.PATIENT_SEARCH, len(ids), self._clock.now())
        except StepUpRequired:
            self._event(principal, Permission.PATIENT_SEARCH, "step_up_required", (), by=by,
                        hits=len(ids))
            raise
        self._event(principal, Permission.PATIENT_SEARCH, "allowed", ids, IDENTIFIERS, by=by,
                    hits=len(ids), **shape)
        return ids

    # -- reading -------------------------------------------------------------------------------
    def get_patient(self, principal: Principal, patient_id: uuid.UUID) -> Patient:
        """Identity and administrative data of one patient (no results)."""
        self._authorize(principal, Permission.PATIENT_READ, [patient_id])
        rows = self._rows_or_miss(principal, Permission.PATIENT_READ, patient_id, False)
        self._event(principal, Permission.PATIENT_READ, "allowed", [patient_id], IDENTITY)
        return self._open_rows(patient_id, rows).patient

    def get_record(self, principal: Principal, patient_id: uuid.UUID) -> PatientRecord:
        """A patient with orders, results and comments."""
        self._authorize(principal, Permission.PATIENT_READ, [patient_id])
        self._authorize(principal, Permission.RESULT_READ, [patient_id])
        rows = self._rows_or_miss(principal, Permission.RESULT_READ, patient_id, True)
        self._event(principal, Permission.RESULT_READ, "allowed", [patient_id], FULL_RECORD)
        return self._open_rows(patient_id, rows)

    def _rows_or_miss(self, principal: Principal, permission: Permission,
                      patient_id: uuid.UUID, with_results: bool) -> Any:
        """The patient's rows (ciphertext only: nothing is opened before the event is written);
        an unknown id is audited as a miss (probing ids is what the watcher looks for)."""
        rows = self._records.load(patient_id, with_results)
        if rows is None:
            self._event(principal, permission, "not_found", [patient_id])
            raise NotFound("patient", patient_id)
        return rows

    def iter_records(self, principal: Principal, *, batch_size: int = 200,
                     progress: Progress | None = None,
                     recheck: Callable[[], object] | None = None) -> Iterator[PatientRecord]:
        """Every live patient record (bulk export); one audit event per batch. `recheck` runs
        after each batch's event and before any of its records is opened: a session the
        watcher locked on that event raises there, and the batch stays sealed."""
        self._authorize(principal, Permission.PATIENT_EXPORT)
        for ids in self._records.iter_ids(batch_size):
            self._event(principal, Permission.PATIENT_EXPORT, "allowed", ids, FULL_RECORD)
            if recheck is not None:
                recheck()
            for pid in ids:
                try:
                    record = self._load(pid, with_results=True)
                except KeyUnavailable:
                    # An erasure interrupted between destroying the key and dropping the
                    # ciphertext: the record is already unreadable; `erase patient` finishes it.
                    self._event(principal, Permission.PATIENT_EXPORT, "key_missing", [pid])
                    continue
                yield record
            if progress:
                progress(len(ids))

    def count_patients(self, principal: Principal) -> int:
        self._authorize(principal, Permission.PATIENT_SEARCH)
        n = self._records.count()
        self._event(principal, Permission.PATIENT_SEARCH, "allowed", by="count", hits=n)
        return n

    def _load(self, patient_id: uuid.UUID, with_results: bool) -> PatientRecord:
        rows = self._records.load(patient_id, with_results)
        if rows is None:
            raise NotFound("patient", patient_id)
        return self._open_rows(patient_id, rows)

    def _open_rows(self, patient_id: uuid.UUID, rows: Any) -> PatientRecord:
        p, cipher = self._open_patient(patient_id, rows.patient)
        orders = _open_orders(cipher, rows.orders, rows.results, rows.comments, rows.attachments)
        return PatientRecord(p, tuple(o for _, o in orders))

    def _load_patient(self, patient_id: uuid.UUID) -> tuple[Patient, FieldCipher]:
        """Identity of one patient, with the cipher of their data key (unwrapped once)."""
        rows = self._records.load(patient_id, with_results=False)
        if rows is None:
            raise NotFound("patient", patient_id)
        return self._open_patient(patient_id, rows.patient)

    def _open_patient(self, patient_id: uuid.UUID, row: Any) -> tuple[Patient, FieldCipher]:
        if row.erased_at is not None:
            raise KeyUnavailable(f"patient {patient_id} was erased")
        cipher = self._cipher_for(patient_id, self._keystore.get(patient_id))
        return Patient(id=patient_id, **_open(cipher, "patient", patient_id, row,
                                              codec.PATIENT)), cipher

    def _open_orders_of(self, patient_ids: list[uuid.UUID], order_ids: list[uuid.UUID],
                        ciphers: dict[uuid.UUID, FieldCipher] | None = None,
                        ) -> dict[uuid.UUID, tuple[int, Order]]:
        """Given orders (of the given patients), opened, with their positions. Ciphers already
        at hand are used as they are; the other patients' keys are fetched in one query."""
        ciphers = ciphers or {}
        rows = self._records.load_orders(order_ids)
        by_patient: dict[uuid.UUID, tuple[list[Any], ...]] = {
            pid: ([], [], [], []) for pid in patient_ids}
        for i, table_rows in enumerate((rows.orders, rows.results, rows.comments,
                                        rows.attachments)):
            for row in table_rows:
                by_patient.setdefault(row.patient_id, ([], [], [], []))[i].append(row)
        keys = self._keystore.get_many([pid for pid in by_patient if pid not in ciphers])
        out: dict[uuid.UUID, tuple[int, Order]] = {}
        for pid, mine in by_patient.items():
            cipher = ciphers.get(pid) or self._cipher_for(pid, keys.get(pid))
            for position, order in _open_orders(cipher, *mine):
                out[order.id] = (position, order)
        return out

    # -- erasure and keys ----------------------------------------------------------------------
    def erase_patient(self, principal: Principal, patient_id: uuid.UUID) -> Erasure:
        """Crypto-shred a patient: destroy the data key, then drop the ciphertext.

        Every copy of the data database, including backups taken before now, holds only
        ciphertext that no remaining key opens.
        """
        self._authorize(principal, Permission.PATIENT_ERASE, [patient_id])
        if self._records.load(patient_id, with_results=False) is None:
            self._event(principal, Permission.PATIENT_ERASE, "not_found", [patient_id])
            raise NotFound("patient", patient_id)
        self._event(principal, Permission.PATIENT_ERASE, "allowed", [patient_id])
        now = self._clock.now()
        self.imports.forget(patient_id)
        destroyed = self._keystore.destroy(patient_id)
        self._records.erase(patient_id, now)
        return Erasure(patient_id, now, destroyed)

    def rotate_keys(self, principal: Principal, progress: Progress | None = None) -> Rotation:
        """New master key version; rewrap every data key under it; retire the old versions.

        Data is not re-encrypted. Interrupted, it is simply run again: keys still under an old
        version are rewrapped by the next run before that version is retired.
        """
        from labvault.crypto.envelope import pending_key_context

        self._authorize(principal, Permission.KEYS_ROTATE)
        self._event(principal, Permission.KEYS_ROTATE, "allowed")
        new = self._keys.add_version()
        self._audit.rekey()  # the audit's epoch key moves to the new version before retirement
        rewrapped = 0
        old_versions = [v for v in self._keys.versions() if v != new]
        for version in old_versions:
            for batch in self._keystore.iter_version(version):
                fresh = []
                for k in batch:
                    ctx = dek_context(k.patient_id)
                    dek = self._keys.unwrap(k.kek_version, k.wrapped, ctx)
                    v, wrapped = self._keys.wrap(dek, ctx)
                    fresh.append(WrappedKey(k.patient_id, v, k.dek_version, wrapped))
                self._keystore.rewrap(fresh)
                rewrapped += len(fresh)
                if progress:
                    progress(len(fresh))
        for version in old_versions:
            # Staging keys of migrations in progress move to the new version too: retiring
            # their version would otherwise erase the staging area by accident.
            for migration_id, wrapped in self._keystore.staging_by_version(version):
                ctx = staging_key_context(migration_id)
                v, rewrapped_key = self._keys.wrap(self._keys.unwrap(version, wrapped, ctx), ctx)
                self._keystore.rewrap_staging(migration_id, v, rewrapped_key)
            # So do the pending keys of re-keys under way: rows may be sealed under them already.
            for patient_id, wrapped in self._keystore.pending_by_version(version):
                ctx = pending_key_context(patient_id)
                v, rewrapped_key = self._keys.wrap(self._keys.unwrap(version, wrapped, ctx), ctx)
                self._keystore.rewrap_pending(patient_id, (version, wrapped), v, rewrapped_key)
        leftovers = self._keystore.count_by_version()
        for counts in (self._keystore.staging_count_by_version(),
                       self._keystore.pending_count_by_version()):
            for version, n in counts.items():
                leftovers[version] = leftovers.get(version, 0) + n
        retired = []
        for version in old_versions:
            if leftovers.get(version, 0) == 0:
                self._keys.retire(version)
                retired.append(version)
        return Rotation(new, rewrapped, tuple(retired))

    def signing_public_key(self) -> Ed25519PublicKey:
        """The public half of the key that signs certificates (public: no permission)."""
        return Signer(self._keys).public_key

    def key_status(self, principal: Principal) -> dict[int, int]:
        """Data keys per master key version."""
        self._authorize(principal, Permission.KEYS_ROTATE)
        self._event(principal, Permission.KEYS_ROTATE, "allowed", what="key-status")
        return self._keystore.count_by_version()


def _audit_trail(settings: Settings, engine: Any, keys: KeyProvider, clock: Clock) -> AuditTrail:
    """The chained audit log (started, with the auditor's k0 written to the data directory, on
    a vault that has none yet) and the copy the settings name."""
    from labvault.vault.audit import VERIFIER_FILE, start_chain

    chain = ChainedAuditLog(engine, keys, Signer(keys), clock)
    start_chain(chain, settings.data_dir / VERIFIER_FILE)
    db = sqlite_path(settings.database_url)
    copy = copy_from_setting(settings.audit_copy, settings.data_dir, keys.index_key(JOURNAL_KEY))
    return AuditTrail(chain, copy, clock,
                      watch={"database": db.parent} if db is not None else {},
                      low_space_mb=settings.audit_low_space_mb)


def _order_ref(order_id: uuid.UUID, patient_id: uuid.UUID, position: int) -> str:
    """Binds an order's fields to its patient and position, not only to its own id."""
    return f"{order_id.hex}/p={patient_id.hex}/n={position}"


def _result_ref(result_id: uuid.UUID, patient_id: uuid.UUID, order_id: uuid.UUID,
                position: int) -> str:
    return f"{result_id.hex}/p={patient_id.hex}/o={order_id.hex}/n={position}"


def _comment_ref(comment_id: uuid.UUID, patient_id: uuid.UUID, order_id: uuid.UUID,
                 result_id: uuid.UUID | None, position: int) -> str:
    on = result_id.hex if result_id is not None else "-"
    return f"{comment_id.hex}/p={patient_id.hex}/o={order_id.hex}/r={on}/n={position}"


def _open_orders(cipher: FieldCipher, order_rows: Iterable[Any], result_rows: Iterable[Any],
                 comment_rows: Iterable[Any],
                 attachment_rows: Iterable[Any] = ()) -> list[tuple[int, Order]]:
    """Orders (with results, comments, attachments) opened from their rows, with positions."""
    files: dict[uuid.UUID, list[Attachment]] = {}
    for a in attachment_rows:
        ref = _attachment_ref(a.id, a.patient_id, a.order_id, a.result_id, a.position)
        files.setdefault(a.result_id, []).append(
            Attachment(id=a.id, **_open(cipher, "attachment", ref, a, codec.ATTACHMENT)))
    comments: dict[tuple[uuid.UUID, uuid.UUID | None], list[Comment]] = {}
    for c in comment_rows:
        ref = _comment_ref(c.id, c.patient_id, c.order_id, c.result_id, c.position)
        text = cipher.open("comment", "text", ref, c.text).decode("utf-8")
        comments.setdefault((c.order_id, c.result_id), []).append(Comment(text, id=c.id))
    results: dict[uuid.UUID, list[Result]] = {}
    for r in result_rows:
        fields = _open(cipher, "result", _result_ref(r.id, r.patient_id, r.order_id, r.position),
                       r, codec.RESULT)
        results.setdefault(r.order_id, []).append(Result(
            id=r.id, comments=tuple(comments.get((r.order_id, r.id), ())),
            attachments=tuple(files.get(r.id, ())), **fields))
    return [(o.position, Order(id=o.id, results=tuple(results.get(o.id, ())),
                               comments=tuple(comments.get((o.id, None), ())),
                               **_open(cipher, "lab_order", _order_ref(o.id, o.patient_id,
                                                                       o.position), o, codec.ORDER)))
            for o in order_rows]


def _attachment_ref(attachment_id: uuid.UUID, patient_id: uuid.UUID, order_id: uuid.UUID,
                    result_id: uuid.UUID, position: int) -> str:
    return f"{attachment_id.hex}/p={patient_id.hex}/o={order_id.hex}/r={result_id.hex}/n={position}"


def _seal(cipher: FieldCipher, table: str, record_id: RecordRef, obj: Any,
          columns: dict[str, codec.Codec]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    seal = cipher.seal
    for column, (encode, _) in columns.items():
        value = getattr(obj, column)
        row[column] = None if value is None else seal(table, column, record_id, encode(value))
    return row


def _open(cipher: FieldCipher, table: str, record_id: RecordRef, row: Any,
          columns: dict[str, codec.Codec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mapping = row._mapping
    for column, (_, decode) in columns.items():
        sealed: Sealed | None = mapping[column]
        out[column] = None if sealed is None else decode(cipher.open(table, column, record_id,
                                                                     sealed))
    return out


__all__ = ["Erasure", "Rotation", "Vault", "validate_record"]
