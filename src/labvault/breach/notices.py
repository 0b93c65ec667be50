"""Notices to people (GDPR article 34), their delivery, and the check that one is genuine.

`Outbox(vault, config)` queues one notice per patient of an incident's latest signed scope
and per channel their contact on file allows (e-mail; SMS to a mobile). When a later scope
adds to what a person's notices on a channel said (a category, a special category, or data
read in clear where only ciphertext had left), queueing again writes them an update
(``incident-update``) that names what was added; a later scope that adds nothing writes
nobody, and neither does running it twice. Patients exposed only
``sealed`` (ciphertext without its key) are exempt (article 34(3)(a)) unless
``include_sealed``. A patient without a usable contact, or erased, gets a notice of channel
``none``, ``undeliverable``: counted, never lost. Decoy patients get none.

The contact is stored nowhere: it is opened when the notice is queued (to choose channels)
and again when it is sent (`labvault.breach.dispatch`), each time after an audit event naming
the patients (purpose ``breach notification``), and only the e-mail and phone columns are
opened. A copy kept with the notice, even sealed, would outlive the patient's erasure; opened
at delivery it is the current one, and an erased patient is not written to.

A notice's code (`labvault.breach.notice_text`) is stored as its keyed hash (``code_tag``).
Messages are composed when sent, so the code is also kept sealed in ``delivery`` (key
``breach/fields/v1``) until the notice is done — every retry sends the same code, since a
timed-out attempt may have arrived — and then dropped. `verify` serves the public page: the
laboratory, the day, the incident's short reference, or ``unknown``; throttled per source
(/64 in IPv6) like failed logins (`labvault.access.throttle`, under a key of its own) and
audited, without the code: each check answered, and each block when it starts (a throttled
request writes nothing: an anonymous flood must not flood the audit trail).

Queueing opens the contacts of every patient the scope lists: beyond ``BULK_LIMIT`` patients
the principal needs a fresh second factor (`labvault.access.permissions`). A stored scope is
used only if its signature, its digest and its incident all check: a signed scope copied to
another incident names nobody there.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labvault import codec
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.access.throttle import Throttle
from labvault.audit.sink import AuditEvent
from labvault.breach import notice_text as text
from labvault.breach.config import BreachConfig
from labvault.breach.delivery import Sender, email_address, mobile_number, senders_from_config
from labvault.breach.desk import FIELDS_KEY, breach_store
from labvault.breach.dispatch import BATCH, Dispatcher, batched, summarize
from labvault.breach.notice_text import Exposure, VerifyAnswer, VerifyThrottled
from labvault.breach.scope import verified
from labvault.crypto.blind import BlindIndex
from labvault.crypto.envelope import AesGcmFieldCipher
from labvault.crypto.signing import InvalidSignature, Signer
from labvault.errors import ConfigurationError, InvalidRecord, NotFound
from labvault.secret import Secret
from labvault.store.accounts import AccountStore
from labvault.store.alerts import AlertStore
from labvault.store.notices import DONE, QUEUED, NoticeStore
from labvault.watch.engine import DECOY_KEY
from labvault.watch.state import network_of

if TYPE_CHECKING:
    from labvault.breach.exposure import ExposureDesk
    from labvault.vault.core import Vault

VERIFY_KEY, VERIFY_THROTTLE_KEY = "breach/verify/v1", "breach/verify/throttle/v1"
PURPOSE, SYSTEM_ACTOR = "breach notification", "labvault:notices"
CONTACT = ("administrative",)  # the audit category of the e-mail and phone columns
TOLD = ("sent", "printed")  # outcomes of a notice that told the person: a message, a letter


@dataclass(frozen=True, slots=True)
class Contact:
    email: Secret[str] | None = None
    mobile: Secret[str] | None = None
    erased: bool = False

    def of(self, channel: str) -> Secret[str] | None:
        return {"email": self.email, "sms": self.mobile}.get(channel)

    @property
    def channels(self) -> list[str]:
        return [c for c in ("email", "sms") if self.of(c) is not None]


class Outbox:
    def __init__(self, vault: Vault, config: BreachConfig | None = None, *,
                 senders: Mapping[str, Sender] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 environ: Mapping[str, str] | None = None) -> None:
        self._vault, self._config, self._clock = vault, config or BreachConfig(), vault._clock
        engine, keys = vault._records.engine, vault._keys
        self._store, self._breach = NoticeStore(engine), breach_store(vault)
        self._cipher = AesGcmFieldCipher(keys.index_key(FIELDS_KEY), 1)
        self._tag_key = keys.index_key(VERIFY_KEY)
        self._throttle = Throttle(AccountStore(engine), keys.index_key(VERIFY_THROTTLE_KEY),
                                  self._clock)
        self._senders = dict(senders) if senders is not None else None
        self._environ = environ
        self._dispatcher = Dispatcher(self, sleep)
        self._scopes: dict[int, dict[str, dict[str, Any]]] = {}
        self._signer = Signer(keys)
        self._desk: ExposureDesk | None = None

    def __repr__(self) -> str:
        return f"Outbox(channels={sorted(self._senders or ())})"

    @property
    def senders(self) -> dict[str, Sender]:
        """The configured channels, built on first use (their secrets read then)."""
        if self._senders is None:
            self._senders = dict(senders_from_config(self._config, clock=self._clock,
                                                     environ=self._environ))
        return self._senders

    def close(self) -> None:
        for sender in (self._senders or {}).values():
            sender.close()

    # -- queueing ----------------------------------------------------------------------------
    def queue_incident(self, principal: Principal, incident_id: uuid.UUID, *,
                       include_sealed: bool = False) -> int:
        """Queue the notices of the incident's latest scope, and the updates owed to people
        already written to whom it adds something; how many were queued. Running it again
        queues nothing new."""
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        self._check_config()
        if self._breach.incident(incident_id) is None:
            raise NotFound("incident", incident_id)
        scopes = self._scopes_of(incident_id)
        if not scopes:
            raise InvalidRecord("incident", "has no scope yet: compute it first")
        chosen = [uuid.UUID(k) for k, p in self._patients(scopes[-1]).items()
                  if include_sealed or p.get("exposure", "decrypted") != "sealed"]
        decoys = self._decoys(chosen)
        targets = [p for p in chosen if p not in decoys]
        # Their contacts are opened: in bulk, only with a fresh second factor (audited if not).
        self._vault._authorize(principal, Permission.BREACH_MANAGE, targets)
        done = self._store.pairs(incident_id)
        had = {pid for pid, _ in done}
        told, pending = self._told(incident_id)
        pending_pids, told_pid = {p for p, _ in pending}, dict[uuid.UUID, set[int]]()
        for (p, _), spoke in told.items():  # what reached them, on any channel, and what
            told_pid.setdefault(p, set()).update(spoke)  # was recorded as owed and lost
        latest, by_id = scopes[-1], {s.id: s for s in scopes}
        who = dataclasses.replace(principal, purpose=PURPOSE)
        queued = 0
        for ids in batched(targets, BATCH):
            self._vault._event(who, Permission.BREACH_MANAGE, "allowed", ids, CONTACT,
                               what="notify", incident_id=str(incident_id), scope=latest.id)
            contacts, rows = self._contacts(ids), []
            for pid in ids:
                contact = contacts.get(pid, Contact(erased=True))
                for ch in contact.channels:
                    if (pid, ch) not in done:
                        rows.append(self._row("incident", incident_id, pid, ch, latest.id))
                    elif (pid, ch) not in pending and (spoke := told.get((pid, ch))) and (
                            added := self._added(pid, spoke, latest, by_id)):
                        rows.append(self._row("incident-update", incident_id, pid, ch,
                                              latest.id, added=added))
                if contact.channels:
                    continue
                if pid not in had:
                    rows.append(self._row("incident", incident_id, pid, "none", None, contact))
                elif pid not in pending_pids and (spoke := told_pid.get(pid)) and (
                        added := self._added(pid, spoke, latest, by_id)):
                    # An update is owed and no message can carry it: counted, never lost, and
                    # `labvault breach letters` writes it on paper.
                    rows.append(self._row("incident-update", incident_id, pid, "none",
                                          latest.id, contact, added=added))
            # Another queueing of the same incident may have recorded some since `pairs`:
            # only what this one recorded counts.
            queued += sum(r["state"] == QUEUED for r in self._store.insert(rows))
        return queued

    def enqueue_exposure_answer(self, patient_id: uuid.UUID) -> list[uuid.UUID]:
        """Queue the out-of-band answer to an exposure check (composed when sent: which
        incidents concern the person, or none); the notices' ids. The caller enforces
        ``[exposure] per_identity_per_day``. `NotFound` (audited) for an unknown id."""
        self._check_config()
        contact = self._contacts([patient_id], event=("breach:notice:queue",
                                                      {"kind": "exposure-answer"})).get(patient_id)
        if contact is None:
            raise NotFound("patient", patient_id)
        rows = [self._row("exposure-answer", None, patient_id, ch, None) for ch in contact.channels]
        rows = rows or [self._row("exposure-answer", None, patient_id, "none", None, contact)]
        self._store.insert(rows)
        return [r["id"] for r in rows]

    def exposures_of(self, patient_id: uuid.UUID) -> list[Exposure]:
        """The incidents whose latest scope lists the patient, oldest first, with what was
        exposed (internal: the caller decides who may learn it, and audits)."""
        if self._desk is None:  # one per outbox: each scope is read and checked once
            from labvault.breach.exposure import ExposureDesk

            self._desk = ExposureDesk(self._vault, self._config)
        found = self._desk.exposures_of(patient_id)
        return [Exposure(e.incident_id, text.local_date(e.detected_at), e.categories, e.special,
                         e.exposure) for e in found]

    # -- delivery ----------------------------------------------------------------------------
    def due_count(self) -> int:
        return self._store.count_due(self._clock.now(), list(self.senders))

    def deliver_due(self, limit: int | None = None, *,
                    progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Send the notices due now on the configured channels (`labvault.breach.dispatch`);
        this run's count of each outcome: sent, retrying, failed, undeliverable."""
        return self._dispatcher.deliver_due(limit, progress)

    # -- verification and follow-up -----------------------------------------------------------
    def verify(self, code: str, source: str) -> VerifyAnswer:
        """Whether a code was issued (public: no principal). Raises `VerifyThrottled`."""
        key = self._throttle.key("breach-verify", network_of(source, 32, 64))
        wait = self._throttle.retry_after([key])
        if wait is not None:  # audited once, when the block started
            raise VerifyThrottled(wait)
        normal = text.normalize_code(code)
        row = self._store.by_tag(text.code_tag(self._tag_key, normal)) if normal else None
        if row is None or row.channel == "none":
            blocked = self._throttle.failure([key])
            self._public_event(source, "unknown")
            if blocked is not None:
                self._public_event(source, "throttled", retry_after=blocked)
            return VerifyAnswer("unknown")
        ref = text.short_ref(row.incident_id) if row.incident_id else None
        self._public_event(source, "issued", about=row.kind, incident=ref)
        return VerifyAnswer("issued", text.lab_name(self._config),
                            text.local_date(row.created_at), row.kind, ref)

    def status(self, principal: Principal, incident_id: uuid.UUID) -> dict[str, Any]:
        """Counts for the DPO and the regulator's follow-up: patients listed, exempt (sealed
        only), with a notice, reached; notices by state, outcome, channel, error kind."""
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        if self._breach.incident(incident_id) is None:
            raise NotFound("incident", incident_id)
        self._vault._event(principal, Permission.BREACH_MANAGE, "allowed", what="notice-status",
                           incident_id=str(incident_id))
        scopes = self._scopes_of(incident_id)
        listed = self._patients(scopes[-1]) if scopes else {}
        rows = [(r, self._open(r.id, r.delivery)) for r in self._store.of_incident(incident_id)]
        return {"incident": str(incident_id), "listed": len(listed),
                "sealed_only": sum(p.get("exposure") == "sealed" for p in listed.values()),
                **summarize(p for p in rows if p[0].kind == "incident"),
                "updates": summarize(p for p in rows if p[0].kind == "incident-update")}

    # -- helpers -----------------------------------------------------------------------------
    def _check_config(self) -> None:
        for key in self._config.missing_for_notices():
            raise ConfigurationError(f"breach.toml: {key} is needed in every notice")

    def _scopes_of(self, incident_id: uuid.UUID) -> list[Any]:
        try:
            return self._breach.scopes(incident_id)
        except InvalidSignature:
            raise InvalidRecord("scope", "a stored scope of the incident: the signature does "
                                "not check") from None

    def _patients(self, scope: Any) -> dict[str, dict[str, Any]]:
        """A stored scope's patients by id, checked once (a scope never changes): signed by
        the vault, its digest that of its document, and about the incident it is stored
        under. Nobody is written to on the word of a scope the vault did not sign for this
        incident."""
        found = self._scopes.get(scope.id)
        if found is None:
            if len(self._scopes) >= 32:
                self._scopes.clear()
            try:
                doc = verified(scope, self._signer.public_key)
            except (InvalidSignature, ValueError):
                raise InvalidRecord("scope", f"scope {scope.id}: the signature does not check"
                                    ) from None
            found = self._scopes[scope.id] = {p["id"]: p for p in doc.get("patients", [])}
        return found

    def _told(self, incident_id: uuid.UUID
              ) -> tuple[dict[tuple[uuid.UUID, str], set[int]], set[tuple[uuid.UUID, str]]]:
        """What people were told about the incident: for each (patient, channel), the scopes
        its notices that were sent spoke from (and, under channel ``none``, the scopes of updates
        owed and recorded undeliverable, so each is recorded once); and the (patient, channel)
        pairs with a notice not yet done. A notice that failed or could not be delivered told
        nothing: an update would complete a message the person never had."""
        told: dict[tuple[uuid.UUID, str], set[int]] = {}
        pending: set[tuple[uuid.UUID, str]] = set()
        for r in self._store.of_incident(incident_id):
            pair = (r.patient_id, r.channel)
            if r.channel == "none":
                if r.kind == "incident-update":  # owed and undeliverable: recorded once
                    told.setdefault(pair, set()).add(r.scope_id)
                continue
            if r.state != DONE:
                pending.add(pair)
                continue
            state = self._open(r.id, r.delivery)
            if state.get("outcome") in TOLD and state.get("scope") is not None:
                told.setdefault(pair, set()).add(state["scope"])
        return told, pending

    def _added(self, pid: uuid.UUID, told: set[int], latest: Any,
               by_id: Mapping[int, Any]) -> dict[str, Any] | None:
        """What the latest scope says of a patient beyond what their notices from the `told`
        scopes said: categories, a special category (messages name none, so one where there
        was none), a read in clear; None if nothing."""
        key = str(pid)
        now = self._patients(latest).get(key)
        if now is None or latest.id in told:
            return None
        before = [e for sid in told if sid in by_id
                  for e in [self._patients(by_id[sid]).get(key)] if e is not None]
        categories = set(now.get("categories", ())).difference(
            *(e.get("categories", ()) for e in before))
        special = bool(now.get("special")) and not any(e.get("special") for e in before)
        decrypted = now.get("exposure", "decrypted") != "sealed" and all(
            e.get("exposure", "decrypted") == "sealed" for e in before)
        if not (categories or special or decrypted):
            return None
        return {"categories": sorted(categories), "special": special, "decrypted": decrypted}

    def _decoys(self, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        tags = AlertStore(self._vault._records.engine).decoy_tags()
        index = BlindIndex(DECOY_KEY, self._vault._keys.index_key(DECOY_KEY))
        return {pid for pid in ids if index.compute(str(pid)) in tags} if tags else set()

    def _contacts(self, ids: list[uuid.UUID], *,
                  event: tuple[str, dict[str, Any]] | None = None) -> dict[uuid.UUID, Contact]:
        """The usable e-mail and mobile of patients (unknown ids absent). With `event`, the
        system's audit events (the ids found, and the misses) are written first."""
        vault, rows = self._vault, self._store.contacts(ids)
        if event is not None:
            if missing := [p for p in ids if p not in rows]:
                self._system_event(event[0], missing, "not_found", ())
            if found := [p for p in ids if p in rows]:
                self._system_event(event[0], found, "allowed", CONTACT, **event[1])
        keys = vault._keystore.get_many([p for p, r in rows.items() if r.erased_at is None])
        out = {}
        for pid, row in rows.items():
            if pid not in keys or row.erased_at is not None:
                out[pid] = Contact(erased=True)
                continue
            cipher = vault._cipher_for(pid, keys[pid])
            email, phone = (None if getattr(row, c) is None else codec.PATIENT[c][1](
                cipher.open("patient", c, pid, getattr(row, c))) for c in ("email", "phone"))
            email, mobile = email_address(email), mobile_number(phone)
            out[pid] = Contact(Secret(email) if email else None, Secret(mobile) if mobile else None)
        return out

    def _row(self, kind: str, incident_id: uuid.UUID | None, pid: uuid.UUID, channel: str,
             scope_id: int | None, dead: Contact | None = None, *,
             added: dict[str, Any] | None = None) -> dict[str, Any]:
        """A queued notice (an update says what was `added`); or, given the `dead` contact,
        one that cannot be sent, recorded as such (channel ``none``, a random tag: no code)."""
        nid, now = uuid.uuid4(), self._clock.now()
        row = {"id": nid, "kind": kind, "incident_id": incident_id, "patient_id": pid,
               "created_at": now, "attempts": 0, "scope_id": scope_id}
        if dead is not None:
            error = "erased" if dead.erased else "no-contact"
            return row | {"channel": "none", "code_tag": secrets.token_bytes(32), "state": DONE,
                          "next_attempt_at": None, "delivery": self._seal(nid, {
                              "outcome": "undeliverable", "error": error, "at": now.isoformat()}
                              | ({"scope": scope_id, "added": added} if added else {}))}
        code = text.new_code()
        return row | {"channel": channel, "code_tag": text.code_tag(self._tag_key, code),
                      "state": QUEUED, "next_attempt_at": now, "delivery": self._seal(
                          nid, {"outcome": "pending", "code": code, "scope": scope_id}
                          | ({"added": added} if added is not None else {}))}

    def _seal(self, notice_id: uuid.UUID, state: dict[str, Any]) -> Any:
        return self._cipher.seal("breach_notice", "delivery", notice_id.hex,
                                 json.dumps(state, sort_keys=True).encode())

    def _open(self, notice_id: uuid.UUID, sealed: Any) -> dict[str, Any]:
        return json.loads(self._cipher.open("breach_notice", "delivery", notice_id.hex, sealed))

    def _system_event(self, action: str, ids: list[uuid.UUID], outcome: str,
                      categories: tuple[str, ...], **detail: object) -> None:
        self._vault._audit.append(AuditEvent(
            at=self._clock.now(), actor=SYSTEM_ACTOR, role="system", source="breach-delivery",
            purpose=PURPOSE, action=action, outcome=outcome, patient_ids=tuple(ids),
            detail=detail, categories=categories))

    def _public_event(self, source: str, outcome: str, **detail: object) -> None:
        self._vault._audit.append(AuditEvent(
            at=self._clock.now(), actor="public", role="public", source=source,
            purpose="notice verification", action="breach:notice:verify", outcome=outcome,
            detail=detail))


__all__ = ["Contact", "Exposure", "Outbox", "VerifyAnswer", "VerifyThrottled"]
