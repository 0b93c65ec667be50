"""Letters for the people no electronic notice reached (GDPR article 34).

A person listed in an incident's latest scope whose notices all ended without a message sent
(no e-mail or mobile on file, or every channel failed) has not been told. `Letters.prepare`
writes them a letter: the text of the e-mail notice, addressed to their name and postal
address, one per page of one printable HTML document, each with its own verification code (so
that the letter, too, can be checked on the public page). Each letter is recorded as a notice
of channel ``letter``, outcome ``printed``: the unique index allows one per person and
incident, so preparing the letters twice, or from two places at once, writes each once.

People still waiting for an electronic notice, decoys, and (unless ``include_sealed``) people
exposed only sealed get no letter. Names and addresses are opened after one audit event naming
the people (purpose ``breach notification``, categories identity and administrative); beyond
``BULK_LIMIT`` people this needs a fresh second factor. The document holds personal data in
clear by nature: it is written 0600 by the command, to print, post and delete. A person
without a postal address, or erased, is counted, not written to.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labvault import codec
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.breach import notice_text as text
from labvault.breach.notices import PURPOSE
from labvault.errors import InvalidRecord, NotFound
from labvault.secret import Secret
from labvault.store.notices import DONE

if TYPE_CHECKING:
    from labvault.breach.notices import Outbox

IDENTITY = ("identity", "administrative")  # the audit categories of name and address
NAME_COLUMNS = ("last_name", "first_names", "address")


@dataclass(frozen=True, slots=True)
class LetterRun:
    """The printable document (personal data: `Secret`) and the counts; no value."""

    html: Secret[str]
    letters: int
    no_address: int
    erased: int
    already: int  # people who had their letter from an earlier run


class Letters:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def __repr__(self) -> str:
        return "Letters()"

    def prepare(self, principal: Principal, incident_id: uuid.UUID, *,
                include_sealed: bool = False) -> LetterRun:
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
        latest = scopes[-1]
        listed = outbox._patients(latest)
        chosen = [uuid.UUID(k) for k, p in listed.items()
                  if include_sealed or p.get("exposure", "decrypted") != "sealed"]
        decoys = outbox._decoys(chosen)
        sent, waiting, lettered = set(), set(), set()
        for row in store.of_incident(incident_id):
            if row.channel == "letter":
                lettered.add(row.patient_id)
            elif row.state != DONE:
                waiting.add(row.patient_id)
            elif outbox._open(row.id, row.delivery).get("outcome") == "sent":
                sent.add(row.patient_id)
        targets = [p for p in chosen if p not in decoys and p not in sent | waiting | lettered]
        vault._authorize(principal, Permission.BREACH_MANAGE, targets)
        if targets:
            vault._event(dataclasses.replace(principal, purpose=PURPOSE),
                         Permission.BREACH_MANAGE, "allowed", targets, IDENTITY,
                         what="letters", incident_id=str(incident_id), scope=latest.id)
        postal = self._postal(targets)
        rows, letters = [], []
        for pid in targets:
            found = postal.get(pid)
            if found is None or found["address"] is None:
                continue
            code = text.new_code()
            row = self._row(incident_id, pid, latest.id, code)
            rows.append(row)
            subject, body = text.notice(outbox._config, "email", code, incident,
                                        listed[str(pid)])
            letters.append((row["id"], found, subject, body))
        recorded = {r["id"] for r in store.insert(rows)}
        html = text.letters(outbox._config, [(found, subject, body)
                                             for nid, found, subject, body in letters
                                             if nid in recorded], outbox._clock.now())
        erased = sum(1 for p in targets if p not in postal)
        return LetterRun(Secret(html), len(recorded), len(targets) - erased - len(letters),
                         erased, len(lettered))

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

    def _row(self, incident_id: uuid.UUID, pid: uuid.UUID, scope_id: int,
             code: str) -> dict[str, Any]:
        outbox, nid, now = self._outbox, uuid.uuid4(), self._outbox._clock.now()
        return {"id": nid, "kind": "incident", "incident_id": incident_id, "patient_id": pid,
                "channel": "letter", "code_tag": text.code_tag(outbox._tag_key, code),
                "created_at": now, "state": DONE, "attempts": 1, "next_attempt_at": None,
                "scope_id": scope_id, "delivery": outbox._seal(nid, {
                    "outcome": "printed", "scope": scope_id, "at": now.isoformat()})}


__all__ = ["LetterRun", "Letters"]
