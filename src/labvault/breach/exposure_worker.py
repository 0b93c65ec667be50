"""The public exposure check ("am I affected?") without an oracle: the shape of a request, the
counters, and the worker that looks people up and asks for an answer out of band.

Being a patient of a laboratory is itself health data: an answer on the page would tell
whoever types a neighbour's NIR and birth date that the neighbour is a patient. So the page
never answers. The request path (`labvault.breach.exposure.ExposureDesk.submit`) does only
what cannot depend on who the details name: it checks their shape (`parse_details`, a pure
function of the input), counts the source (`Counters`, per address and per /64 in IPv6, per
hour), writes an audit event (source and outcome: no patient, no value) and hands the
details, wrapped in `Secret`, to a queue in memory. Every well-formed request gets the same
answer, after the same work.

The worker (`Lookup`) runs later, from `ExposureDesk.drain` or from the periodic job
thread, which drains the queue every few seconds (each wait drawn anew around the tick, and
the checks waiting taken in a random order): lookups run at times unrelated to any
response. It finds the NIR through the blind index, opens only the birth date of each
patient found and, when it matches, asks for an answer to the contact on file (`AnswerChannel`: the
breach `Outbox`, e-mail or SMS, saying which incidents concern the person, or none). At most
``[exposure] per_identity_per_day`` answers per person and UTC day: that limit depends on
membership, so it is counted here, never on the request path. Each lookup is one audit event
with the requester's source and request id (purpose ``exposure check``): ``match`` naming the
patient, ``limited`` (named, nothing sent), ``mismatch`` (the NIR is a patient's, the birth
date is not: named, nothing sent, with how many distinct wrong dates were tried with that
NIR within the day and whether this one is new, from `TriedDates`) or ``miss``; never a
submitted value. Like a search, the
lookup runs before its event so that the event can name whom it found; nothing goes out
before the event is written.

A lookup that finds nobody, or whose birth date does not match, does the work of one that
matches on a `Decoy`, a record nobody has: it reads a patient row and a data key, unwraps the
key and opens a birth date, counts under a counter, reads and opens a contact and writes as
many rows as an answer does. The worker shares its process and databases with the request
path, so the time a lookup takes should not tell, even through contention, whom it found.

The counters live in ``login_throttle`` under keys of their own (HMAC of ``exposure-source``,
``exposure-refused`` or ``exposure-identity`` and the value, under the throttle's key): one
atomic upsert per hit, shared by every process, no address or id in clear. A window is fixed
(the clock hour, the UTC day): the upsert starts a counter again at one when its last hit is
from an earlier one.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from labvault import codec
from labvault.access.throttle import Throttle
from labvault.audit.sink import AuditEvent
from labvault.clock import Clock
from labvault.crypto.blind import BlindIndex
from labvault.crypto.envelope import FieldCipher, Sealed, dek_context, new_data_key
from labvault.domain.identifiers import validate_nir
from labvault.errors import InvalidCiphertext, InvalidRecord, KeyUnavailable
from labvault.secret import Secret
from labvault.store.accounts import AccountStore
from labvault.store.keystore import WrappedKey
from labvault.watch.state import network_of

if TYPE_CHECKING:
    from labvault.vault.core import Vault

log = logging.getLogger("labvault.breach")

CHECK_ACTION = "breach:exposure:check"  # the public request
LOOKUP_ACTION = "breach:exposure:lookup"  # the worker's lookup
PURPOSE = "exposure check"
PUBLIC = "public"  # actor and role of the anonymous request
SYSTEM_ACTOR = "labvault:exposure-check"
SOURCE_KIND, IDENTITY_KIND = "exposure-source", "exposure-identity"
REFUSED_KIND = "exposure-refused"  # requests refused before the source's count (415, 403, 422)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
OLDEST_BIRTH_DATE = date(1890, 1, 1)
TICK_SECONDS = 5.0
TICK_JITTER = 0.5  # each wait between half and one and a half ticks
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FRENCH_DATE = re.compile(r"[0-9]{2}/[0-9]{2}/[0-9]{4}")


class AnswerChannel(Protocol):
    """Sends a person, out of band, the answer to their check (production: the `Outbox`)."""

    def enqueue_exposure_answer(self, patient_id: uuid.UUID) -> list[uuid.UUID]: ...


@dataclass(frozen=True, slots=True)
class Details:
    """What a person submitted, well formed: the NIR (compact) and the birth date."""

    nir: Secret[str]
    birth_date: Secret[date]


@dataclass(frozen=True, slots=True)
class Check:
    """A check waiting for the worker: held in memory only, never written anywhere."""

    details: Details
    source: str
    request_id: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the request path did: ``queued``, ``limited`` (the source's hourly limit, with
    `retry_after`) or ``busy`` (the queue is full)."""

    outcome: str
    retry_after: int | None = None


def _birth_date(value: object, today: date) -> date:
    text = value if isinstance(value, str) else ""
    try:
        if ISO_DATE.fullmatch(text):
            parsed = date(int(text[:4]), int(text[5:7]), int(text[8:]))
        elif FRENCH_DATE.fullmatch(text):
            parsed = date(int(text[6:]), int(text[3:5]), int(text[:2]))
        else:
            raise ValueError
    except ValueError:
        raise InvalidRecord("birth_date", "not a date: year-month-day or day/month/year"
                            ) from None
    if not OLDEST_BIRTH_DATE <= parsed <= today:
        raise InvalidRecord("birth_date", "out of range")
    return parsed


def parse_details(nir: object, birth_date: object, today: date,
                  ) -> tuple[Details | None, list[tuple[str, str]]]:
    """The details if well formed, else the (field, reason) of each error. A pure function of
    the input: whether the person exists plays no part. Reasons never quote the value."""
    errors: list[tuple[str, str]] = []
    compact = born = None
    if nir is None or nir == "":
        errors.append(("nir", "missing"))
    elif not isinstance(nir, str):
        errors.append(("nir", "not a string"))
    else:
        try:
            compact = validate_nir(nir).compact
        except InvalidRecord as exc:
            errors.append(("nir", exc.reason))
    if birth_date is None or birth_date == "":
        errors.append(("birth_date", "missing"))
    else:
        try:
            born = _birth_date(birth_date, today)
        except InvalidRecord as exc:
            errors.append(("birth_date", exc.reason))
    if errors or compact is None or born is None:
        return None, errors
    return Details(Secret(compact), Secret(born)), []


def source_network(source: str) -> str:
    """What a source is counted as: its address in IPv4, its /64 in IPv6 (one subscriber's
    block); a source that is not an address is itself."""
    return network_of(source, 32, 64)


class Counters:
    """Fixed-window counters in ``login_throttle``, under their own HMAC namespace."""

    def __init__(self, store: AccountStore, key: Secret[bytes], clock: Clock) -> None:
        self._store = store
        self._keys = Throttle(store, key, clock)  # only its keyed HMAC is used
        self._clock = clock

    def __repr__(self) -> str:
        return "Counters()"

    def hit(self, kind: str, value: str, window: timedelta, limit: int) -> int | None:
        """Count one hit; None while within `limit`, else the seconds until the window ends."""
        return self.count(kind, value, window, limit)[1]

    def count(self, kind: str, value: str, window: timedelta, limit: int,
              ) -> tuple[int, int | None]:
        """Count one hit: the hits in this window so far (this one included), and `hit`'s
        answer. Concurrent hits each see a count of their own."""
        now = self._clock.now().astimezone(UTC)
        span = window.total_seconds()
        start = datetime.fromtimestamp(now.timestamp() // span * span, UTC)
        end = start + window
        seen: list[int] = []

        def block_for(hits: int) -> timedelta | None:
            seen.append(hits)
            return end - now if hits > limit else None

        until = self._store.record_failure(self._keys.key(kind, value), now, start, block_for)
        wait = None if until is None else max(1, int((until - now).total_seconds() + 0.999))
        return seen[-1], wait

    def reset(self, kind: str, value: str) -> None:
        """Forget a counter (its row is deleted; the next hit starts it again at one)."""
        self._store.clear_failures(self._keys.key(kind, value))


class Decoy:
    """A record nobody has, for the work a lookup does whoever the check names: a data key
    wrapped like a patient's (bound to a random id, under the active master key version), a
    birth date and a contact sealed under it, and one counter of its own. Held in memory only,
    made on first use; nothing it opens is used. Reading its row and key finds nothing, at the
    cost of the same queries."""

    VALUE = "decoy"  # its counter: one row, whatever the number of checks

    def __init__(self, vault: Vault, counters: Counters, per_identity_per_day: int) -> None:
        self._vault, self._counters, self._per_day = vault, counters, per_identity_per_day
        self._lock = threading.Lock()
        self._state: tuple[uuid.UUID, WrappedKey, dict[str, Sealed]] | None = None

    def __repr__(self) -> str:
        return "Decoy()"

    def _current(self, renew: bool = False) -> tuple[uuid.UUID, WrappedKey, dict[str, Sealed]]:
        with self._lock:
            if self._state is None or renew:
                self._state = self._made()
            return self._state

    def _made(self) -> tuple[uuid.UUID, WrappedKey, dict[str, Sealed]]:
        from labvault.vault.core import DEK_VERSION

        vault, decoy_id, dek = self._vault, uuid.uuid4(), new_data_key()
        kek_version, wrapped = vault._keys.wrap(dek, dek_context(decoy_id))
        cipher = vault._cipher_factory(dek, DEK_VERSION)
        plain = {"birth_date": date(1970, 1, 1), "email": "decoy@example.invalid",
                 "phone": "+33600000000"}
        sealed = {c: cipher.seal("patient", c, decoy_id, codec.PATIENT[c][0](v))
                  for c, v in plain.items()}
        return decoy_id, WrappedKey(decoy_id, kek_version, DEK_VERSION, wrapped), sealed

    def birth_date(self) -> None:
        """As `Lookup` opens a patient's birth date: the row, the key, unwrap, open."""
        decoy_id = self._current()[0]
        self._vault._records.load(decoy_id, with_results=False)
        self._vault._keystore.get(decoy_id)
        self._open("birth_date")

    def count(self) -> None:
        """As `Lookup` counts a person's answers of the day."""
        self._counters.hit(IDENTITY_KIND, self.VALUE, DAY, self._per_day)

    def answer(self) -> None:
        """As an answer is queued: the contact's row and key read, the key unwrapped, the
        e-mail and phone opened; then two writes, as an answer writes its audit event and its
        notices: the decoy's counter counted, then forgotten."""
        decoy_id = self._current()[0]
        self._vault._records.load(decoy_id, with_results=False)
        self._vault._keystore.get_many([decoy_id])
        self._open("email", "phone")
        self.count()
        self._counters.reset(IDENTITY_KIND, self.VALUE)

    def _open(self, *columns: str) -> None:
        decoy_id, key, sealed = self._current()
        try:
            cipher: FieldCipher = self._vault._cipher_for(decoy_id, key)
        except InvalidCiphertext:  # its master key version was retired meanwhile
            decoy_id, key, sealed = self._current(renew=True)
            cipher = self._vault._cipher_for(decoy_id, key)
        for column in columns:
            cipher.open("patient", column, decoy_id, sealed[column])


class TriedDates:
    """The wrong birth dates tried with each patient's NIR within a day, as keyed digests
    under a key drawn when the process starts and never stored: a lookup's audit event says
    how many distinct dates were tried (``dates_tried``) and whether this one is new, so the
    watcher tells somebody trying birth dates from a patient typing the same one again,
    without any date reaching the log. Memory holds one day of mismatches: patients are kept
    in the order they were last tried, and those not tried for a day leave from the front."""

    SPAN = timedelta(days=1)

    def __init__(self) -> None:
        self._tags = BlindIndex("exposure/tried-dates", Secret(secrets.token_bytes(32)))
        self._seen: OrderedDict[uuid.UUID, tuple[datetime, dict[bytes, datetime]]] = (
            OrderedDict())
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, patient_id: uuid.UUID, born: date, now: datetime) -> tuple[int, bool]:
        """Record a wrong date tried for a patient; (distinct dates within the day, new)."""
        tag = self._tags.compute(f"{patient_id}|{born.isoformat()}")
        cutoff = now - self.SPAN
        with self._lock:
            while self._seen:  # the patients not tried for a day
                oldest, (last, _) = next(iter(self._seen.items()))
                if last > cutoff:
                    break
                del self._seen[oldest]
            _, tried = self._seen.pop(patient_id, (now, {}))
            for old in [t for t, at in tried.items() if at <= cutoff]:
                del tried[old]
            new = tag not in tried
            tried[tag] = now
            self._seen[patient_id] = (now, tried)  # to the back: the latest tried
            return len(tried), new


class Lookup:
    """The worker's side of one check: blind-index lookup, birth date, answer out of band."""

    def __init__(self, vault: Vault, counters: Counters, per_identity_per_day: int,
                 answers: Callable[[], AnswerChannel]) -> None:
        self._vault = vault
        self._counters = counters
        self._per_day = per_identity_per_day
        self._answers = answers
        self._decoy = Decoy(vault, counters, per_identity_per_day)
        self._tried = TriedDates()

    def __repr__(self) -> str:
        return "Lookup()"

    def run(self, check: Check) -> str:
        """Look the check up; its outcome (``match``, ``limited``, ``mismatch``, ``miss``).
        Whatever it finds, it opens a birth date, counts, and reads and opens a contact then
        writes as an answer does: the decoy's where the check gives no patient's."""
        vault, details, decoy = self._vault, check.details, self._decoy
        found = vault._records.ids_by_index("nir_bidx",
                                            vault._nir_index.compute(details.nir.reveal()))
        matched, mismatched = [], []
        for pid in found:
            born = self._birth_date_of(pid)
            if born is not None:
                (matched if born == details.birth_date.reveal() else mismatched).append(pid)
        if not (matched or mismatched):
            decoy.birth_date()
        answer = [pid for pid in matched
                  if self._counters.hit(IDENTITY_KIND, pid.hex, DAY, self._per_day) is None]
        if not matched:
            decoy.count()
        outcome = ("match" if answer else "limited" if matched else
                   "mismatch" if mismatched else "miss")
        tried = [self._tried.add(pid, details.birth_date.reveal(), vault._clock.now())
                 for pid in mismatched] if outcome == "mismatch" else []
        extra = {"dates_tried": max(n for n, _ in tried),
                 "new_date": any(new for _, new in tried)} if tried else {}
        self._event(check, outcome, matched + mismatched, answers=len(answer),
                    limited=len(matched) - len(answer), mismatched=len(mismatched), **extra)
        if not answer:
            decoy.answer()
            return outcome
        channel = self._answers()
        for pid in answer:
            channel.enqueue_exposure_answer(pid)
        return outcome

    def _birth_date_of(self, patient_id: uuid.UUID) -> date | None:
        """The patient's birth date, the only field opened; None if erased meanwhile."""
        vault = self._vault
        rows = vault._records.load(patient_id, with_results=False)
        if rows is None or rows.patient.erased_at is not None or rows.patient.birth_date is None:
            return None
        try:
            cipher = vault._cipher_for(patient_id, vault._keystore.get(patient_id))
        except KeyUnavailable:
            return None
        decode = codec.PATIENT["birth_date"][1]
        return decode(cipher.open("patient", "birth_date", patient_id, rows.patient.birth_date))

    def _event(self, check: Check, outcome: str, patient_ids: list[uuid.UUID],
               **detail: object) -> None:
        self._vault._audit.append(AuditEvent(
            at=self._vault._clock.now(), actor=SYSTEM_ACTOR, role="system",
            source=check.source, purpose=PURPOSE, action=LOOKUP_ACTION, outcome=outcome,
            patient_ids=tuple(patient_ids), detail=detail, request_id=check.request_id))


__all__ = ["CHECK_ACTION", "LOOKUP_ACTION", "PUBLIC", "PURPOSE", "REFUSED_KIND", "SYSTEM_ACTOR",
           "AnswerChannel", "Check", "Counters", "Decoy", "Details", "Lookup", "Receipt",
           "parse_details", "source_network"]
