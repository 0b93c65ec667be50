"""The watcher: every audit event through every rule, findings into alerts, alerts into the
automatic response and the channels.

In process, the vault's audit trail calls `Watcher.observe` with each event once it is durable,
on the thread of the request that caused it: a critical finding has locked the account before
that request returns, so the next one fails. The rules' state is behind one lock; the database
writes (alert, response) and the deliveries are outside it. `labvault watch` runs the same
watcher over the log, for a deployment whose API workers run in several processes; alerts are
deduplicated in the database, so both may run.

Findings become alerts in `AlertStore`: a finding whose rule, actor and key match an open alert
counts one more occurrence of it; anything else is a new alert, which gets the response of its
severity (`response` in watch.toml: critical locks the account, high asks for a fresh second
factor or revokes a service token) and goes to the channels of its severity. Every alert and
every response is itself an audit event (``watch:…``, actor ``labvault:watch``), which the
rules skip.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from labvault.access.account_rules import aware
from labvault.audit.sink import AuditEvent
from labvault.crypto.blind import BlindIndex
from labvault.errors import ResponseFailed
from labvault.store.alerts import AlertStore, evidence_json
from labvault.watch.alerts import Alert, Finding, Severity
from labvault.watch.config import WatchConfig
from labvault.watch.rules import access_rules
from labvault.watch.rules_context import context_rules
from labvault.watch.rules_public import public_rules
from labvault.watch.state import SPANS, WATCH_ACTOR, Window, account_of, bucket, token_of

if TYPE_CHECKING:
    from labvault.vault.core import Vault
    from labvault.watch.notify import Notifier

log = logging.getLogger("labvault.watch")
DECOY_KEY = "watch/decoy/v1"
FACT_TTL = timedelta(seconds=60)
PRUNE_EVERY = 10_000  # events between two sweeps of empty windows
# What an unlock forgets of an actor: its recent counts, not what was learned of its habits.
CORRELATED = "correlated"
FORGETTABLE = frozenset({"volume", "write-volume", "enumeration", "misses", "unused-searches"})


class VaultFacts:
    """What the rules look up: decoy tags, account sites, patient sites; cached, refreshed at
    most every minute (a decoy seeded by another process is known within that minute)."""

    def __init__(self, store: AlertStore, decoy_index: BlindIndex,
                 now: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._decoy = decoy_index
        self._now = now
        self._decoys: set[bytes] = set()
        self._accounts: dict[uuid.UUID, str | None] = {}
        self._sites: dict[uuid.UUID, tuple[frozenset[str], float]] = {}
        self._loaded = -1e18
        self.refresh()

    def refresh(self) -> None:
        self._decoys = self._store.decoy_tags()
        self._accounts = self._store.account_sites()
        self._sites.clear()
        self._loaded = self._now()

    def _fresh(self) -> None:
        if self._now() - self._loaded > FACT_TTL.total_seconds():
            self.refresh()

    def decoy_tag(self, patient_id: uuid.UUID) -> bytes:
        return self._decoy.compute(str(patient_id))

    def is_decoy(self, patient_id: uuid.UUID) -> bool:
        self._fresh()
        return bool(self._decoys) and self.decoy_tag(patient_id) in self._decoys

    def site_of(self, actor: str) -> str | None:
        acct = account_of(actor)
        if acct is None:
            return None
        self._fresh()
        if acct not in self._accounts:
            self._accounts = self._store.account_sites()
        return self._accounts.get(acct)

    def sites_of(self, patient_id: uuid.UUID) -> frozenset[str]:
        now = self._now()
        hit = self._sites.get(patient_id)
        if hit is not None and now - hit[1] <= FACT_TTL.total_seconds():
            return hit[0]
        sites = self._store.sites_of(patient_id)
        if len(self._sites) > 100_000:
            self._sites.clear()
        self._sites[patient_id] = (sites, now)
        return sites


def first_seq_at(log_: Any, since: datetime) -> int:
    """The first event stored at or after `since` (binary search on the sequence: events are
    appended in time order, give or take clock steps, which only widens the warm-up)."""
    head = log_.head()
    lo, hi = 1, (head.seq if head is not None else 0) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        found = next(iter(log_.logged(since_seq=mid - 1, limit=1)), None)
        if found is None or found.event.at >= since:
            hi = mid
        else:
            lo = mid + 1
    return lo


def alert_of(row: Any) -> Alert:
    return Alert(id=row.id, rule=row.rule, severity=Severity(row.severity), actor=row.actor,
                 raised_at=aware(row.raised_at), explanation=row.explanation,
                 evidence=json.loads(row.evidence), status=row.status,
                 occurrences=row.occurrences, last_seen_at=aware(row.last_seen_at),
                 acknowledged_by=row.acknowledged_by, acknowledged_at=aware(row.acknowledged_at),
                 escalation_level=row.escalation_level,
                 next_escalation_at=aware(row.next_escalation_at), response=row.response,
                 patient_ids=tuple(uuid.UUID(p) for p in row.patient_ids.split()))


class Watcher:
    def __init__(self, vault: Vault, config: WatchConfig | None = None, *,
                 notifier: Notifier | None = None) -> None:
        self.config = config or WatchConfig()
        self._vault = vault
        self._clock = vault._clock
        self.store = AlertStore(vault._records.engine)
        self.facts = VaultFacts(self.store, BlindIndex(DECOY_KEY, vault._keys.index_key(DECOY_KEY)))
        self._rules = (access_rules(self.config) + context_rules(self.config)
                       + public_rules(self.config))
        self._lock = threading.Lock()
        self.notifier = notifier
        self.observed = 0
        self.rule_failures = 0
        self._recent_alerts: dict[str, deque[tuple[datetime, str, Severity]]] = {}

    def __repr__(self) -> str:
        return f"Watcher(rules={len(self._rules)})"

    def observe(self, event: AuditEvent) -> list[Alert]:
        """Run the rules on one event; the new alerts it raised (repeats are only counted)."""
        if event.actor == WATCH_ACTOR:
            return []
        findings: list[Finding] = []
        with self._lock:
            self.observed += 1
            for rule in self._rules:  # one rule failing must not silence the others
                try:
                    findings.extend(rule.observe(event, self.facts))
                except Exception as exc:  # noqa: BLE001 - counted, logged, visible in health
                    self.rule_failures += 1
                    trail = self._vault._audit  # shows in the audit health as a watch failure
                    trail.listener_failures = getattr(trail, "listener_failures", 0) + 1
                    log.error("rule %s failed (%s)", rule.name, type(exc).__name__)
            if self.observed % PRUNE_EVERY == 0:
                self._prune(event.at)
        return [a for f in findings if (a := self.raise_finding(f, event.at)) is not None]

    def learn(self, events: Iterable[AuditEvent]) -> int:
        """Feed past events to the rules without raising anything (warm-up at start: windows,
        baselines, usual hours and networks); how many were seen."""
        n = 0
        with self._lock:
            for event in events:
                if event.actor == WATCH_ACTOR:
                    continue
                for rule in self._rules:
                    rule.observe(event, self.facts)
                n += 1
        return n

    def warm_up(self, days: int | None = None, until_seq: int | None = None) -> int:
        """Learn from the audit log's events of the last `days` (the baseline's history), up
        to `until_seq` if given (events after it are to be observed, not learned twice)."""
        days = days if days is not None else self.config["baseline"]["history_days"]
        since = self._clock.now() - timedelta(days=days)
        log_ = self._vault._audit.chain  # type: ignore[attr-defined]
        first = first_seq_at(log_, since)
        if until_seq is not None and first > until_seq:
            return 0
        limit = None if until_seq is None else until_seq - first + 1
        return self.learn(e.event for e in log_.logged(since_seq=first - 1, limit=limit))

    def _prune(self, now: datetime) -> None:
        """Drop the windows left empty (actors and sources long gone): memory stays bounded by
        the activity of the last day, not by every address that ever knocked."""
        for rule in self._rules:
            for table in vars(rule).values():
                if not isinstance(table, dict):
                    continue
                empty = []
                for key, value in table.items():
                    if isinstance(value, Window):
                        value.evict(now)
                        if len(value) == 0:
                            empty.append(key)
                for key in empty:
                    del table[key]

    def forget(self, actor: str) -> None:
        """Drop the recent activity the rules count for an actor (after an unlock: the reads
        that locked it must not lock it again). What was learned of it — usual hours,
        networks, its usual day — stays: an unlock must not make it a stranger for a week.
        Other processes (API workers, ``labvault watch``) keep their own windows until they
        age out (a day at most)."""
        with self._lock:
            self._recent_alerts.pop(actor, None)
            for rule in self._rules:
                if rule.name not in FORGETTABLE:
                    continue
                for value in vars(rule).values():
                    if isinstance(value, dict):
                        value.pop(actor, None)

    def raise_finding(self, finding: Finding, at: datetime) -> Alert | None:
        sev = finding.severity
        row, new = self.store.raise_or_repeat({
            "id": uuid.uuid4(), "dedup_key": finding.dedup_key[:300], "rule": finding.rule,
            "severity": str(sev), "actor": finding.actor, "raised_at": at, "last_seen_at": at,
            "occurrences": 1, "explanation": finding.explanation,
            "evidence": evidence_json(finding.evidence),
            "patient_ids": " ".join(str(p) for p in finding.patient_ids), "status": "open",
            "escalation_level": 0, "next_escalation_at": None, "response": "none"})
        action = self.config["response"].get(str(sev), "none")
        due = (action != "none" and account_of(finding.actor) is not None
               and row.response in ("none", "failed"))
        if not new and not due:
            return None
        if new:
            self._audit("watch:alert:raise", at, finding.patient_ids, alert_id=str(row.id),
                        rule=finding.rule, severity=str(sev), about=finding.actor)
        if due:
            # A response that failed is tried again on the next occurrence; for a critical
            # finding the failure also fails the call that caused it: no data goes out while
            # the account it should have locked is still open.
            try:
                self.store.update(row.id, response=self._respond(row.id, finding))
            except Exception as exc:  # noqa: BLE001 - re-raised as ResponseFailed when critical
                self.store.update(row.id, response="failed")
                log.error("automatic response to alert %s failed (%s)", row.id,
                          type(exc).__name__)
                if sev is Severity.CRITICAL:
                    raise ResponseFailed("the automatic response to a critical alert could not "
                                         "be applied") from None
        if not new:
            return None
        alert = alert_of(self.store.alert(row.id))
        log.warning("alert %s %s %s: %s", alert.severity, alert.rule, alert.actor, alert.id)
        if self.notifier is not None:
            self.notifier.raised(alert)
        correlated = self._correlate(finding, at)
        if correlated is not None:
            self.raise_finding(correlated, at)
        return alert

    def _correlate(self, finding: Finding, at: datetime) -> Finding | None:
        """Alerts piling up on one account make one critical alert: several distinct rules at
        medium or above within `correlation.window_hours`, or several high alerts within
        `high_window_minutes` (a thief passing every step-up with a stolen TOTP secret, a slow
        extraction that stays under every limit)."""
        if (finding.rule == CORRELATED or finding.severity < Severity.MEDIUM
                or account_of(finding.actor) is None):
            return None
        c = self.config["correlation"]
        with self._lock:
            recent = self._recent_alerts.setdefault(finding.actor, deque())
            recent.append((at, finding.rule, finding.severity))
            while recent and recent[0][0] <= at - timedelta(hours=c["window_hours"]):
                recent.popleft()
            rules = sorted({r for _, r, _ in recent})
            since = at - timedelta(minutes=c["high_window_minutes"])
            highs = sum(1 for t, _, sev in recent if sev >= Severity.HIGH and t > since)
        if len(rules) < c["distinct_rules"] and highs < c["highs"]:
            return None
        return Finding(CORRELATED, Severity.CRITICAL, finding.actor, bucket(at, SPANS["1d"]),
                       f"{finding.actor}: {len(recent)} alerts of {len(rules)} rules within "
                       f"{c['window_hours']} h ({', '.join(rules)}), {highs} high within "
                       f"{c['high_window_minutes']} min",
                       {"rules": rules, "alerts": len(recent), "high": highs})

    def _respond(self, alert_id: uuid.UUID, finding: Finding) -> str:
        # The time of the response, not of the event: a watcher working through a backlog
        # must not ask sessions opened since for a proof they already gave.
        at = self._clock.now()
        action = self.config["response"].get(str(finding.severity), "none")
        account, token = account_of(finding.actor), token_of(finding.actor)
        if account is None or action == "none":
            return "none"
        about = {"alert_id": str(alert_id), "rule": finding.rule, "account_id": str(account)}
        if action == "lock":
            self._audit("watch:response:lock", at, **about)
            self.store.lock(account, at)
            return "locked"
        if token is not None:  # a service has no second factor to prove: its token goes
            self._audit("watch:response:token-revoke", at, token_id=str(token), **about)
            self.store.revoke_token(token, at)
            return "token_revoked"
        self._audit("watch:response:step-up", at, **about)
        self.store.require_step_up(account, at)
        return "step_up"

    def _audit(self, action: str, at: datetime, patient_ids: tuple[uuid.UUID, ...] = (),
               **detail: object) -> None:
        self._vault._audit.append(AuditEvent(
            at=at, actor=WATCH_ACTOR, role="system", source="watch",
            purpose="automatic response", action=action, outcome="allowed",
            patient_ids=patient_ids, detail=detail))


__all__ = ["DECOY_KEY", "VaultFacts", "Watcher", "alert_of"]
