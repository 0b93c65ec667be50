"""The vault's door to its own audit log: verify, read, report, export, recover.

Reading the log is an access like any other: every call checks the principal's permission
(``audit:log:read`` or ``audit:log:verify``) and appends its own event first. Results are plain
dataclasses of ids, times, roles and tags: the log never held a personal value.

`verify` checks, from the stored columns: every event's chain hash, its tag under the epoch key
derived from the auditor's k0 (when given), the signed checkpoints stored with the log and,
when given, an exported copy of them (signed by the key they name, which must be the vault's),
that no stored event lies outside the chain, that the log reaches the head, and that the
patient index behind who-read reports (``audit_event_patient``) holds exactly the patient ids
each verified event chains, no row missing, extra or altered (kind ``index``). A range
(``start``/``end``) trusts the stored hash just before it. It raises `TamperDetected` at the
first position where the log differs from the one written. `who_read` (and `events` for one
patient) also check each event the index gives against the event's own chained patient ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labvault.access.permissions import Permission, allowed
from labvault.access.principal import Principal
from labvault.audit.chain import GENESIS, Checkpoint, TamperDetected, placed_at, verify
from labvault.audit.copy import JOURNAL_KEY, AuditTrail, FileCopy, Recovery
from labvault.audit.export import json_line, syslog_of
from labvault.audit.log import ChainedAuditLog, LoggedEvent
from labvault.audit.verifier import (
    CHECKPOINTS_FORMAT,
    VERIFIER_FILE,
    VERIFIER_FORMAT,
    CheckpointExport,
    check_signature,
    load_checkpoints,
    read_verifier_key,
    start_chain,
    write_verifier_key,
)
from labvault.crypto.signing import Signer, key_id, load_public, public_pem
from labvault.errors import AccessDenied, AuditUnavailable
from labvault.secret import Secret

if TYPE_CHECKING:
    from labvault.vault.core import Vault

P = Permission
HEALTH_READERS = (P.AUDIT_READ, P.ACCOUNT_MANAGE)  # the DPO, administrators
PROGRESS_EVERY = 10_000


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    first: int
    last: int
    tags_checked: bool  # False: no k0 given, hashes and signed checkpoints only
    checkpoints: int  # signed checkpoints compared with the log
    exported_checkpoints: int  # of which from an exported copy
    audited: bool = True  # False: the log could not take this verification's own event


@dataclass(frozen=True, slots=True)
class OwnAccess:
    """One line of a patient's own who-read list: no account."""

    at: datetime
    role: str
    action: str
    purpose: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Access:
    """One line of a who-read report."""

    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    purpose: str
    outcome: str
    request_id: str = ""



class AuditDesk:
    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        trail = vault._audit
        self._trail: AuditTrail | None = trail if isinstance(trail, AuditTrail) else None
        self._log: ChainedAuditLog = trail.chain if isinstance(trail, AuditTrail) else trail

    def _gate(self, principal: Principal, permission: Permission,
              patient_ids: tuple[uuid.UUID, ...] = (), **detail: object) -> None:
        self._vault._authorize(principal, permission, patient_ids)
        self._vault._event(principal, permission, "allowed", patient_ids, **detail)

    # -- verification --------------------------------------------------------------------------
    def verify(self, principal: Principal, key: Secret[bytes] | None, start: int = 1,
               end: int | None = None, checkpoints: CheckpointExport | None = None,
               progress: Callable[[int], None] | None = None) -> VerifyReport:
        self._vault._authorize(principal, P.AUDIT_VERIFY)
        start = max(1, start)
        head = self._log.head()  # the log as it stands now; this call's own event comes after
        top = head.seq if head is not None else 0
        last = top if end is None else min(end, top)
        marks = [c for c in self._marks(checkpoints, start, top)
                 if end is None or c.last <= last]
        try:
            self._vault._event(principal, P.AUDIT_VERIFY, "allowed", what="verify",
                               start=start, end=end, with_key=key is not None,
                               exported_checkpoints=checkpoints is not None)
            audited = True
        except AuditUnavailable:
            # A broken log is what this call diagnoses, and its answer holds no personal
            # value: it goes on, and says that it could not be recorded.
            audited = False
        prev = GENESIS if start == 1 else self._log.stored_hash(start - 1)
        if prev is None:
            raise TamperDetected(start - 1, "deleted", "the event before the range is missing")
        # The patient index is compared with the events by the database, alongside the chain.
        with ThreadPoolExecutor(1, thread_name_prefix="audit-index") as pool:
            index_agrees = pool.submit(self._log.index_agrees, start, last)
            stream = self._log.iter_chained(start, last)
            try:
                n = verify(stream if progress is None else _counted(stream, progress), key,
                           checkpoints=marks, start=start, start_hash=prev)
            except TamperDetected as exc:
                stream.close()
                index_agrees.cancel()
                raise self._index_first(start, exc.position) or self._refined(exc) from None
            finally:
                stream.close()  # the driver cursor goes back now, not when collected
            if start + n - 1 < last:
                raise self._index_first(start, start + n) or TamperDetected(
                    start + n, "truncated", "the log ends before its head")
            if not index_agrees.result():
                # The counts differ: find where. None when only an event naming one patient
                # twice made them differ.
                found = self._index_first(start, last + 1)
                if found is not None:
                    raise found
        if end is None or end >= top:
            stray = self._log.stray(top)
            now = self._log.head()
            if stray is not None and (stray[1] or now is None or stray[0] > now.seq):
                raise TamperDetected(stray[0], "inserted", "an event outside the chain")
            if any(c.last > (now.seq if now else 0) for c in self._log.checkpoints(top + 1)):
                raise TamperDetected(top + 1, "truncated", "a checkpoint lies beyond the head")
            if head is not None and top and self._log.stored_hash(top) != head.last_hash:
                raise TamperDetected(top, "modified", "the head does not match the log")
        return VerifyReport(n, start, last, key is not None, len(marks),
                            len(checkpoints.checkpoints) if checkpoints else 0, audited)

    def _marks(self, exported: CheckpointExport | None, start: int,
               top: int) -> list[Checkpoint]:
        """Checkpoints from `start` on, signatures checked: the stored ones up to the head
        `top` (later ones are being written now), and an exported copy, which must agree with
        them and stands where the log lost its own."""
        signer = Signer(self._vault._keys)
        stored = {c.last: c for c in self._log.checkpoints(end=top)}
        for c in stored.values():
            check_signature(signer.public_key, c)
        marks = dict(stored)
        if exported is not None:
            public = load_public(exported.public_key_pem.encode())
            if key_id(public) != signer.key_id:
                raise TamperDetected(exported.checkpoints[0].first if exported.checkpoints else 1,
                                     "checkpoint", "the copy was signed by another key")
            for c in exported.checkpoints:
                check_signature(public, c)
                mine = stored.get(c.last)
                if mine is not None and mine != c:
                    raise TamperDetected(c.first, "checkpoint", "the log differs from its copy")
                marks[c.last] = c
        return sorted((c for c in marks.values() if c.first >= start), key=lambda c: c.last)

    def _index_first(self, start: int, before: int) -> TamperDetected | None:
        """The first event from `start` up to `before` (excluded: the events verified) whose
        patient index rows are not its chained patient ids, as a finding; None if none."""
        seq = self._log.index_mismatch(start, before - 1) if before > start else None
        if seq is None:
            return None
        return TamperDetected(seq, "index", "the patient index differs from the event")

    def _refined(self, exc: TamperDetected) -> TamperDetected:
        if exc.kind not in ("modified", "forged"):
            return exc
        p = exc.position
        prev = GENESIS if p == 1 else self._log.stored_hash(p - 1)
        kind = None
        if prev is not None:
            with closing(self._log.iter_chained(p)) as rest:
                kind = placed_at(p, prev, rest)
        return TamperDetected(p, kind) if kind else exc

    # -- reading -------------------------------------------------------------------------------
    def events(self, principal: Principal, since_seq: int = 0, limit: int = 100,
               patient_id: uuid.UUID | None = None) -> list[LoggedEvent]:
        self._gate(principal, P.AUDIT_READ, (patient_id,) if patient_id else (),
                   what="events", since_seq=since_seq, limit=limit)
        found = self._log.logged(since_seq=since_seq, limit=limit, patient_id=patient_id)
        return list(found if patient_id is None else _naming(found, patient_id))

    def tail(self, principal: Principal, n: int = 20) -> list[LoggedEvent]:
        self._gate(principal, P.AUDIT_READ, what="tail", n=n)
        return list(reversed(list(self._log.logged(limit=n, newest_first=True))))

    def follow(self, principal: Principal, n: int = 20,
               wait: Callable[[], bool] | None = None) -> Iterator[list[LoggedEvent]]:
        """The last `n` events, then (while `wait()` returns True) the new ones after each
        wait. One audit event for the whole session."""
        last_events = self.tail(principal, n)
        yield last_events
        last = last_events[-1].seq if last_events else 0
        while wait is not None and wait():
            fresh = list(self._log.logged(since_seq=last, limit=1000))
            if fresh:
                last = fresh[-1].seq
            yield fresh

    def length(self) -> int:
        """How many events the chain holds (no permission: a count, nothing personal)."""
        head = self._log.head()
        return head.seq if head is not None else 0

    def who_read(self, principal: Principal, patient_id: uuid.UUID) -> list[Access]:
        """Every access to the patient's record (the log's own consultations excluded)."""
        return self._accesses(principal, P.AUDIT_READ, patient_id, "who-read")

    def _accesses(self, principal: Principal, permission: Permission, patient_id: uuid.UUID,
                  what: str) -> list[Access]:
        self._gate(principal, permission, (patient_id,), what=what)
        return [Access(le.seq, le.event.at, le.event.actor, le.event.role, le.event.action,
                       le.event.purpose, le.event.outcome, le.event.request_id)
                for le in _naming(self._log.logged(patient_id=patient_id), patient_id)
                if not le.event.action.startswith("audit:")]

    def own_accesses(self, principal: Principal) -> list[OwnAccess]:
        """The signed-in patient's own who-read list (GDPR art. 15): each access to their
        record with its time, the role, the action, the purpose and the outcome, refusals
        included. Not the staff member's account: that identity is not owed to the patient as
        a rule (CJEU, C-579/21, 22 June 2023); the DPO's report (`who_read`) names it when the
        patient needs it to check that an access was lawful."""
        pid = principal.patient_id
        if pid is None:  # staff, services, the local operator: no record of their own
            self._vault._event(principal, P.AUDIT_READ_OWN, "denied")
            raise AccessDenied(principal.actor_id, principal.role, P.AUDIT_READ_OWN)
        return [OwnAccess(a.at, a.role, a.action, a.purpose, a.outcome)
                for a in self._accesses(principal, P.AUDIT_READ_OWN, pid, "own-accesses")]

    def checkpoints(self, principal: Principal) -> CheckpointExport:
        self._gate(principal, P.AUDIT_READ, what="checkpoints")
        signer = Signer(self._vault._keys)
        head = self._log.head()
        return CheckpointExport(tuple(self._log.checkpoints()), public_pem(signer.public_key),
                                signer.key_id, head.seq if head else 0)

    def export(self, principal: Principal, fmt: str = "jsonl", since_seq: int = 0,
               hostname: str | None = None) -> Iterator[str]:
        """Stored events after `since_seq`, as JSON lines or RFC 5424 messages."""
        if fmt not in ("jsonl", "syslog"):
            raise ValueError("format is jsonl or syslog")
        self._gate(principal, P.AUDIT_READ, what="export", format=fmt, since_seq=since_seq)
        for le in self._log.logged(since_seq=since_seq):
            yield json_line(le) if fmt == "jsonl" else syslog_of(le, hostname)

    def recover(self, principal: Principal, journal: Path | None = None) -> Recovery:
        """Chain the events the file copy kept while the database was unavailable."""
        self._gate(principal, P.AUDIT_VERIFY, what="recover")
        if self._trail is None:
            raise ValueError("no audit trail")
        return self._trail.recover(FileCopy(journal, self._vault._keys.index_key(JOURNAL_KEY))
                                   if journal else None)

    def health(self, principal: Principal | None = None) -> dict[str, Any]:
        """The audit's state (free space, second copy): nothing personal. Called for a
        principal (an API route), it is for administrators and readers of the log only; a
        refusal is audited."""
        if principal is not None and not any(allowed(principal, p) for p in HEALTH_READERS):
            self._vault._event(principal, P.AUDIT_READ, "denied", what="health")
            raise AccessDenied(principal.actor_id, principal.role, P.AUDIT_READ)
        if self._trail is None:
            return {"audit": "ok"}
        return self._trail.health()


def _naming(found: Generator[LoggedEvent], patient_id: uuid.UUID) -> Iterator[LoggedEvent]:
    """The events the patient index gave for `patient_id`, each checked against the event's
    own chained patient ids: an index row naming a patient the event does not name is
    tampering, never a line of a report."""
    with closing(found):  # the database connection goes back at once, found or not
        for le in found:
            if patient_id not in le.event.patient_ids:
                raise TamperDetected(le.seq, "index", "the patient index names a patient the "
                                     "event does not")
            yield le


def _counted(events: Iterator[Any], progress: Callable[[int], None]) -> Iterator[Any]:
    n = 0
    for ev in events:
        yield ev
        n += 1
        if n == PROGRESS_EVERY:
            progress(n)
            n = 0
    if n:
        progress(n)


__all__ = ["CHECKPOINTS_FORMAT", "VERIFIER_FILE", "VERIFIER_FORMAT", "Access", "AuditDesk",
           "CheckpointExport", "OwnAccess", "VerifyReport", "load_checkpoints",
           "read_verifier_key", "start_chain", "write_verifier_key"]
