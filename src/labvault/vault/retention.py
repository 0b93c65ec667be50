"""The retention desk (`vault.retention`): crypto-shredding what is past its term, and proving it.

`run` scans every live patient (records' clinical dates only; the terms are
`labvault.vault.retention_policy`) and, unless it is a dry run: erases through
`Vault.erase_patient` a patient with no order nor result within ``inactive_patient_years``;
**re-keys** a patient still active whose records are past their term; erases the staging areas
of migrations older than ``staging_days`` (`ImportDesk.erase`); and issues a signed erasure
certificate (internal ids, the policy, the time, the audit position) kept in
``erasure_certificate``.

A re-key draws a new data key and keeps it pending in the key store; in one transaction it
deletes the expired rows and opens every other row of the patient (``findings`` included) under
the old key and seals it under the new one, same table, column and record reference, next key
version; the new key then replaces the old one, whose freed pages are scrubbed. A copy of the
data database taken before holds the expired rows under a key that no longer exists anywhere.
Rows another writer seals under the old key meanwhile are sealed again after the swap; reads of
that patient fail in between (milliseconds). A re-key interrupted anywhere is finished by the
next run, before it scans: every row moves to the pending key, which is then swapped in.

Audited as ``vault:retention:run`` (erasures as ``vault:patient:erase`` and
``vault:migration:erase``): the scan's event names no patient, for it returns no value; each
re-key's event names its patient. A real run over more than 20 patients wants a fresh second
factor, as any bulk operation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from labvault import codec
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.breach import findings
from labvault.breach.classify import SpecialCategory
from labvault.crypto.envelope import (
    FieldCipher,
    Sealed,
    dek_context,
    new_data_key,
    pending_key_context,
)
from labvault.crypto.signing import Signer
from labvault.errors import InvalidCiphertext, KeyUnavailable, MigrationBusy, NotFound, StoreError
from labvault.secret import Secret
from labvault.store.keystore import WrappedKey
from labvault.store.retention import RECORD_TABLES, RetentionStore, sealed_columns
from labvault.store.tables import attachment, comment, lab_order, patient, result
from labvault.vault import retention_policy as rp
from labvault.vault.core import _attachment_ref, _comment_ref, _order_ref, _result_ref
from labvault.vault.retention_policy import Expired, RetentionPlan, RetentionPolicy, aware

if TYPE_CHECKING:
    from labvault.store.retention import ScanRows
    from labvault.vault.core import Vault

P = Permission
KIND = "retention"
_DT = codec.DATETIME[1]
_GONE = {attachment: "attachments", comment: "comments", result: "results", lab_order: "orders"}


@dataclass(frozen=True, slots=True)
class RetentionRun:
    plan: RetentionPlan
    dry_run: bool
    certificate_id: int | None = None
    document: dict[str, Any] | None = None  # the signed certificate (a real run)


class RetentionDesk:
    def __init__(self, vault: Vault) -> None:
        self._v = vault
        self._store = RetentionStore(vault._records.engine, vault._keystore)

    def __repr__(self) -> str:
        return "RetentionDesk()"

    # -- the run ---------------------------------------------------------------------------------
    def run(self, principal: Principal, policy: RetentionPolicy, *,
            dry_run: bool = False) -> RetentionRun:
        v = self._v
        v._authorize(principal, P.RETENTION_RUN)
        now = v._clock.now()
        v._event(principal, P.RETENTION_RUN, "allowed", step="dry-run" if dry_run else "scan",
                 policy=policy.as_dict())
        if dry_run:
            return RetentionRun(self._plan(principal, policy, now), True)
        with self._no_import():
            return self._run(principal, policy, now)

    @contextmanager
    def _no_import(self) -> Iterator[None]:
        """The vault's import lock: a migration caches patients' keys while it imports."""
        imports = self._v.imports
        if imports._staging_dir is None:
            yield
            return
        with imports._lock("imports.lock", "a migration is importing into this vault: the "
                                           "retention policy runs once it is done"):
            yield

    def _run(self, principal: Principal, policy: RetentionPolicy, now: datetime) -> RetentionRun:
        v, skipped = self._v, []
        resumed = self._resume(principal, skipped)
        plan = self._plan(principal, policy, now)
        v._authorize(principal, P.RETENTION_RUN, [*plan.patients,
                                                  *(e.patient_id for e in plan.records)])
        erased = []
        for pid in plan.patients:
            try:
                erased.append({"patient": str(pid),
                               "key_destroyed": v.erase_patient(principal, pid).key_destroyed})
            except NotFound:
                skipped.append({"patient": str(pid), "reason": "erased meanwhile"})
        rekeyed = []
        for expired in plan.records:
            try:
                rekeyed.append(self._rekey(principal, expired))
            except (StoreError, InvalidCiphertext, KeyUnavailable) as exc:
                # The rows may be gone already; the old key is destroyed by the next run.
                skipped.append({**expired.as_dict(), "reason": type(exc).__name__})
        if rekeyed:
            self._store.scrub()
        staging = []
        for mid in plan.staging:
            try:
                gone = v.imports.erase(principal, mid)
            except MigrationBusy:
                skipped.append({"migration": str(mid), "reason": "a run holds its lock"})
                continue
            staging.append({"migration": str(mid), "key_destroyed": gone.key_destroyed,
                            "files_removed": gone.files_removed})
        body = rp.certificate_body(principal, plan, self._store.audit_head(), erased, rekeyed,
                                   staging, resumed, skipped)
        cert_id, document = self._certify(principal, body)
        return RetentionRun(plan, False, cert_id, document)

    def _plan(self, principal: Principal, policy: RetentionPolicy, now: datetime) -> RetentionPlan:
        v = self._v
        inactive: list[uuid.UUID] = []
        expired: list[Expired] = []
        unreadable: list[uuid.UUID] = []
        unclassified = 0
        for ids in v._records.iter_ids(500):
            scanned = self._store.scan(ids)
            keys = v._keystore.get_many(list(scanned))
            for pid, rows in scanned.items():
                try:
                    facts = _facts(v._cipher_for(pid, keys.get(pid)), rows)
                except (InvalidCiphertext, KeyUnavailable):
                    unreadable.append(pid)  # a re-key to resume, or an erasure to finish
                    continue
                unclassified += facts.unclassified
                verdict = rp.expiry(policy, facts, now)
                if verdict == rp.INACTIVE:
                    inactive.append(pid)
                elif isinstance(verdict, Expired):
                    expired.append(verdict)
        cutoff = policy.staging_cutoff(now)
        staging = tuple(m.id for m in v.imports.migrations(principal) if m.erased_at is None
                        and (m.created_at <= cutoff or m.staging_deadline <= now))
        return RetentionPlan(now, policy, tuple(inactive), tuple(expired), staging,
                             tuple(unreadable), unclassified)

    # -- re-keying -------------------------------------------------------------------------------
    def _rekey(self, principal: Principal, expired: Expired) -> dict[str, Any]:
        v, pid = self._v, expired.patient_id
        stored = v._keystore.get(pid)
        if stored is None:
            raise KeyUnavailable(f"no data key for patient {pid}")
        v._event(principal, P.RETENTION_RUN, "allowed", [pid], rp.CATEGORIES, step="rekey",
                 **{k: len(getattr(expired, k)) for k in rp.CATEGORIES})
        old = v._cipher_for(pid, stored)
        dek, version = new_data_key(), stored.dek_version + 1
        kek_version, wrapped = v._keys.wrap(dek, pending_key_context(pid))
        self._store.put_pending(pid, kek_version, wrapped, v._clock.now())
        self._finish(pid, old, stored.dek_version, dek, version, expired)
        return {**expired.as_dict(), "old_key_version": stored.dek_version,
                "new_key_version": version}

    def _finish(self, pid: uuid.UUID, old: FieldCipher, old_version: int, dek: Secret[bytes],
                version: int, expired: Expired | None) -> None:
        """Re-seal, swap the key in, re-seal what was written under the old key meanwhile."""
        v = self._v
        new = v._cipher_factory(dek, version)
        self._reseal(pid, (old, old_version), (new, version), expired)
        kek_version, wrapped = v._keys.wrap(dek, dek_context(pid))
        if not self._store.swap_key(WrappedKey(pid, kek_version, version, wrapped), old_version):
            raise KeyUnavailable(f"the data key of patient {pid} changed during the re-key")
        v.imports.forget(pid)
        self._reseal(pid, (old, old_version), (new, version), None)
        self._store.drop_pending(pid)

    def _reseal(self, pid: uuid.UUID, old: tuple[FieldCipher, int], new: tuple[FieldCipher, int],
                expired: Expired | None) -> None:
        ciphers = {old[1]: old[0], new[1]: new[0]}
        with self._store.patient_transaction(pid) as tx:
            if expired is not None:
                for table in RECORD_TABLES:
                    tx.delete(table, list(getattr(expired, _GONE[table])))
            sites: set[str] = set()
            for table in (patient, lab_order, result, comment, attachment):
                columns = sealed_columns(table)
                changes = []
                for row in tx.rows(table):
                    ref, change = _REFS[table.name](row), {}
                    for column in columns:
                        if (value := row._mapping[column]) is None:
                            continue
                        sealed = value if isinstance(value, Sealed) else Sealed(value)
                        cipher = ciphers.get(sealed.key_version)
                        if cipher is None:
                            raise InvalidCiphertext()
                        if cipher is new[0] and column != "lab_finess":
                            continue  # sealed under the new key already
                        plain = cipher.open(table.name, column, ref, sealed)
                        if column == "lab_finess":  # an order's site: its care link stays
                            sites.add(plain.decode("utf-8"))
                        if cipher is old[0]:
                            fresh = new[0].seal(table.name, column, ref, plain)
                            change[column] = fresh if isinstance(value, Sealed) else fresh.blob
                    if change:
                        changes.append({"id": row.id, **change})
                tx.update(table, changes)
            if expired is not None:
                tx.keep_sites(sites)

    def _resume(self, principal: Principal, skipped: list[dict[str, Any]]) -> list[str]:
        """Finish the re-keys an earlier run left halfway; returns their patients."""
        v, done = self._v, []
        for pid in self._store.pending_patients():
            pending, stored = self._store.get_pending(pid), v._keystore.get(pid)
            if pending is None:
                continue
            dek = v._keys.unwrap(pending[0], pending[1], pending_key_context(pid))
            current = None if stored is None else v._keys.unwrap(
                stored.kek_version, stored.wrapped, dek_context(pid))
            if stored is None or current is None or hmac.compare_digest(current.reveal(),
                                                                        dek.reveal()):
                self._store.drop_pending(pid)  # swapped already, or the patient was erased
                continue
            v._event(principal, P.RETENTION_RUN, "allowed", [pid], rp.CATEGORIES,
                     step="rekey-resume")
            try:
                self._finish(pid, v._cipher_factory(current, stored.dek_version),
                             stored.dek_version, dek, stored.dek_version + 1, None)
            except (StoreError, InvalidCiphertext, KeyUnavailable) as exc:
                skipped.append({"patient": str(pid), "reason": f"resume: {type(exc).__name__}"})
                continue
            done.append(str(pid))
        if done:
            self._store.scrub()
        return done

    # -- certificates ----------------------------------------------------------------------------
    def _certify(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        v = self._v
        signer = Signer(v._keys)
        signature = signer.sign(rp.signed_message(body))
        digest = hashlib.sha256(rp.canonical(body)).digest()
        v._event(principal, P.RETENTION_RUN, "allowed", step="certificate", digest=digest.hex(),
                 **body["counts"])
        cert_id = self._store.insert_certificate({
            "issued_at": v._clock.now(), "kind": KIND, "issued_by": principal.actor_id,
            "document": rp.canonical(body).decode("utf-8"), "digest": digest,
            "signature": signature, "key_id": signer.key_id})
        return cert_id, rp.signed_document(signer, body, signature, cert_id)

    def certificates(self, principal: Principal) -> list[dict[str, Any]]:
        """The erasure certificates issued (no body: ids of the patients are in each)."""
        self._v._authorize(principal, P.RETENTION_RUN)
        self._v._event(principal, P.RETENTION_RUN, "allowed", step="certificate-list")
        return [{"id": r.id, "issued_at": aware(r.issued_at).isoformat(), "issued_by": r.issued_by,
                 "digest": bytes(r.digest).hex(), "key_id": r.key_id}
                for r in self._store.certificates(KIND)]

    def certificate(self, principal: Principal, certificate_id: int) -> dict[str, Any]:
        """One certificate, as the signed document exported and checked."""
        self._v._authorize(principal, P.RETENTION_RUN)
        row = self._store.certificate(certificate_id)
        if row is None or row.kind != KIND:
            raise NotFound("erasure certificate", certificate_id)
        self._v._event(principal, P.RETENTION_RUN, "allowed", step="certificate-read",
                       certificate=certificate_id)
        return rp.signed_document(Signer(self._v._keys), json.loads(row.document),
                               bytes(row.signature), certificate_id)

    def last_run_at(self) -> datetime | None:
        """When the last certificate was issued (no personal data: the scheduler's question)."""
        found = self._store.last_issued_at(KIND)
        return None if found is None else aware(found)


_REFS = {  # each table's record reference, as `Vault._seal_orders` binds it
    "patient": lambda r: r.id,
    "lab_order": lambda r: _order_ref(r.id, r.patient_id, r.position),
    "result": lambda r: _result_ref(r.id, r.patient_id, r.order_id, r.position),
    "comment": lambda r: _comment_ref(r.id, r.patient_id, r.order_id, r.result_id, r.position),
    "attachment": lambda r: _attachment_ref(r.id, r.patient_id, r.order_id, r.result_id,
                                            r.position),
}


def _facts(cipher: FieldCipher, rows: ScanRows) -> rp.PatientFacts:
    """Ids and clinical dates of one patient's records, and whether each result is genetic
    (the only values the scan opens)."""
    def when(table: str, column: str, ref: Any, sealed: Sealed | None) -> datetime | None:
        return None if sealed is None else aware(_DT(cipher.open(table, column, ref, sealed)))

    p = rows.patient
    born = (None if p.birth_date is None
            else codec.DATE[1](cipher.open("patient", "birth_date", p.id, p.birth_date)))
    facts = rp.PatientFacts(p.id, aware(p.created_at), born)
    orders: dict[uuid.UUID, rp.OrderFacts] = {}
    for o in rows.orders:
        ref = _order_ref(o.id, o.patient_id, o.position)
        at = (when("lab_order", "sampled_at", ref, o.sampled_at)
              or when("lab_order", "requested_at", ref, o.requested_at) or aware(o.created_at))
        orders[o.id] = rp.OrderFacts(o.id, at)
    results: dict[uuid.UUID, rp.ResultFacts] = {}
    for r in rows.results:
        ref = _result_ref(r.id, r.patient_id, r.order_id, r.position)
        if r.findings is None:  # stored before classification: kept as long as a genetic one
            genetic = True
            facts.unclassified += 1
        else:
            special, _ = findings.decode(cipher.open("result", "findings", ref, r.findings))
            genetic = SpecialCategory.GENETIC in special
        found = rp.ResultFacts(r.id, when("result", "observed_at", ref, r.observed_at)
                               or orders[r.order_id].at, genetic)
        results[r.id] = found
        orders[r.order_id].results.append(found)
    for c in rows.comments:
        if c.result_id is not None:
            results[c.result_id].comments.append(c.id)
        else:
            orders[c.order_id].comments.append(c.id)
    for a in rows.attachments:
        results[a.result_id].attachments.append(a.id)
    facts.orders = list(orders.values())
    return facts


__all__ = ["KIND", "RetentionDesk", "RetentionPlan", "RetentionRun"]
