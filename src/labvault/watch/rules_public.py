"""Detection on the public pages: the exposure check and the notice verification page.

Both answer anyone, so both are rate-limited per source (`labvault.breach`); the limits slow a
prober down, these rules tell the DPO that one is at work.

- ``exposure-probing``: from one network, within ``[public] window_hours``, lookups of the
  exposure check that found nobody (``miss``) or a patient's NIR with another birth date
  (``mismatch``). Misses alone (``exposure_misses``) are medium: typing errors happen, a
  list being tried does not stop at ten. Mismatches with a date not tried before for that
  NIR (``exposure_mismatches``) are high: the prober holds real NIRs and is guessing birth
  dates.
- ``birth-date-guessing``: one patient's NIR with ``birth_date_guesses`` distinct wrong
  birth dates within the window, from any number of sources: somebody who knows that
  person's NIR is trying birth dates. The same wrong date again (a patient whose date is
  mistyped, or wrong in the laboratory's records) is not a guess: the worker says whether a
  date is new (`labvault.breach.exposure_worker.TriedDates`), no date reaches the log. High;
  one alert per patient (internal id), up to ``GUESS_ALERTS`` patients a day, then one more
  alert for the rest of the day that counts them: someone holding a leaked list cannot bury
  the DPO under alerts, and each patient named can be looked after.
- ``code-guessing``: from one address (a /64 in IPv6), ``code_misses`` unknown codes
  checked on the verification page within the window. Its throttle lets ten through, then
  one per half hour: fifteen means somebody waited out the lock again and again to guess
  codes, maybe to make a phishing message look genuine. Medium.

Alerts name a network (``source:<net>``) or, for a patient's NIR, the public, never a value:
the submitted details never reach the audit log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta

from labvault.audit.sink import AuditEvent
from labvault.breach.exposure_worker import LOOKUP_ACTION as LOOKUP
from labvault.watch.alerts import Finding, Severity
from labvault.watch.config import WatchConfig
from labvault.watch.rules import Facts
from labvault.watch.state import SPANS, Window, bucket, network_of

VERIFY = "breach:notice:verify"  # what labvault.breach.notices audits of the public page
GUESS_ALERTS = 10  # patients named one by one each day by birth-date-guessing


class PublicProbeRule:
    name = "public"

    def __init__(self, config: WatchConfig) -> None:
        c = config["public"]
        self.span = timedelta(hours=c["window_hours"])
        self.misses, self.mismatches = c["exposure_misses"], c["exposure_mismatches"]
        self.guesses, self.codes = c["birth_date_guesses"], c["code_misses"]
        ctx = config["context"]
        self.v4, self.v6 = ctx["ipv4_prefix"], ctx["ipv6_prefix"]
        self._misses: dict[str, Window] = {}
        self._mismatches: dict[str, Window] = {}
        self._guesses: dict[uuid.UUID, Window] = {}
        self._guessed: dict[str, Window] = {}  # patients whose NIR was guessed, by day
        self._codes: dict[str, Window] = {}

    def _window(self, table: dict, key: object) -> Window:
        w = table.get(key)
        if w is None:
            w = table[key] = Window(self.span)
        return w

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if ev.action == LOOKUP and ev.outcome in ("miss", "mismatch"):
            return self._lookup(ev)
        if ev.action == VERIFY and ev.outcome == "unknown":
            address = network_of(ev.source, 32, 64)  # as the page's throttle counts
            w = self._window(self._codes, address)
            w.add(ev.at, ev.request_id or f"{ev.at.isoformat()}/{id(ev)}")
            if len(w) >= self.codes:
                return [Finding("code-guessing", Severity.MEDIUM, f"source:{address}",
                                bucket(ev.at, SPANS["1d"]),
                                f"address {address}: {len(w)} unknown codes checked on the "
                                f"notice verification page within {self.span}",
                                {"unknown_codes": len(w)})]
        return ()

    def _lookup(self, ev: AuditEvent) -> list[Finding]:
        net = network_of(ev.source, self.v4, self.v6)
        request = ev.request_id or f"{ev.at.isoformat()}/{id(ev)}"
        misses = self._window(self._misses, net)
        misses.add(ev.at, request)
        out: list[Finding] = []
        # A date tried before for this NIR is not a new guess (events written before the
        # worker said so count each).
        if ev.outcome == "mismatch" and ev.detail.get("new_date", True):
            mismatches = self._window(self._mismatches, net)
            mismatches.add(ev.at, request)
            day = bucket(ev.at, SPANS["1d"])
            for pid in ev.patient_ids:
                guesses = self._window(self._guesses, pid)
                guesses.add(ev.at, request)
                if guesses.distinct() < self.guesses:
                    continue
                guessed = self._window(self._guessed, day)
                guessed.add(ev.at, pid)
                n = guessed.distinct()
                if n <= GUESS_ALERTS:  # one alert each (its key): a repeat is only counted
                    out.append(Finding(
                        "birth-date-guessing", Severity.HIGH, "public", f"{day}:{pid}",
                        f"patient {pid}: {guesses.distinct()} exposure checks with their NIR "
                        f"and another birth date each within {self.span}",
                        {"guesses": guesses.distinct()}, (pid,)))
                elif n > GUESS_ALERTS:
                    out.append(Finding(
                        "birth-date-guessing", Severity.HIGH, "public", f"{day}:more",
                        f"more than {GUESS_ALERTS} patients today whose NIR was tried with "
                        "several birth dates: a list of NIRs is being tried (the exposure "
                        "check's lookups in the audit log name them)", {"patients": n}))
            if mismatches.distinct() >= self.mismatches:
                out.append(Finding(
                    "exposure-probing", Severity.HIGH, f"source:{net}",
                    f"{bucket(ev.at, SPANS['1d'])}:{Severity.HIGH}",
                    f"network {net}: {mismatches.distinct()} exposure checks with a patient's "
                    f"NIR and a birth date not tried before within {self.span}",
                    {"mismatches": mismatches.distinct(), "misses": misses.distinct()}))
        if misses.distinct() >= self.misses:
            out.append(Finding(
                "exposure-probing", Severity.MEDIUM, f"source:{net}",
                f"{bucket(ev.at, SPANS['1d'])}:{Severity.MEDIUM}",
                f"network {net}: {misses.distinct()} exposure checks that found nobody, or a "
                f"NIR with another birth date, within {self.span}",
                {"misses": misses.distinct()}))
        return out


def public_rules(config: WatchConfig) -> list[PublicProbeRule]:
    return [PublicProbeRule(config)]


__all__ = ["LOOKUP", "VERIFY", "PublicProbeRule", "public_rules"]
