"""Which incidents concern a person: the patient's own space, and the public check.

`ExposureDesk(vault, config)` reads each incident's latest signed scope (``incident_scope``:
patients sorted by id, found by bisection; the signature, the digest and the incident the
document names are checked once per scope, which never changes: a scope copied to another
incident is not read). `exposures_of(patient_id)` is the plain lookup, without principal or audit
event, for callers that audit their own use (the answer the `Outbox` composes);
`for_patient(principal)` is the patient's own view: role ``patient`` only, their own id
only, audited (``breach:exposure:read``, naming the patient), each exposure with what the
laboratory advises (`advice`, French: it is shown to the person as it is).

The public check (`submit`, `drain`, `start`) is described in
`labvault.breach.exposure_worker`: the request path never looks anybody up; a worker does,
later, and answers out of band. Anonymous requests write audit events, so they are bounded per
source: a well-formed one by ``[exposure] per_source_per_hour``, one refused for its form or
its origin (`refused`: 415, 403, 422, 503) by `REFUSED_PER_HOUR`; past either, the source gets
429, and the audit one event, when its block starts, until the hour ends. The vault has one
desk (`exposure_desk`): the API's routes and the worker thread of ``labvault serve`` must
share its queue.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import uuid
import weakref
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from labvault.access.account_rules import aware
from labvault.access.permissions import Permission
from labvault.access.principal import Principal, Role
from labvault.access.throttle import THROTTLE_KEY
from labvault.audit.sink import AuditEvent
from labvault.breach.config import BreachConfig
from labvault.breach.desk import breach_store
from labvault.breach.exposure_worker import (
    CHECK_ACTION,
    HOUR,
    PUBLIC,
    PURPOSE,
    REFUSED_KIND,
    SOURCE_KIND,
    TICK_JITTER,
    TICK_SECONDS,
    AnswerChannel,
    Check,
    Counters,
    Details,
    Lookup,
    Receipt,
    parse_details,
    source_network,
)
from labvault.breach.notice_text import FRAUD, HEALTH
from labvault.breach.scope import verified
from labvault.crypto.signing import InvalidSignature, Signer
from labvault.errors import AccessDenied, ConfigurationError, InvalidCiphertext, LabvaultError
from labvault.periodic import Periodic
from labvault.store.accounts import AccountStore

if TYPE_CHECKING:
    from labvault.vault.core import Vault

log = logging.getLogger("labvault.breach")

READ_ACTION = "breach:exposure:read"
MAX_PENDING = 10_000  # checks waiting for the worker; beyond, the request is refused (busy)
BUSY_RETRY = 60  # seconds
REFUSED_PER_HOUR = 60  # requests refused for their form or origin, per source (or /64)
CACHED_SCOPES = 8

# What the laboratory advises, by what was exposed (codes stable, texts shown as they are); the
# groups of categories are the notices' (`labvault.breach.notice_text`).
SEALED = ("sealed", "Vos données ont été exposées sous forme chiffrée, et la clé qui permet "
          "de les lire est restée protégée : elles sont illisibles. Aucune démarche n'est "
          "nécessaire de votre part.")
ADVICE: tuple[tuple[str, frozenset[str], str], ...] = (
    ("membership", frozenset({"membership"}),
     "Une personne non autorisée a pu apprendre que vous êtes patient du laboratoire. Si "
     "quelqu'un vous sollicite à ce sujet, ne lui répondez pas."),
    ("phishing", frozenset({"identity", "contact"}),
     "Méfiez-vous des courriels, SMS et appels qui se réclament du laboratoire, de votre "
     "médecin ou de l'Assurance maladie : vos coordonnées peuvent rendre une escroquerie "
     "crédible. Le laboratoire ne vous demandera jamais de mot de passe, de code ni de "
     "paiement."),
    ("health-insurance", FRAUD,
     "Votre numéro de sécurité sociale ou vos données d'assurance ont été exposés : "
     "surveillez vos remboursements sur votre compte ameli et signalez à votre caisse tout "
     "soin que vous n'avez pas reçu."),
    ("health-data", HEALTH,
     "Des informations sur votre santé ont été exposées. Si quelqu'un s'en prévaut pour vous "
     "contacter (chantage, démarchage), ne répondez pas, gardez le message et portez plainte "
     "auprès de la police ou de la gendarmerie ; cybermalveillance.gouv.fr peut vous aider."),
)
CONTACT_DPO = ("contact", "Pour toute question, écrivez au délégué à la protection des données "
               "du laboratoire{dpo}. Vous pouvez aussi adresser une réclamation à la CNIL "
               "(cnil.fr).")


class ScopeUnverified(LabvaultError):
    """A stored scope whose signature or digest does not check, or that names another
    incident than its row's: it is not read (names its row only)."""


@dataclass(frozen=True, slots=True)
class Advice:
    code: str
    text: str


@dataclass(frozen=True, slots=True)
class PatientExposure:
    """One incident concerning a patient, from its latest scope."""

    incident_id: uuid.UUID
    detected_at: datetime
    categories: tuple[str, ...]
    special: tuple[str, ...]
    exposure: str  # decrypted | sealed
    first: str | None  # the first and last exposing events (none for a key or staging area)
    last: str | None
    advice: tuple[Advice, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"incident_id": str(self.incident_id),
                "detected_at": self.detected_at.isoformat(),
                "categories": list(self.categories), "special": list(self.special),
                "exposure": self.exposure, "first": self.first, "last": self.last,
                "advice": [{"code": a.code, "text": a.text} for a in self.advice]}


def advice(exposure: str, categories: Iterable[str], special: Iterable[str],
           dpo: str = "") -> tuple[Advice, ...]:
    """What the laboratory advises a person whose data an incident exposed."""
    contact = Advice(CONTACT_DPO[0], CONTACT_DPO[1].format(dpo=f" ({dpo})" if dpo else ""))
    if exposure == "sealed":
        return Advice(*SEALED), contact
    exposed = set(categories) | ({"results"} if set(special) else set())
    return (*(Advice(code, text) for code, kinds, text in ADVICE if kinds & exposed), contact)


def entry_of(ids: list[str], entries: list[dict[str, Any]],
             patient_id: uuid.UUID) -> dict[str, Any] | None:
    """A patient's entry in a scope's list (sorted by id), by bisection."""
    key = str(patient_id)
    at = bisect_left(ids, key)
    return entries[at] if at < len(ids) and ids[at] == key else None


class ExposureDesk:
    def __init__(self, vault: Vault, config: BreachConfig | None = None,
                 answers: AnswerChannel | None = None, *, max_pending: int = MAX_PENDING,
                 ) -> None:
        self._vault = vault
        self.config = config or BreachConfig()
        self._answers = answers
        engine = vault._records.engine
        self._counters = Counters(AccountStore(engine), vault._keys.index_key(THROTTLE_KEY),
                                  vault._clock)
        self._lookup = Lookup(vault, self._counters,
                              int(self.config["exposure"]["per_identity_per_day"]), self._channel)
        self._pending: queue.Queue[Check] = queue.Queue(max_pending)
        self._scopes: OrderedDict[int, tuple[list[str], list[dict[str, Any]]]] = OrderedDict()
        self._lock = threading.Lock()
        self._submitting = threading.Lock()
        self._draining = threading.Lock()
        self._random = random.SystemRandom()

    def __repr__(self) -> str:
        return f"ExposureDesk(pending={self.pending})"

    # -- the patient's own space ---------------------------------------------------------------
    def exposures_of(self, patient_id: uuid.UUID) -> list[PatientExposure]:
        """The incidents whose latest scope lists the patient, in order of detection. No
        principal, no audit event: the caller decides who may learn it, and audits that."""
        rows = breach_store(self._vault).latest_scopes()
        c = self.config["controller"]
        dpo = c["dpo_email"] or c["dpo_phone"]
        out = []
        for incident_id, detected_at, scope_id in rows:
            entry = entry_of(*self._listed(scope_id), patient_id)
            if entry is None:
                continue
            exposure = entry.get("exposure", "decrypted")
            categories = tuple(entry.get("categories", ()))
            special = tuple(entry.get("special", ()))
            out.append(PatientExposure(incident_id, aware(detected_at), categories, special,
                                       exposure, entry.get("first"), entry.get("last"),
                                       advice(exposure, categories, special, dpo)))
        return out

    def for_patient(self, principal: Principal) -> list[PatientExposure]:
        """A patient's own exposures (audited, naming the patient); any other role is refused."""
        vault = self._vault
        pid = principal.patient_id
        if principal.role is not Role.PATIENT or pid is None:
            vault._event(principal, READ_ACTION, "denied")  # type: ignore[arg-type]
            raise AccessDenied(principal.actor_id, principal.role, READ_ACTION)
        vault._authorize(principal, Permission.PATIENT_READ, [pid])  # own record; step-up due
        found = self.exposures_of(pid)
        vault._event(principal, READ_ACTION, "allowed", [pid],  # type: ignore[arg-type]
                     incidents=len(found))
        return found

    def _listed(self, scope_id: int) -> tuple[list[str], list[dict[str, Any]]]:
        """A scope's patient ids (sorted) and entries: verified and parsed once, kept a while."""
        with self._lock:
            if scope_id in self._scopes:
                self._scopes.move_to_end(scope_id)
                return self._scopes[scope_id]
        try:
            row = breach_store(self._vault).scope(scope_id)
            if row is None:
                raise InvalidSignature("no such scope")
            document = verified(row, Signer(self._vault._keys).public_key)
        except (InvalidSignature, InvalidCiphertext, ValueError):
            raise ScopeUnverified(f"scope {scope_id} does not check (signature, digest or "
                                  "incident)") from None
        entries = sorted(document.get("patients", []), key=lambda p: p["id"])
        listed = ([p["id"] for p in entries], entries)
        with self._lock:
            self._scopes[scope_id] = listed
            while len(self._scopes) > CACHED_SCOPES:
                self._scopes.popitem(last=False)
        return listed

    # -- the public check ----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending.qsize()

    def parse(self, nir: object, birth_date: object,
              ) -> tuple[Details | None, list[tuple[str, str]]]:
        """The shape of a request's details (`parse_details`): the details, or the errors."""
        return parse_details(nir, birth_date, self._vault._clock.now().date())

    def submit(self, details: Details, *, source: str, request_id: str) -> Receipt:
        """The request path: count the source, audit, queue. Nothing here depends on whom the
        details name; the caller answers every ``queued`` receipt the same way. Past the
        source's hourly limit: ``limited``, audited once, when the block starts."""
        limit = int(self.config["exposure"]["per_source_per_hour"])
        hits, wait = self._counters.count(SOURCE_KIND, source_network(source), HOUR, limit)
        if wait is not None:
            if hits == limit + 1:
                self.record(source, request_id, "limited")
            return Receipt("limited", wait)
        with self._submitting:  # the worker only takes from the queue: room stays room
            if self._pending.full():
                self.record(source, request_id, "busy")
                return Receipt("busy", BUSY_RETRY)
            self.record(source, request_id, "queued")  # fail closed: no audit, nothing queued
            self._pending.put_nowait(Check(details, source, request_id))
        return Receipt("queued")

    def refused(self, source: str, request_id: str, outcome: str, **detail: object) -> Receipt:
        """A request refused before its source's count (``unsupported``, ``cross_site``,
        ``invalid``, ``not_configured``): counted per source and hour apart from the
        well-formed ones, then audited. Past `REFUSED_PER_HOUR`: ``limited``, whatever the
        request was, audited once, when the block starts; the caller answers 429."""
        hits, wait = self._counters.count(REFUSED_KIND, source_network(source), HOUR,
                                          REFUSED_PER_HOUR)
        if wait is None:
            self.record(source, request_id, outcome, **detail)
            return Receipt(outcome)
        if hits == REFUSED_PER_HOUR + 1:
            self.record(source, request_id, "limited", counter="refused")
        return Receipt("limited", wait)

    def record(self, source: str, request_id: str, outcome: str, **detail: object) -> None:
        """The audit event of a public request (``invalid``, ``cross_site``, ``queued``...):
        its source and outcome, never a patient or a value."""
        self._vault._audit.append(AuditEvent(
            at=self._vault._clock.now(), actor=PUBLIC, role=PUBLIC, source=source,
            purpose=PURPOSE, action=CHECK_ACTION, outcome=outcome, detail=detail,
            request_id=request_id))

    def drain(self, limit: int | None = None) -> list[str]:
        """Look up the queued checks now, at most `limit` (the worker's job; tests call it
        directly); their outcomes, in the order the checks were queued. The checks waiting
        are taken together and looked up in a random order, so that when a lookup runs
        says nothing of which check it is. A check that fails is logged by kind and dropped:
        its details go nowhere."""
        outcomes: list[str] = []
        with self._draining:  # one batch at a time, however many callers
            while limit is None or len(outcomes) < limit:
                batch: list[tuple[int, Check]] = []
                while limit is None or len(outcomes) + len(batch) < limit:
                    try:
                        batch.append((len(batch), self._pending.get_nowait()))
                    except queue.Empty:
                        break
                if not batch:
                    break
                self._random.shuffle(batch)
                done: list[tuple[int, str]] = []
                while batch:
                    at, check = batch.pop()
                    done.append((at, self._run(check)))
                    del check
                outcomes += [outcome for _, outcome in sorted(done)]
        return outcomes

    def _run(self, check: Check) -> str:
        try:
            return self._lookup.run(check)
        except Exception as exc:  # noqa: BLE001 - one failed check must not stop the rest
            log.error("exposure check lookup failed: %s", type(exc).__name__)
            return "error"

    def start(self, every: float | None = None) -> Periodic:
        """The worker thread of ``labvault serve``: drains the queue every few seconds, each
        wait drawn anew between half and one and a half of `every`."""
        worker = Periodic("exposure check", TICK_SECONDS if every is None else every,
                          self.drain, run_on_stop=True, jitter=TICK_JITTER)
        return worker.start()

    def _channel(self) -> AnswerChannel:
        if self._answers is None:
            from labvault.breach.notices import Outbox

            self._answers = Outbox(self._vault, self.config)
        return self._answers


_DESKS: weakref.WeakKeyDictionary[Vault, ExposureDesk] = weakref.WeakKeyDictionary()
_DESKS_LOCK = threading.Lock()


def exposure_desk(vault: Vault, config: BreachConfig | None = None) -> ExposureDesk:
    """The vault's one exposure desk, made on first use with `config` (the defaults if none):
    the routes and the worker must share its queue. `serve` makes it first, with the data
    directory's ``breach.toml``; another configuration later is refused."""
    with _DESKS_LOCK:
        desk = _DESKS.get(vault)
        if desk is None:
            desk = _DESKS[vault] = ExposureDesk(vault, config)
        elif config is not None and config != desk.config:
            raise ConfigurationError("the exposure desk was made with another breach.toml")
        return desk


__all__ = ["ADVICE", "REFUSED_PER_HOUR", "Advice", "ExposureDesk", "PatientExposure", "Receipt",
           "ScopeUnverified", "advice", "entry_of", "exposure_desk"]
