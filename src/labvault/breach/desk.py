"""The breach desk (`vault.breach`): incidents and their scopes.

`open_incident` records a suspected breach — when it was detected, the vector from a fixed list,
a description sealed under the ``breach/fields/v1`` key (it may name people) — and starts the
72-hour clock of GDPR article 33 (`deadline_at`). `scope` computes from the audit log which
patients the selected activity reached and which of their data (`labvault.breach.scope`),
stores the signed document and returns it. Both need ``breach:incident:manage`` (the DPO) and
are audited; the scope's event names the patients it lists, so that each patient's access
report shows that their data was examined for an incident.

A scope from the log is refused while the audit file copy holds events the chain did not take
(the database was unavailable when they happened): the list would miss what they record, so
`labvault audit recover` comes first. A journal whose lines do not check is refused too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from labvault.access.account_rules import aware
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.audit.copy import FileCopy
from labvault.breach import scope as scoping
from labvault.breach.special import add_special
from labvault.crypto.envelope import AesGcmFieldCipher
from labvault.crypto.signing import Signer
from labvault.errors import InvalidRecord, NotFound
from labvault.secret import Secret
from labvault.store.breach import BreachStore

if TYPE_CHECKING:
    from labvault.breach.regulator import RegulatorDesk
    from labvault.vault.core import Vault

FIELDS_KEY = "breach/fields/v1"
NOTIFY_WITHIN = timedelta(hours=72)  # GDPR article 33(1)
VECTORS = ("stolen-credentials", "leaked-token", "insider", "lost-backup", "exposed-staging",
           "compromised-key", "malware", "misconfiguration", "other")


@dataclass(frozen=True, slots=True)
class Incident:
    id: uuid.UUID
    opened_at: datetime
    detected_at: datetime
    deadline_at: datetime
    vector: str
    description: Secret[str]
    status: str
    opened_by: str


@dataclass(frozen=True, slots=True)
class Scope:
    id: int
    incident_id: uuid.UUID
    document: dict[str, Any]
    digest: bytes
    signature: bytes
    key_id: str

    @property
    def canonical(self) -> bytes:
        return scoping.canonical(self.document)


def breach_store(vault: Vault) -> BreachStore:
    """The breach tables, scope documents sealed under the breach key."""
    return BreachStore(vault._records.engine,
                       AesGcmFieldCipher(vault._keys.index_key(FIELDS_KEY), 1))


class BreachDesk:
    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._store = breach_store(vault)
        self._cipher = AesGcmFieldCipher(vault._keys.index_key(FIELDS_KEY), 1)

    def __repr__(self) -> str:
        return "BreachDesk()"

    @cached_property
    def regulator(self) -> RegulatorDesk:
        """The CNIL draft, the ARS report and the article 33(5) register."""
        from labvault.breach.regulator import RegulatorDesk

        return RegulatorDesk(self._vault)

    def open_incident(self, principal: Principal, *, detected_at: datetime, vector: str,
                      description: str) -> Incident:
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        if vector not in VECTORS:
            raise InvalidRecord("vector", f"one of {', '.join(VECTORS)}")
        if detected_at.tzinfo is None:
            raise InvalidRecord("detected_at", "needs a time zone")
        detected_at = detected_at.astimezone(UTC)  # stored as UTC (SQLite keeps no offset)
        text = description.strip()
        if not 1 <= len(text) <= 5000:
            raise InvalidRecord("description", "1 to 5000 characters")
        now = self._vault._clock.now()
        if detected_at > now:
            raise InvalidRecord("detected_at", "in the future")
        incident_id = uuid.uuid4()
        self._vault._event(principal, Permission.BREACH_MANAGE, "allowed", what="open",
                           incident_id=str(incident_id), vector=vector)
        self._store.insert_incident({
            "id": incident_id, "opened_at": now, "detected_at": detected_at,
            "deadline_at": detected_at + NOTIFY_WITHIN, "vector": vector, "status": "open",
            "description": self._cipher.seal("incident", "description", incident_id.hex,
                                             text.encode("utf-8")),
            "opened_by": principal.actor_id})
        return self._incident(self._store.incident(incident_id))

    def _incident(self, row: Any) -> Incident:
        text = self._cipher.open("incident", "description", row.id.hex, row.description)
        return Incident(row.id, aware(row.opened_at), aware(row.detected_at),
                        aware(row.deadline_at), row.vector, Secret(text.decode("utf-8")),
                        row.status, row.opened_by)

    def incidents(self, principal: Principal) -> list[Incident]:
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        self._vault._event(principal, Permission.BREACH_MANAGE, "allowed", what="list")
        return [self._incident(r) for r in self._store.incidents()]

    def scope(self, principal: Principal, incident_id: uuid.UUID, selectors: scoping.Selectors,
              *, up_to_seq: int | None = None) -> Scope:
        """Compute, sign and store the scope of the selected activity (over the log up to
        `up_to_seq`, the current head by default)."""
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        if self._store.incident(incident_id) is None:
            raise NotFound("incident", incident_id)
        if selectors.basis == "audit" and (pending := self._unrecovered()):
            raise InvalidRecord("audit", f"the audit file copy holds {pending} events the chain "
                                "has not taken yet: run `labvault audit recover`, then the scope")
        head, head_hash = self._store.head_seq()
        seq = head if up_to_seq is None else min(up_to_seq, head)
        at_hash = head_hash if seq == head else self._store.hash_at(seq)
        document = self._document(selectors, seq, at_hash)
        document["incident"] = str(incident_id)
        digest = scoping.digest(document)
        signer = Signer(self._vault._keys)
        signature = signer.sign(scoping.canonical(document))
        listed = [uuid.UUID(p["id"]) for p in document["patients"]]
        self._vault._event(principal, Permission.BREACH_MANAGE, "allowed", listed, what="scope",
                           incident_id=str(incident_id), patients=len(listed),
                           digest=digest.hex())
        scope_id = self._store.insert_scope({
            "incident_id": incident_id, "computed_at": self._vault._clock.now(),
            "computed_by": principal.actor_id, "selectors": json.dumps(selectors.as_dict(),
                                                                       sort_keys=True),
            "document": scoping.canonical(document).decode("utf-8"), "digest": digest,
            "signature": signature, "key_id": signer.key_id, "patients": len(listed)})
        return Scope(scope_id, incident_id, document, digest, signature, signer.key_id)

    def _unrecovered(self) -> int:
        """Events kept only in the audit file copy (`JournalTampered` if it does not check)."""
        trail = self._vault._audit
        copy = getattr(trail, "copy", None)
        if not isinstance(copy, FileCopy):
            return 0
        done = trail.chain.recovered_ids()
        return sum(1 for journal_id, _ in copy.unchained() if journal_id not in done)

    def classify_stored(self, principal: Principal,
                        progress: Callable[[int], None] | None = None) -> int:
        """Seal findings on rows stored before classification existed (`breach.backfill`)."""
        from labvault.breach.backfill import classify_stored

        return classify_stored(self._vault, principal, progress)

    def _document(self, selectors: scoping.Selectors, seq: int,
                  at_hash: bytes) -> dict[str, Any]:
        """The scope on its basis (log, key or staging area), with special categories."""
        migration_id = None
        if selectors.basis == "audit":
            rows = self._store.events(up_to_seq=seq, actions=scoping.SCOPED_ACTIONS,
                                      since=selectors.since, until=selectors.until,
                                      actor=selectors.actor)
            document = scoping.compute(rows, selectors, seq, at_hash)
        elif selectors.basis == "key":
            if selectors.key not in self._vault._keys.versions():
                raise InvalidRecord("key", "no such master key version")
            ids = self._vault._keystore.patients_under(selectors.key)
            document = scoping.whole_records(ids, selectors, seq, at_hash, "decrypted")
        else:
            migration_id = uuid.UUID(selectors.staging)
            if not self._store.migration_exists(migration_id):
                raise NotFound("migration", migration_id)
            exposure = "decrypted" if selectors.staging_key_compromised else "sealed"
            document = scoping.whole_records(self._store.staged_patients(migration_id),
                                             selectors, seq, at_hash, exposure)
            # Units that failed validation name no stored patient but were in the area.
            document["quarantined_units"] = self._store.quarantined(migration_id)
        add_special(self._vault, self._store, document, migration_id)
        return document


__all__ = ["VECTORS", "BreachDesk", "Incident", "Scope", "breach_store"]
