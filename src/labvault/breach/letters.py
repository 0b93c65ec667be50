"""Letters for the people no electronic notice reached (GDPR article 34).

A person listed in an incident's latest scope whose notices all ended without a message sent
(no e-mail or mobile on file, or every channel failed) has not been told. `Letters.prepare`
writes them a letter: the text of the e-mail notice, addressed to their name and postal
address, one per page of one printable HTML document, each with its own verification code (so
that the letter, too, can be checked on the public page). An update a later scope owes to
someone no message can reach (recorded ``undeliverable`` by `Outbox.queue_incident`) is
written the same way, from the scope that owes it. Each letter is recorded as a notice of
channel ``letter``, outcome ``printed``; unique indexes allow one first letter per person and
incident and one update letter per person and scope, so two runs at once write each once.

Only people who were notified and not reached get one: nobody before `queue_incident` has
run for them, nor while one of their notices is still waiting; decoys never (they have no
notice), sealed-only exposures only if they were notified. Names and addresses are opened
after one audit event naming the people (purpose ``breach notification``, categories identity
and administrative); beyond ``BULK_LIMIT`` people this needs a fresh second factor. A person
without a postal address, or erased, is counted, not written to.

The letters are recorded, ``queued``, before the document is handed over, so that two runs
never write the same letter twice; once the document is on disk the caller calls `confirm`
(``done``), and if it cannot write it, `withdraw`, which deletes exactly the letters that run
recorded, so that the next run writes them again. A run that died in between (killed) leaves
its letters queued: after `GRACE` the next run withdraws them (audited) and writes them
again; within it they count as another run's, in progress. The document holds personal data
in clear by nature: to print, post and delete.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from labvault import codec
from labvault.access.account_rules import aware
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.breach import notice_text as text
from labvault.breach.notices import PURPOSE, TOLD
from labvault.errors import InvalidRecord, NotFound
from labvault.secret import Secret
from labvault.store.notices import DONE, QUEUED

if TYPE_CHECKING:
    from labvault.breach.notices import Outbox

IDENTITY = ("identity", "administrative")  # the audit categories of name and address
GRACE = timedelta(minutes=10)  # a letters run writes its document within this, or died
NAME_COLUMNS = ("last_name", "first_names", "address")


@dataclass(frozen=True, slots=True)
class LetterRun:
    """The printable document (personal data: `Secret`), the notices recorded for it, and the
    counts; no value."""

    html: Secret[str]
    letters: int
    updates: int  # of which update letters
    no_address: int
    erased: int
    not_notified: int  # listed, read in clear, with no notice yet (run `breach notify` first)
    recorded: tuple[uuid.UUID, ...] = field(default=(), repr=False)


@dataclass(slots=True)
class _Owed:
    kind: str  # incident | incident-update
    scope_id: int
    added: dict[str, Any] | None = None


class Letters:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def __repr__(self) -> str:
        return "Letters()"

    def prepare(self, principal: Principal, incident_id: uuid.UUID) -> LetterRun:
        outbox = self._outbox
        vault, store = outbox._vault, outbox._store
        vault._authorize(principal, Permission.BREACH_MANAGE)
        outbox._check_config()
        incident = outbox._breach.incident(incident_id)
        if incident is None:
            raise NotFound("incident", incident_id)
        scopes = outbox._scopes_of(incident_id)
        if not scopes:
            raise InvalidRecord("incident", "has no scope yet: compute it first")
        owed, not_notified, stale = self._owed(incident_id, scopes[-1])
        if stale:  # a run that died before its document reached the disk
            self._withdrawn(principal, incident_id, store.delete_letters(stale), "unconfirmed")
        targets = list(owed)
        vault._authorize(principal, Permission.BREACH_MANAGE, targets)
        if targets:
            vault._event(dataclasses.replace(principal, purpose=PURPOSE),
                         Permission.BREACH_MANAGE, "allowed", targets, IDENTITY,
                         what="letters", incident_id=str(incident_id), scope=scopes[-1].id)
        postal = self._postal(targets)
        by_id = {s.id: s for s in scopes}
        rows, letters = [], []
        for pid in targets:
            found = postal.get(pid)
            if found is None or found["address"] is None:
                continue
            for due in owed[pid]:
                code = text.new_code()
                row = self._row(incident_id, pid, due, code)
                entry = outbox._patients(by_id[due.scope_id]).get(str(pid), {})
                subject, body = text.notice(outbox._config, "email", code, incident, entry,
                                            added=due.added)
                rows.append(row)
                letters.append((row["id"], due.kind, found, subject, body))
        recorded = {r["id"] for r in store.insert(rows)}
        kept = [item for item in letters if item[0] in recorded]
        html = text.letters(outbox._config, [(found, subject, body)
                                             for _, _, found, subject, body in kept],
                            outbox._clock.now())
        erased = sum(1 for p in targets if p not in postal)
        no_address = sum(1 for p in targets if p in postal and postal[p]["address"] is None)
        return LetterRun(Secret(html), len(kept),
                         sum(1 for _, kind, *_ in kept if kind == "incident-update"),
                         no_address, erased, not_notified,
                         tuple(nid for nid, *_ in kept))

    def confirm(self, run: LetterRun) -> int:
        """The document of `run` is on disk: its letters are done. How many."""
        return self._outbox._store.confirm_letters(list(run.recorded))

    def withdraw(self, principal: Principal, incident_id: uuid.UUID, run: LetterRun) -> int:
        """Delete the letters `run` recorded (the document never reached the disk), audited:
        the next run writes them again. How many were deleted."""
        return self._withdrawn(principal, incident_id,
                               self._outbox._store.delete_letters(list(run.recorded)),
                               "not written")

    def _withdrawn(self, principal: Principal, incident_id: uuid.UUID, gone: int,
                   reason: str) -> int:
        self._outbox._vault._event(principal, Permission.BREACH_MANAGE, "allowed",
                                   what="letters-withdrawn", incident_id=str(incident_id),
                                   letters=gone, reason=reason)
        return gone

    def _owed(self, incident_id: uuid.UUID, latest: Any
              ) -> tuple[dict[uuid.UUID, list[_Owed]], int, list[uuid.UUID]]:
        """Who is owed which letters: a first one (notified, nothing reached them), an update
        (owed and recorded undeliverable, no update letter from that scope yet); how many
        listed people were not notified yet; the letters of runs that died."""
        outbox = self._outbox
        notified, reached, waiting, lettered = set(), set(), set(), set()
        updates: dict[tuple[uuid.UUID, int], dict[str, Any] | None] = {}
        updated: set[tuple[uuid.UUID, int]] = set()
        stale, cutoff = [], outbox._clock.now() - GRACE
        for row in outbox._store.of_incident(incident_id):
            pid = row.patient_id
            if row.channel == "letter" and row.state == QUEUED and aware(row.created_at) < cutoff:
                stale.append(row.id)
                continue
            if row.state != DONE:
                waiting.add(pid)
                continue
            state = outbox._open(row.id, row.delivery)
            if row.kind == "incident":
                notified.add(pid)
                if row.channel == "letter":
                    lettered.add(pid)
                elif state.get("outcome") in TOLD:
                    reached.add(pid)
            elif row.channel == "none" and state.get("added"):
                updates[pid, state["scope"]] = state["added"]
            elif row.channel == "letter":
                updated.add((pid, state["scope"]))
        owed: dict[uuid.UUID, list[_Owed]] = {}
        for pid in notified - reached - waiting - lettered:
            owed.setdefault(pid, []).append(_Owed("incident", latest.id))
        for (pid, scope_id), added in sorted(updates.items(), key=lambda kv: kv[0][1]):
            if pid not in waiting and (pid, scope_id) not in updated:
                owed.setdefault(pid, []).append(_Owed("incident-update", scope_id, added))
        due = [uuid.UUID(k) for k, p in outbox._patients(latest).items()
               if p.get("exposure", "decrypted") != "sealed"
               and uuid.UUID(k) not in notified | waiting]
        return owed, len(set(due) - outbox._decoys(due)), stale

    def _postal(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """Name and postal address of living patients (the erased are absent)."""
        vault, out = self._outbox._vault, {}
        rows = self._outbox._store.postal(ids)
        keys = vault._keystore.get_many([p for p, r in rows.items() if r.erased_at is None])
        for pid, row in rows.items():
            if pid not in keys or row.erased_at is not None:
                continue
            cipher = vault._cipher_for(pid, keys[pid])
            out[pid] = {c: None if getattr(row, c) is None else codec.PATIENT[c][1](
                cipher.open("patient", c, pid, getattr(row, c))) for c in NAME_COLUMNS}
        return out

    def _row(self, incident_id: uuid.UUID, pid: uuid.UUID, due: _Owed,
             code: str) -> dict[str, Any]:
        outbox, nid, now = self._outbox, uuid.uuid4(), self._outbox._clock.now()
        state = {"outcome": "printed", "scope": due.scope_id, "at": now.isoformat()}
        return {"id": nid, "kind": due.kind, "incident_id": incident_id, "patient_id": pid,
                "channel": "letter", "code_tag": text.code_tag(outbox._tag_key, code),
                "created_at": now, "state": QUEUED, "attempts": 1, "next_attempt_at": None,
                "scope_id": due.scope_id, "delivery": outbox._seal(
                    nid, state | ({"added": due.added} if due.added else {}))}


__all__ = ["LetterRun", "Letters"]
