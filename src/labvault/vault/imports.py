"""The vault's door for migrations: import of units, reconciliation, quarantine, certificate.

Same rules as the rest of the vault: every call checks the principal's permission and writes
its audit event before data moves. The staging area (sealed copies, lock, erasure) is
`labvault.vault.staging.StagingArea`, which this desk extends.

Import is exactly-once per unit: a batch of units (their patients, orders, results, comments,
provenance rows, quarantine rows and the units' outcomes) is one transaction of the data
database, and batches commit in source order, so after a crash the committed units are a prefix
and `progress` says where to resume.

Patients are matched, in this order, by NIR (blind index), then by the legacy system's patient
code within the migration (keyed HMAC); a unit whose identity contradicts the matched patient's
(birth date, names, sex or NIR) is quarantined rather than attached to the wrong person.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.crypto.envelope import (
    AesGcmFieldCipher,
    FieldCipher,
    dek_context,
    new_data_key,
)
from labvault.crypto.signing import Signer
from labvault.domain.normalize import normalize_name, patient_nir
from labvault.domain.records import Order, Patient, Sex
from labvault.domain.validation import validate_record
from labvault.errors import (
    InvalidRecord,
)
from labvault.ingest.base import Parsed, Position, Rejected, Unit
from labvault.ingest.content import canonical_bytes, order_content, patient_content, record_content
from labvault.secret import Secret
from labvault.store.imports import STORED_OUTCOMES, ImportStore
from labvault.store.keystore import WrappedKey
from labvault.store.records import RowBatch
from labvault.store.tables import import_unit, order_provenance, quarantine, source_patient
from labvault.vault.certification import Verification, certificate_body, sign_certificate
from labvault.vault.staging import MigrationInfo, StagingArea, StagingErasure

if TYPE_CHECKING:
    from labvault.vault.core import Vault

P = Permission
CONTENT_KEY = "migration/content/v1"
SOURCE_CODE_KEY = "migration/source-patient/v1"
_CACHE = 4096


@dataclass(frozen=True, slots=True)
class UnitCheck:
    """The reconciliation of one source unit with what the vault returns."""

    seq: int
    position: Position
    status: str  # match, mismatch, missing, quarantined, duplicate, erased
    detail: str | None = None  # which field differs (a path, never a value)


@dataclass(frozen=True, slots=True, repr=False)
class QuarantineEntry:
    file_index: int
    seq: int
    line: int | None
    segment: str | None
    field: str
    reason: str
    raw: Secret[bytes] | None  # only with `with_bytes`, and None once the staging is erased

    def __repr__(self) -> str:
        return f"QuarantineEntry(file={self.file_index}, seq={self.seq}, field={self.field!r})"


class _PatientState:
    __slots__ = ("cipher", "patient", "positions")

    def __init__(self, cipher: FieldCipher, patient: Patient, positions: list[int]) -> None:
        self.cipher = cipher
        self.patient = patient
        self.positions = positions


def _first(names: str | None) -> str | None:
    parts = normalize_name(names).split() if names else []
    return parts[0] if parts else None


def identity_conflict(stored: Patient, incoming: Patient) -> str | None:
    """The first identity field on which two records of "the same" patient disagree."""
    if stored.birth_date != incoming.birth_date:
        return "patient.birth_date"
    names = {normalize_name(n) for n in (stored.last_name, stored.birth_name) if n}
    if not names & {normalize_name(n) for n in (incoming.last_name, incoming.birth_name) if n}:
        return "patient.last_name"
    a, b = _first(stored.first_names), _first(incoming.first_names)
    if a and b and a != b:
        return "patient.first_names"
    if Sex.UNKNOWN not in (stored.sex, incoming.sex) and stored.sex != incoming.sex:
        return "patient.sex"
    na, nb = patient_nir(stored), patient_nir(incoming)
    if na and nb and na != nb:
        return "patient.nir"
    return None


def _first_difference(a: Any, b: Any, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (count)"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return path


class ImportDesk(StagingArea):
    """Import of units, reconciliation, quarantine and certificate, over the staging area."""

    def __init__(self, vault: Vault, store: ImportStore, staging_dir: Path | None) -> None:
        super().__init__(vault, store, staging_dir)
        self._content_key = vault._keys.index_key(CONTENT_KEY).reveal()
        self._code_key = vault._keys.index_key(SOURCE_CODE_KEY).reveal()
        self._states: OrderedDict[uuid.UUID, _PatientState] = OrderedDict()

    def __repr__(self) -> str:
        return "ImportDesk()"

    def progress(self, principal: Principal, migration_id: uuid.UUID) -> dict[int, int]:
        self._v._authorize(principal, P.MIGRATION_RUN)
        return self._store.progress(migration_id)

    # -- import ----------------------------------------------------------------------------------
    def _digest(self, content: bytes) -> bytes:
        return hmac.new(self._content_key, content, hashlib.sha256).digest()[:16]

    def _code(self, migration_id: uuid.UUID, code: str) -> bytes:
        msg = f"{migration_id.hex}|{code}".encode()
        return hmac.new(self._code_key, msg, hashlib.sha256).digest()[:16]

    def _state(self, pid: uuid.UUID) -> _PatientState:
        state = self._states.get(pid)
        if state is not None:
            self._states.move_to_end(pid)
            return state
        v = self._v
        patient, cipher = v._load_patient(pid)
        state = _PatientState(cipher, patient, v._records.next_positions([pid])[pid])
        self._remember(pid, state)
        return state

    def forget(self, pid: uuid.UUID) -> None:
        """Drop a patient's cached data key and identity (on erasure)."""
        self._states.pop(pid, None)

    def _remember(self, pid: uuid.UUID, state: _PatientState) -> None:
        self._states[pid] = state
        if len(self._states) > _CACHE:
            self._states.popitem(last=False)

    def import_units(self, principal: Principal, migration_id: uuid.UUID, file_index: int,
                     units: Sequence[Unit]) -> Counter[str]:
        """Store a batch of units (in source order) in one transaction; returns the counts."""
        v = self._v
        v._authorize(principal, P.MIGRATION_RUN)
        now = v._clock.now()
        scipher = AesGcmFieldCipher(self._staging_key(migration_id), 1)
        counts: Counter[str] = Counter()
        unit_rows: list[dict[str, Any]] = []
        q_rows: list[dict[str, Any]] = []

        def unit_row(seq: int, outcome: str, pid: uuid.UUID | None = None,
                     digest: bytes | None = None) -> None:
            counts[outcome] += 1
            unit_rows.append({"migration_id": migration_id, "file_index": file_index, "seq": seq,
                              "outcome": outcome, "patient_id": pid, "content_digest": digest,
                              "created_at": now})

        def to_quarantine(seq: int, pos: Position, field: str, reason: str, raw: bytes) -> None:
            ref = f"{migration_id.hex}/{file_index}/{seq}"
            q_rows.append({"migration_id": migration_id, "file_index": file_index, "seq": seq,
                           "line": pos.line, "segment": (pos.segment or "")[:200] or None,
                           "field": field[:200], "reason": reason[:500], "created_at": now,
                           "raw": scipher.seal("quarantine", "raw", ref, raw)})
            unit_row(seq, "quarantined")

        accepted: list[tuple[Parsed, bytes, bytes, bytes | None, bytes | None]] = []
        seen: set[bytes] = set()
        for u in units:
            if isinstance(u, Rejected):
                to_quarantine(u.seq, u.position, u.field, u.reason, u.raw)
                continue
            content = canonical_bytes(record_content(u.record))
            try:
                validate_record(u.record)
            except InvalidRecord as e:
                to_quarantine(u.seq, u.position, e.field, e.reason, content)
                continue
            nir = patient_nir(u.record.patient)
            accepted.append((u, content, self._digest(content),
                             v._nir_index.compute(nir) if nir else None,
                             self._code(migration_id, u.source_patient_id)
                             if u.source_patient_id else None))
        known = self._store.known_digests([a[2] for a in accepted])
        by_nir = v._records.ids_by_index_many("nir_bidx", [a[3] for a in accepted if a[3]])
        by_code = self._store.patients_by_code(migration_id, [a[4] for a in accepted if a[4]])
        candidates = {p for ids in by_nir.values() for p in ids} | set(by_code.values())
        live = v._records.live(sorted(candidates))
        for pid in candidates - live:
            self._states.pop(pid, None)
        # Written before any stored patient is decrypted for the identity check.
        v._event(principal, P.MIGRATION_RUN, "allowed", sorted(live), step="import-match",
                 migration=str(migration_id), file=file_index, units=len(units))
        batch, keys, prov_rows, sp_rows = RowBatch(), [], [], []
        new_nir: dict[bytes, uuid.UUID] = {}
        new_code: dict[bytes, uuid.UUID] = {}
        pinned: dict[uuid.UUID, _PatientState] = {}  # every patient this batch touches
        for u, content, digest, nir_bidx, code in accepted:
            if digest in known or digest in seen:
                unit_row(u.seq, "duplicate", digest=digest)
                continue
            p = u.record.patient
            pid = None
            if nir_bidx is not None:
                pid = new_nir.get(nir_bidx)
                found = by_nir.get(nir_bidx, [])
                if pid is None and len(found) > 1:
                    to_quarantine(u.seq, u.position, "patient.nir",
                                  "several patients in the vault share this NIR", content)
                    continue
                pid = pid or (found[0] if found else None)
            if pid is None and code is not None:
                pid = new_code.get(code) or by_code.get(code)
            if pid is not None:
                if pid not in live and pid not in pinned:
                    to_quarantine(u.seq, u.position, "patient",
                                  "this patient was erased from the vault", content)
                    continue
                state = pinned.get(pid) or self._state(pid)
                conflict = identity_conflict(state.patient, p)
                if conflict:
                    to_quarantine(u.seq, u.position, conflict,
                                  "differs from the patient stored under the same NIR or "
                                  "patient code", content)
                    continue
                outcome = "stored"
            else:
                pid = p.id
                dek = new_data_key()
                kek_version, wrapped = v._keys.wrap(dek, dek_context(pid))
                keys.append(WrappedKey(pid, kek_version, 1, wrapped))
                state = _PatientState(v._cipher_factory(dek, 1), p, [0, 0, 0])
                v._seal_patient(p, state.cipher, now, batch)
                outcome = "new"
            pinned[pid] = state
            seen.add(digest)
            if nir_bidx is not None:
                new_nir.setdefault(nir_bidx, pid)
            if code is not None and code not in by_code and code not in new_code:
                new_code[code] = pid
                sp_rows.append({"migration_id": migration_id, "code_bidx": code, "patient_id": pid})
            v._seal_orders(pid, u.record.orders, state.cipher, now, batch, state.positions)
            prov_rows += [{"order_id": o.id, "migration_id": migration_id,
                           "file_index": file_index, "seq": u.seq} for o in u.record.orders]
            counts["results"] += u.record.result_count()
            unit_row(u.seq, outcome, pid, digest)
        v._event(principal, P.MIGRATION_RUN, "allowed", sorted(pinned), step="import",
                 migration=str(migration_id), file=file_index, units=len(units),
                 **{k: counts[k] for k in ("new", "stored", "quarantined", "duplicate")})
        v._keystore.insert_many(keys, now)
        try:
            v._records.insert(batch, also=[(source_patient, sp_rows), (import_unit, unit_rows),
                                           (order_provenance, prov_rows), (quarantine, q_rows)])
        except BaseException:
            self._states.clear()  # positions advanced for rows that may not have been written
            v._drop_unused_keys([k.patient_id for k in keys])
            raise
        for pid, state in pinned.items():
            self._remember(pid, state)
        return counts

    # -- reconciliation --------------------------------------------------------------------------
    def reconcile(self, principal: Principal, migration_id: uuid.UUID, file_index: int,
                  units: Sequence[Unit]) -> list[UnitCheck]:
        """Compare each source unit with what the vault returns for it after decryption."""
        v = self._v
        v._authorize(principal, P.MIGRATION_VERIFY)
        seqs = [u.seq for u in units]
        rows = self._store.units(migration_id, file_index, seqs)
        stored = [s for s in seqs if s in rows and rows[s].outcome in STORED_OUTCOMES]
        order_ids = self._store.orders_of_units(migration_id, file_index, stored)
        pids = sorted({rows[s].patient_id for s in stored})
        live = v._records.live(pids)
        v._event(principal, P.MIGRATION_VERIFY, "allowed", sorted(live), step="verify",
                 migration=str(migration_id), file=file_index, units=len(units))
        live_ids = sorted(live)
        opened = {pid: v._load_patient(pid) for pid in live_ids}
        patients = {pid: p for pid, (p, _) in opened.items()}
        orders = v._open_orders_of(live_ids, [o for s in stored if rows[s].patient_id in live
                                              for o in order_ids.get(s, [])],
                                   {pid: c for pid, (_, c) in opened.items()})
        known = self._store.known_digests(
            [rows[u.seq].content_digest for u in units
             if u.seq in rows and rows[u.seq].outcome == "duplicate"])
        out = []
        for u in units:
            row = rows.get(u.seq)
            if row is None:
                out.append(UnitCheck(u.seq, u.position, "missing"))
            elif row.outcome == "quarantined":
                out.append(UnitCheck(u.seq, u.position, "quarantined"))
            elif isinstance(u, Rejected):
                out.append(UnitCheck(u.seq, u.position, "mismatch", "unit (rejected on re-read)"))
            elif row.outcome == "duplicate":
                ok = (row.content_digest in known and
                      self._digest(canonical_bytes(record_content(u.record))) == row.content_digest)
                out.append(UnitCheck(u.seq, u.position, "duplicate" if ok else "mismatch",
                                     None if ok else "duplicate of no stored unit"))
            elif row.patient_id not in live:
                # The person's data was erased since (right to erasure): nothing to compare.
                out.append(UnitCheck(u.seq, u.position, "erased"))
            else:
                got = [orders[o] for o in order_ids.get(u.seq, []) if o in orders]
                got.sort(key=lambda o: o[0])
                out.append(self._compare(u, row.outcome, patients[row.patient_id],
                                         [o for _, o in got]))
        return out

    @staticmethod
    def _compare(u: Parsed, outcome: str, stored: Patient, orders: list[Order]) -> UnitCheck:
        src = [order_content(o) for o in u.record.orders]
        got = [order_content(o) for o in orders]
        if src != got:
            return UnitCheck(u.seq, u.position, "mismatch", _first_difference(src, got, "orders"))
        if outcome == "new":
            a, b = patient_content(u.record.patient), patient_content(stored)
            if a != b:
                return UnitCheck(u.seq, u.position, "mismatch", _first_difference(a, b, "patient"))
        elif conflict := identity_conflict(stored, u.record.patient):
            return UnitCheck(u.seq, u.position, "mismatch", conflict)
        return UnitCheck(u.seq, u.position, "match")

    def unit_counts(self, principal: Principal, migration_id: uuid.UUID) -> dict[int, Counter[str]]:
        self._v._authorize(principal, P.MIGRATION_READ)
        return self._store.unit_counts(migration_id)

    def extras(self, principal: Principal, migration_id: uuid.UUID,
               last_seq: dict[int, int]) -> int:
        """Units recorded for this migration that the source does not have."""
        self._v._authorize(principal, P.MIGRATION_VERIFY)
        n = sum(self._store.units_beyond(migration_id, f, s) for f, s in last_seq.items())
        for f in self._store.files_recorded(migration_id) - set(last_seq):
            n += self._store.units_beyond(migration_id, f, 0)
        return n

    # -- quarantine, reports, status -------------------------------------------------------------
    def quarantine(self, principal: Principal, migration_id: uuid.UUID, *,
                   with_bytes: bool = False) -> Iterator[QuarantineEntry]:
        v = self._v
        v._authorize(principal, P.QUARANTINE_READ if with_bytes else P.MIGRATION_READ)
        v._event(principal, P.QUARANTINE_READ if with_bytes else P.MIGRATION_READ, "allowed",
                 step="quarantine", migration=str(migration_id))
        scipher = None
        for r in self._store.quarantine_rows(migration_id):
            raw = None
            if with_bytes and r.raw is not None:
                if scipher is None:
                    scipher = AesGcmFieldCipher(self._staging_key(migration_id), 1)
                ref = f"{migration_id.hex}/{r.file_index}/{r.seq}"
                raw = Secret(scipher.open("quarantine", "raw", ref, r.raw))
            yield QuarantineEntry(r.file_index, r.seq, r.line, r.segment, r.field, r.reason, raw)

    def finish_run(self, principal: Principal, migration_id: uuid.UUID) -> dict[int, Counter[str]]:
        """Mark the import done and record the units' outcomes as the vault counts them."""
        self.set_status(principal, migration_id, "imported")
        totals = self._store.unit_counts(migration_id)
        self._report(principal, migration_id, "run",
                     {"units": {str(f): dict(c) for f, c in sorted(totals.items())}})
        return totals

    def verification(self, principal: Principal, migration_id: uuid.UUID) -> Verification:
        """Start a verification: feed it every unit of every planned file, then `finish`."""
        self._v._authorize(principal, P.MIGRATION_VERIFY)
        planned = {int(s["index"]): int(s["units"]) for s in self._plan(migration_id)["sources"]}
        return Verification(self, principal, migration_id, planned)

    def certificate(self, principal: Principal, migration_id: uuid.UUID,
                    issued_at: datetime) -> dict[str, Any]:
        """The signed migration certificate, built from what the vault recorded."""
        v = self._v
        v._authorize(principal, P.MIGRATION_READ)
        info = self.info(principal, migration_id)
        body = certificate_body(self._plan(migration_id), self.reports(principal, migration_id),
                                self._store.unit_counts(migration_id),
                                self._store.quarantine_summary(migration_id), info, issued_at,
                                principal.actor_id)
        v._event(principal, P.MIGRATION_READ, "allowed", step="certificate",
                 migration=str(migration_id))
        return sign_certificate(Signer(v._keys), body)

__all__ = ["ImportDesk", "MigrationInfo", "QuarantineEntry", "StagingErasure", "UnitCheck",
           "identity_conflict"]
