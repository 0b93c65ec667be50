"""Sending the queued notices: the worker behind `Outbox.deliver_due`, its pace and its retries.

A run takes the queued notices of the configured channels whose next attempt is due, oldest
first, by batches. A batch's contacts (of the notices no other worker took meanwhile) are
opened after one audit event of the system (``labvault:notices``, ``breach:notice:deliver``)
naming its patients. Then, per notice, one attempt, at the pace of a `TokenBucket`
(``[notices] per_second``, all channels together). Each notice is claimed right before its
attempt (a compare-and-set on its attempt count that also holds it for a lease, `lease_for`,
which covers the longest one send can take with the configured timeouts and pace, and at
least `LEASE`; one send, not a batch): two workers never send the same notice, and one that dies releases it
when the lease ends. The attempt's outcome is written only while the claim still holds (the
attempt count unchanged): an attempt that outlived its lease does not overwrite the outcome
of the worker that took the notice over, and says so in the log.

- sent: ``done``, outcome ``sent`` and the provider's reference;
- `Refused` (4xx, SMTP 5xx): ``done``, ``failed``, the kind of error;
- `Retry` (network, 429, 5xx, SMTP 4xx): ``queued`` again, due after `retry_delay`
  (the provider's Retry-After, else ``retry_after_seconds`` doubled at each attempt), until
  ``max_attempts`` attempts: then ``done``, ``failed``;
- no usable contact any more, or the patient erased: ``done``, ``undeliverable``;
- any other exception (e.g. a scope that does not check): as `Retry`, its type for the error
  and in the log (nothing else of it: it may quote a value); the run goes on.

The outcome is sealed in ``delivery``; the code leaves it when the notice is done.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from labvault.breach import notice_text as text
from labvault.breach.delivery import Outgoing, Refused, Retry
from labvault.clock import Clock
from labvault.secret import Secret
from labvault.store.notices import DONE

if TYPE_CHECKING:
    from labvault.breach.notices import Contact, Outbox

log = logging.getLogger("labvault.breach")

LEASE = timedelta(minutes=10)
BATCH = 200
MAX_DELAY = timedelta(days=1)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class TokenBucket:
    """At most `rate` messages per second on average, in bursts of at most `burst` (one
    second's worth by default); waits with the injected `sleep`, reads the injected clock."""

    def __init__(self, rate: float, clock: Clock, sleep: Callable[[float], None] = time.sleep,
                 burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.capacity = float(rate), float(burst or max(1.0, rate))
        self._clock, self._sleep = clock, sleep
        self._tokens, self._at = self.capacity, clock.now()

    def _refill(self) -> None:
        now = self._clock.now()
        elapsed = max(0.0, (now - self._at).total_seconds())
        self._tokens, self._at = min(self.capacity, self._tokens + elapsed * self.rate), now

    def take(self) -> float:
        """Take one token, waiting if there is none; the seconds waited."""
        self._refill()
        waited = 0.0
        if self._tokens < 1:
            waited = (1 - self._tokens) / self.rate
            self._sleep(waited)
            self._refill()
        self._tokens -= 1
        return waited


def retry_delay(attempts: int, base_seconds: float, retry_after: float | None) -> timedelta:
    """When to try again after `attempts` failed attempts: the provider's Retry-After when it
    gave one, else ``base * 2**(attempts - 1)``; between 1 s and a day."""
    seconds = retry_after if retry_after is not None else base_seconds * 2 ** max(0, attempts - 1)
    return min(MAX_DELAY, timedelta(seconds=max(1.0, seconds)))


SEND_STEPS = 12  # network waits in one send at most (SMTP: connect, EHLO, STARTTLS, ... QUIT)


def lease_for(notices: dict[str, Any], timeouts: list[float]) -> timedelta:
    """How long a claim holds: twice the longest a send can take (each of its network waits
    at the longest timeout, and the pace's wait for a token), and never under `LEASE`. A
    claim that ran out while its send still went on would let a second worker send it too."""
    longest = SEND_STEPS * max(timeouts, default=0.0) + 1.0 / notices["per_second"]
    return max(LEASE, timedelta(seconds=2 * longest))


class Dispatcher:
    """The worker of one outbox (it uses the outbox's store, contacts and sealing)."""

    def __init__(self, outbox: Outbox, sleep: Callable[[float], None]) -> None:
        self._outbox = outbox
        self._clock = outbox._clock
        self._notices = outbox._config["notices"]
        self.bucket = TokenBucket(self._notices["per_second"], self._clock, sleep)
        config = outbox._config
        self.lease = lease_for(self._notices, [float(config["smtp"]["timeout_seconds"]),
                                               float(config["sms"]["timeout_seconds"])])
        self._incidents: dict[Any, tuple[Any, dict[int, Any]]] = {}

    def deliver_due(self, limit: int | None = None,
                    progress: Callable[[int], None] | None = None) -> dict[str, int]:
        counts = dict.fromkeys(("sent", "retrying", "failed", "undeliverable"), 0)
        outbox, store = self._outbox, self._outbox._store
        senders = outbox.senders
        if not senders:
            return counts
        self._incidents.clear()  # incidents and their scopes, read once per run
        for batch in batched(store.due(self._clock.now(), list(senders), limit), BATCH):
            batch = store.untaken(batch, self._clock.now())
            if not batch:
                continue
            contacts = outbox._contacts(sorted({r.patient_id for r in batch}),
                                        event=("breach:notice:deliver", {"notices": len(batch)}))
            for row in batch:
                # Claimed right before its attempt: the lease covers one send, not a batch.
                if not store.claim(row.id, row.attempts, self._clock.now() + self.lease):
                    continue  # another worker took it
                counts[self._deliver(row, contacts.get(row.patient_id))] += 1
                if progress is not None:
                    progress(1)
        return counts

    def _deliver(self, row: Any, contact: Contact | None) -> str:
        """One attempt of a claimed notice; its outcome, recorded."""
        attempts = row.attempts + 1  # the claim counted this one
        state: dict[str, Any] | None = None
        try:
            state = self._outbox._open(row.id, row.delivery)
            address = contact.of(row.channel) if contact is not None else None
            if address is None:
                gone = contact is None or contact.erased
                return self._finish(row, attempts, state, "undeliverable",
                                    "erased" if gone else "no-contact")
            subject, body = self._compose(row, state)
            self.bucket.take()
            ref = self._outbox.senders[row.channel].send(
                Outgoing(row.id, row.channel, address, subject, Secret(body)))
        except Refused as exc:
            return self._finish(row, attempts, state, "failed", exc.error)
        except Retry as exc:
            return self._retry(row, attempts, state, exc.error, exc.retry_after)
        except Exception as exc:  # noqa: BLE001 - one notice's fault must not stop the run
            log.warning("notice %s: attempt %d ended with %s; it will be tried again", row.id,
                        attempts, type(exc).__name__)  # the type only: a message may quote data
            return self._retry(row, attempts, state, type(exc).__name__, None)
        return self._finish(row, attempts, state, "sent", None, ref)

    def _retry(self, row: Any, attempts: int, state: dict[str, Any] | None, error: str,
               retry_after: float | None) -> str:
        """Queued again, due after `retry_delay`; failed once ``max_attempts`` were made. A
        state that could not be opened stays as it was."""
        if attempts >= self._notices["max_attempts"]:
            return self._finish(row, attempts, state, "failed", error)
        now = self._clock.now()
        values: dict[str, Any] = {"next_attempt_at": now + retry_delay(
            attempts, self._notices["retry_after_seconds"], retry_after)}
        if state is not None:
            state.update(error=error, at=now.isoformat())
            values["delivery"] = self._outbox._seal(row.id, state)
        self._record(row, attempts, values)
        return "retrying"

    def _finish(self, row: Any, attempts: int, state: dict[str, Any] | None, outcome: str,
                error: str | None, ref: str | None = None) -> str:
        state = dict(state or {})
        state.pop("code", None)  # from now on only the code's hash remains
        state.update(outcome=outcome, error=error, ref=ref, at=self._clock.now().isoformat())
        self._record(row, attempts, {"state": DONE, "next_attempt_at": None,
                                     "scope_id": state.get("scope"),
                                     "delivery": self._outbox._seal(row.id, state)})
        return outcome

    def _record(self, row: Any, attempts: int, values: dict[str, Any]) -> None:
        """Write an attempt's outcome if its claim still holds; else leave the notice to the
        worker that claimed it since (this attempt outlived its lease)."""
        if not self._outbox._store.record(row.id, attempts, **values):
            log.warning("notice %s: attempt %d outlived its lease; its outcome is not recorded",
                        row.id, attempts)

    def _compose(self, row: Any, state: dict[str, Any]) -> tuple[str, str]:
        outbox, config = self._outbox, self._outbox._config
        if row.kind == "exposure-answer":
            return text.answer(config, row.channel, state["code"],
                               outbox.exposures_of(row.patient_id))
        found = self._incidents.get(row.incident_id)
        if found is None:
            found = self._incidents[row.incident_id] = (
                outbox._breach.incident(row.incident_id),
                {s.id: s for s in outbox._scopes_of(row.incident_id)})
        scopes, key = found[1], str(row.patient_id)
        scope = scopes.get(state.get("scope"))
        if row.kind == "incident" and scopes:
            # A first notice says what is known when it is sent: the latest scope, if it
            # still lists the person (else the one it was queued from). An update completes
            # what was sent, from the scope it was queued for.
            latest = scopes[max(scopes)]
            if key in outbox._patients(latest):
                scope = latest
        entry = outbox._patients(scope).get(key, {}) if scope else {}
        if scope is not None:
            state["scope"] = scope.id  # recorded with the outcome: what the message said
        return text.notice(config, row.channel, state["code"], found[0], entry,
                           added=state.get("added") if row.kind == "incident-update" else None)


def summarize(notices: Iterable[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """Counts of (notice row, opened outcome) pairs: patients with a notice and reached (one
    notice sent), notices by state, outcome, channel and kind of error."""
    states, errors = Counter[str](), Counter[str]()
    outcomes = Counter(dict.fromkeys(("pending", "sent", "failed", "undeliverable"), 0))
    channels: dict[str, Counter[str]] = {}
    patients, reached = set(), set()
    for row, state in notices:
        outcome = state.get("outcome", "pending")
        states[row.state] += 1
        outcomes[outcome] += 1
        channels.setdefault(row.channel, Counter())[outcome] += 1
        errors.update([state["error"]] if state.get("error") else [])
        patients.add(row.patient_id)
        if outcome == "sent":
            reached.add(row.patient_id)
    return {"patients": len(patients), "patients_reached": len(reached),
            "notices": sum(states.values()), "by_state": dict(states),
            "by_outcome": dict(outcomes), "errors": dict(errors),
            "by_channel": {k: dict(v) for k, v in sorted(channels.items())}}


__all__ = ["LEASE", "SEND_STEPS", "Dispatcher", "TokenBucket", "batched", "lease_for", "retry_delay",
           "summarize"]
