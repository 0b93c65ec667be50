"""Detection rules on reads of patient data: decoys, volume, enumeration, misses, searches
without use, reads no care relationship explains.

Each rule sees every audit event once, in order, keeps what it needs per actor in memory, and
returns `Finding`s: the rule, the severity, the actor and an explanation with the evidence as
internal ids and counts. The engine (`labvault.watch.engine`) deduplicates them into alerts.
Time is the event's own time, never the wall clock, so a replay of the log gives the same
findings as the live stream did.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from labvault.audit.sink import AuditEvent
from labvault.watch.alerts import Finding, Severity
from labvault.watch.config import WatchConfig
from labvault.watch.state import (
    READS,
    RESULT_WRITES,
    SEARCH,
    SPANS,
    STAFF_ROLES,
    WRITES,
    Window,
    bucket,
    exempt,
)


class Facts(Protocol):
    """What the rules look up outside the event stream."""

    def is_decoy(self, patient_id: uuid.UUID) -> bool: ...
    def decoy_tag(self, patient_id: uuid.UUID) -> bytes: ...
    def site_of(self, actor: str) -> str | None: ...
    def sites_of(self, patient_id: uuid.UUID) -> frozenset[str]: ...


class Rule(Protocol):
    name: str

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]: ...


def _ids(ids: Iterable[uuid.UUID], n: int = 20) -> list[str]:
    return [str(i) for i in list(ids)[:n]]


# Events that name a decoy without reading it: its creation, and the DPO's breach work (a scope
# that lists the decoy the thief touched, its classification), which opens no value.
NOT_A_TOUCH = frozenset({"vault:patient:create", "breach:incident:manage"})


class DecoyRule:
    """Any touch of a honeytoken patient — found by a search, read, exported, written, even
    refused — is critical: no legitimate work ever opens one."""

    name = "honeytoken"

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if (exempt(ev.actor) or ev.action in NOT_A_TOUCH or not ev.patient_ids):
            return ()
        decoys = [p for p in ev.patient_ids if facts.is_decoy(p)]
        if not decoys:
            return ()
        # The alert names the decoy by a tag, not its id: whoever reads alerts (a mail box, a
        # syslog collector) must not learn which patients are decoys.
        tag = facts.decoy_tag(decoys[0]).hex()[:12]
        real = tuple(p for p in ev.patient_ids if p not in decoys)[:20]
        return [Finding(self.name, Severity.CRITICAL, ev.actor, f"{tag}:{bucket(ev.at, SPANS['1d'])}",
                        f"{ev.actor} touched decoy {tag} ({ev.action}, {ev.outcome}); no "
                        "legitimate work opens a decoy",
                        {"action": ev.action, "outcome": ev.outcome, "decoys": len(decoys),
                         "decoy": tag}, real)]


class VolumeRule:
    """Distinct patients read per actor within 1 min, 10 min, 1 h and 1 day against the role's
    limits, every window checked; and today's count against the actor's own usual day once it
    has one. An alert stands for a multiple of the limit: reading on to twice the limit raises
    a new one (with its response) instead of only counting occurrences of the first.

    With ``writes``, the same over results entered or validated (``write-volume``): a stolen
    account could otherwise alter thousands of results unseen."""

    name = "volume"

    def __init__(self, config: WatchConfig, *, writes: bool = False) -> None:
        v = config["volume"]
        self.actions = RESULT_WRITES if writes else READS
        self.name = "write-volume" if writes else "volume"
        self.verb = "wrote results for" if writes else "read"
        self.limits: dict[str, dict[str, int]] = v["write_limits" if writes else "limits"]
        self.severity = {w: Severity(s) for w, s in v["severity"].items()}
        self.with_baseline = not writes
        b = config["baseline"]
        self.learning_days, self.history = b["learning_days"], b["history_days"]
        self.factor, self.floor = b["factor"], b["min_patients"]
        self._windows: dict[str, dict[str, Window]] = {}
        self._days: dict[str, dict[date, set[uuid.UUID]]] = defaultdict(dict)

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if ev.action not in self.actions or ev.outcome != "allowed" or exempt(ev.actor):
            return ()
        windows = self._windows.get(ev.actor)
        if windows is None:
            windows = self._windows[ev.actor] = {w: Window(s) for w, s in SPANS.items()}
        for w in windows.values():
            for pid in ev.patient_ids:
                w.add(ev.at, pid)
        out: list[Finding] = []
        limits = self.limits.get(ev.role) or {}
        for name, window in windows.items():
            limit, n = limits.get(name), window.distinct()
            if limit is None or n <= limit:
                continue
            out.append(Finding(
                self.name, self.severity.get(name, Severity.HIGH), ev.actor,
                f"{name}:{bucket(ev.at, SPANS['1d'])}:x{n // max(limit, 1)}",
                f"{ev.actor} ({ev.role}) {self.verb} {n} distinct patients within {name}; the "
                f"role's limit is {limit}",
                {"window": name, "patients": n, "limit": limit, "role": ev.role},
                tuple(ev.patient_ids[:20])))
        if self.with_baseline:
            out.extend(self._baseline(ev))
        return out

    def _baseline(self, ev: AuditEvent) -> list[Finding]:
        days = self._days[ev.actor]
        today = ev.at.date()
        seen = days.setdefault(today, set())
        seen.update(ev.patient_ids)
        past = [len(s) for d, s in days.items() if d != today and (today - d).days <= self.history]
        if len(days) > self.history + 1:
            for d in sorted(days)[:-self.history - 1]:
                del days[d]
        if len(past) < self.learning_days:
            return []
        usual = statistics.fmean(past)
        threshold = max(self.floor, usual * self.factor, max(past) * 1.5)
        if len(seen) <= threshold:
            return []
        return [Finding("volume-baseline", Severity.MEDIUM, ev.actor, today.isoformat(),
                        f"{ev.actor} read {len(seen)} distinct patients today; its usual day is "
                        f"{usual:.0f} (over {len(past)} active days)",
                        {"today": len(seen), "usual": round(usual, 1), "days": len(past),
                         "threshold": round(threshold, 1)})]


class EnumerationRule:
    """Searches that walk identifiers: many distinct NIRs of one birth block, or one name tried
    with many birth dates (one date with many names), within the hour. The search events carry
    keyed tags of the parts of what was searched (`labvault.watch.shape`), never the value; one
    NIR searched again is one NIR. Counting is incremental (no scan of the hour per search)."""

    name = "enumeration"

    def __init__(self, config: WatchConfig) -> None:
        c = config["enumeration"]
        self.span = timedelta(minutes=c["window_minutes"])
        self.block_min, self.block_critical = c["nir_block_searches"], c["nir_block_critical"]
        self.shared_min, self.shared_critical = c["shared_part_searches"], c["shared_part_critical"]
        # actor -> the hour's (time, kind, group, member), and (kind, group) -> member counts
        self._recent: dict[str, deque[tuple[datetime, str, str, str]]] = defaultdict(deque)
        self._groups: dict[str, dict[tuple[str, str], Counter[str]]] = defaultdict(dict)

    def _add(self, actor: str, at: datetime, kind: str, group: str, member: str) -> int:
        recent, groups = self._recent[actor], self._groups[actor]
        recent.append((at, kind, group, member))
        groups.setdefault((kind, group), Counter())[member] += 1
        while recent and recent[0][0] <= at - self.span:
            _, k, g, m = recent.popleft()
            counts = groups[(k, g)]
            counts[m] -= 1
            if counts[m] <= 0:
                del counts[m]
                if not counts:
                    del groups[(k, g)]
        return len(groups.get((kind, group), ()))

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if ev.action != SEARCH or ev.outcome != "allowed" or exempt(ev.actor):
            return ()
        d = ev.detail
        if "blk" in d and "nid" in d:
            n = self._add(ev.actor, ev.at, "nir", str(d["blk"]), str(d["nid"]))
            return self._finding(ev, n, self.block_min, self.block_critical, f"nir:{d['blk']}",
                                 "distinct NIRs searched in one birth block")
        if "nt" not in d or "bt" not in d:
            return ()
        nt, bt = str(d["nt"]), str(d["bt"])
        by_name = self._add(ev.actor, ev.at, "name", nt, bt)
        by_date = self._add(ev.actor, ev.at, "birth", bt, nt)
        if by_name >= by_date:
            return self._finding(ev, by_name, self.shared_min, self.shared_critical,
                                 f"name:{nt}", "birth dates tried with one name")
        return self._finding(ev, by_date, self.shared_min, self.shared_critical,
                             f"birth:{bt}", "names tried with one birth date")

    def _finding(self, ev: AuditEvent, n: int, low: int, critical: int, key: str,
                 what: str) -> list[Finding]:
        if n < low:
            return []
        severity = Severity.CRITICAL if n >= critical else Severity.HIGH
        return [Finding(self.name, severity, ev.actor, f"{key}:{severity}",
                        f"{ev.actor}: {n} {what} within {self.span}",
                        {"searches": n, "pattern": key.split(":", 1)[0]})]


def _search_key(ev: AuditEvent) -> object:
    """What a search looked for, as its keyed tags: the same search twice counts once. A
    search without tags is its own key."""
    d = ev.detail
    if "nid" in d:
        return ("nir", d["nid"], d.get("blk"))
    if "nt" in d and "bt" in d:
        return ("name", d["nt"], d["bt"])
    return ("other", ev.at, ev.request_id, id(ev))


class MissRule:
    """The share of distinct searches that find nothing (enumeration mostly misses; padding
    with one search that finds somebody, repeated, does not dilute it), and reads of internal
    ids that do not exist (probing)."""

    name = "misses"

    def __init__(self, config: WatchConfig) -> None:
        c = config["misses"]
        self.span = timedelta(hours=c["window_hours"])
        self.min, self.ratio = c["min_misses"], c["ratio"]
        self.critical, self.critical_ratio = c["critical_misses"], c["critical_ratio"]
        self.probes = c["id_probes"]
        self._searches: dict[str, Window] = {}
        self._misses: dict[str, Window] = {}
        self._probes: dict[str, Window] = {}

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if exempt(ev.actor):
            return ()
        if ev.outcome == "not_found" and ev.action in READS:
            w = self._probes.setdefault(ev.actor, Window(timedelta(hours=1)))
            w.add(ev.at, ev.patient_ids[0] if ev.patient_ids else None)
            if w.distinct() >= self.probes:
                return [Finding("id-probing", Severity.HIGH, ev.actor, bucket(ev.at, SPANS["1h"]),
                                f"{ev.actor} asked for {w.distinct()} patient ids that do not "
                                "exist within the hour", {"missing_ids": w.distinct()})]
            return ()
        if ev.action != SEARCH or ev.outcome != "allowed" or "hits" not in ev.detail:
            return ()
        searches = self._searches.setdefault(ev.actor, Window(self.span))
        misses = self._misses.setdefault(ev.actor, Window(self.span))
        key = _search_key(ev)
        searches.add(ev.at, key)
        misses.evict(ev.at)
        if ev.detail.get("hits") == 0:
            misses.add(ev.at, key)
        n, total = misses.distinct(), searches.distinct()
        ratio = n / total if total else 0.0
        if n >= self.critical and ratio >= self.critical_ratio:
            severity = Severity.CRITICAL
        elif n >= self.min and ratio >= self.ratio:
            severity = Severity.HIGH
        else:
            return ()
        return [Finding(self.name, severity, ev.actor,
                        f"{bucket(ev.at, SPANS['1d'])}:{severity}",
                        f"{ev.actor}: {n} of its last {total} distinct searches found nobody "
                        f"({ratio:.0%}) within {self.span}",
                        {"misses": n, "searches": total, "ratio": round(ratio, 3)})]


class UnusedSearchRule:
    """Searches that found a patient the actor then never opened: checking who is a patient of
    the laboratory, without a reason to read the file."""

    name = "unused-searches"

    def __init__(self, config: WatchConfig) -> None:
        c = config["unused_searches"]
        self.grace = timedelta(minutes=c["use_within_minutes"])
        self.per_day = c["per_day"]
        self._pending: dict[str, dict[uuid.UUID, datetime]] = defaultdict(dict)
        self._unused: dict[str, Window] = {}

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if exempt(ev.actor) or ev.role not in STAFF_ROLES:
            return ()
        pending = self._pending[ev.actor]
        if ev.outcome == "allowed" and (ev.action in READS or ev.action in WRITES):
            for pid in ev.patient_ids:
                pending.pop(pid, None)
        late = [pid for pid, at in pending.items() if at + self.grace <= ev.at]
        unused = self._unused.setdefault(ev.actor, Window(SPANS["1d"]))
        for pid in late:
            unused.add(pending.pop(pid), pid)
        if ev.action == SEARCH and ev.outcome == "allowed" and len(ev.patient_ids) == 1:
            pending[ev.patient_ids[0]] = ev.at
        unused.evict(ev.at)
        if late and unused.distinct() >= self.per_day:
            return [Finding(self.name, Severity.MEDIUM, ev.actor, bucket(ev.at, SPANS["1d"]),
                            f"{ev.actor} found {unused.distinct()} patients by search within a "
                            f"day without opening their file within {self.grace}",
                            {"unused": unused.distinct()}, tuple(unused.latest(20)))]  # type: ignore[arg-type]
        return ()


class UnexplainedRule:
    """A read by staff that no care relationship explains: the account's lab site is not where
    the patient's orders were sampled, and the actor has not written to the patient. One such
    read goes to the review queue (low); many in a day is an alert."""

    name = "unexplained"

    def __init__(self, config: WatchConfig) -> None:
        self.per_day = config["unexplained"]["per_day"]
        self._wrote: dict[str, set[uuid.UUID]] = defaultdict(set)
        self._daily: dict[str, Window] = {}

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if exempt(ev.actor) or ev.role not in STAFF_ROLES or ev.outcome != "allowed":
            return ()
        if ev.action in WRITES:
            wrote = self._wrote[ev.actor]
            if len(wrote) > 50_000:
                wrote.clear()
            wrote.update(ev.patient_ids)
            return ()
        if ev.action not in ("vault:patient:read", "vault:result:read"):
            return ()
        site = facts.site_of(ev.actor)
        if site is None:
            return ()
        out = []
        for pid in ev.patient_ids:
            sites = facts.sites_of(pid)
            # No order yet (just registered): nothing to judge the read by.
            if not sites or pid in self._wrote[ev.actor] or site in sites:
                continue
            daily = self._daily.setdefault(ev.actor, Window(SPANS["1d"]))
            daily.add(ev.at, pid)
            out.append(Finding(self.name, Severity.LOW, ev.actor, str(pid),
                               f"{ev.actor} (site {site}) read patient {pid}, who has no order "
                               "at that site and whom this account never wrote to",
                               {"site": site}, (pid,)))
            if daily.distinct() > self.per_day:
                out.append(Finding("unexplained-volume", Severity.MEDIUM, ev.actor,
                                   bucket(ev.at, SPANS["1d"]),
                                   f"{ev.actor} read {daily.distinct()} patients within a day "
                                   "that no care relationship explains",
                                   {"unexplained": daily.distinct(), "limit": self.per_day},
                                   tuple(daily.latest(20))))  # type: ignore[arg-type]
        return out


def access_rules(config: WatchConfig) -> list[Any]:
    return [DecoyRule(), VolumeRule(config), VolumeRule(config, writes=True),
            EnumerationRule(config), MissRule(config),
            UnusedSearchRule(config), UnexplainedRule(config)]


__all__ = ["DecoyRule", "EnumerationRule", "Facts", "MissRule", "Rule", "UnexplainedRule",
           "UnusedSearchRule", "VolumeRule", "access_rules"]
