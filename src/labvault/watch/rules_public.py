"""Detection on the public pages: the exposure check and the notice verification page.

Both answer anyone, so both are rate-limited per source (`labvault.breach`); the limits slow a
prober down, these rules tell the DPO that one is at work.

- ``exposure-probing``: from one network, within ``[public] window_hours``, lookups of the
  exposure check that found nobody (``miss``) or a patient's NIR with another birth date
  (``mismatch``). Misses alone (``exposure_misses``) are medium: typing errors happen, a
  list being tried does not stop at ten. Mismatches (``exposure_mismatches``) are high: the
  prober holds real NIRs and is guessing birth dates.
- ``birth-date-guessing``: one patient's NIR with a wrong birth date
  ``birth_date_guesses`` times within the window, from any number of sources: somebody who
  knows that person's NIR is trying to have an answer sent about them, or to learn their
  birth date from a change in behaviour. High; the alert names the patient (internal id).
- ``code-guessing``: from one network, the verification page blocked (after five unknown
  codes in a row) ``code_blocks`` times within the window: codes are being guessed, maybe to
  make a phishing message look genuine. Medium.

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


class PublicProbeRule:
    name = "public"

    def __init__(self, config: WatchConfig) -> None:
        c = config["public"]
        self.span = timedelta(hours=c["window_hours"])
        self.misses, self.mismatches = c["exposure_misses"], c["exposure_mismatches"]
        self.guesses, self.blocks = c["birth_date_guesses"], c["code_blocks"]
        ctx = config["context"]
        self.v4, self.v6 = ctx["ipv4_prefix"], ctx["ipv6_prefix"]
        self._misses: dict[str, Window] = {}
        self._mismatches: dict[str, Window] = {}
        self._guesses: dict[uuid.UUID, Window] = {}
        self._blocks: dict[str, Window] = {}

    def _window(self, table: dict, key: object) -> Window:
        w = table.get(key)
        if w is None:
            w = table[key] = Window(self.span)
        return w

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if ev.action == LOOKUP and ev.outcome in ("miss", "mismatch"):
            return self._lookup(ev)
        if ev.action == VERIFY and ev.outcome == "throttled":
            net = network_of(ev.source, self.v4, self.v6)
            w = self._window(self._blocks, net)
            w.add(ev.at, ev.at)
            if len(w) >= self.blocks:
                return [Finding("code-guessing", Severity.MEDIUM, f"source:{net}",
                                bucket(ev.at, SPANS["1d"]),
                                f"network {net}: the notice verification page blocked it "
                                f"{len(w)} times within {self.span} (five unknown codes each)",
                                {"blocks": len(w)})]
        return ()

    def _lookup(self, ev: AuditEvent) -> list[Finding]:
        net = network_of(ev.source, self.v4, self.v6)
        request = ev.request_id or f"{ev.at.isoformat()}/{id(ev)}"
        misses = self._window(self._misses, net)
        misses.add(ev.at, request)
        out: list[Finding] = []
        if ev.outcome == "mismatch":
            mismatches = self._window(self._mismatches, net)
            mismatches.add(ev.at, request)
            for pid in ev.patient_ids:
                guesses = self._window(self._guesses, pid)
                guesses.add(ev.at, request)
                if guesses.distinct() >= self.guesses:
                    out.append(Finding(
                        "birth-date-guessing", Severity.HIGH, "public",
                        f"{bucket(ev.at, SPANS['1d'])}:{pid}",
                        f"patient {pid}: {guesses.distinct()} exposure checks with their NIR "
                        f"and another birth date within {self.span}",
                        {"guesses": guesses.distinct()}, (pid,)))
            if mismatches.distinct() >= self.mismatches:
                out.append(Finding(
                    "exposure-probing", Severity.HIGH, f"source:{net}",
                    f"{bucket(ev.at, SPANS['1d'])}:{Severity.HIGH}",
                    f"network {net}: {mismatches.distinct()} exposure checks with a patient's "
                    f"NIR and another birth date within {self.span}",
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
