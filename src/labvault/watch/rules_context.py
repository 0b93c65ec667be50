"""Detection rules on who logs in, from where and when: context and authentication.

Context: access outside the laboratory's opening hours and outside the actor's own usual
hours; from a network the account was never seen on; a service token used from an address it
was never used from; one account active from two networks at once (shared or stolen).
Authentication: bursts of failed logins on one account, password spraying across accounts
from one source, a login that succeeds from a source that was spraying (credential stuffing
hit), failed second factors (the password is known to someone), a login right after the
second factor was reset.

Learning: the hour and network rules speak only once the actor has `learning_days` active days
behind it; before that every hour and network is new.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from labvault.access.account_rules import AccessEvent
from labvault.audit.sink import AuditEvent
from labvault.watch.alerts import Finding, Severity
from labvault.watch.config import WatchConfig
from labvault.watch.rules import Facts
from labvault.watch.state import (
    READS,
    SEARCH,
    SPANS,
    WRITES,
    Window,
    account_of,
    bucket,
    exempt,
    network_of,
    token_of,
)

DATA = READS | WRITES | {SEARCH}
LOGIN_SUCCESS = AccessEvent.LOGIN_SUCCESS
LOGIN_FAILURE = AccessEvent.LOGIN_FAILURE
LOGIN_PASSWORD = AccessEvent.LOGIN_PASSWORD
MFA_FAILURE = AccessEvent.MFA_FAILURE
RESET = AccessEvent.ACCOUNT_RESET_MFA


class ContextRule:
    name = "context"

    def __init__(self, config: WatchConfig) -> None:
        c = config["context"]
        self.learning = c["learning_days"]
        self.zone = ZoneInfo(c["timezone"])
        self.open_days = set(c["open_days"])
        self.open_from, self.open_until = time.fromisoformat(c["open_from"]), \
            time.fromisoformat(c["open_until"])
        self.concurrent = timedelta(minutes=c["concurrent_minutes"])
        self.v4, self.v6 = c["ipv4_prefix"], c["ipv6_prefix"]
        self._days: dict[str, set[Any]] = defaultdict(set)  # active days
        self._hours: dict[str, set[int]] = defaultdict(set)  # hours of the week seen
        self._networks: dict[str, set[str]] = defaultdict(set)
        self._last: dict[str, tuple[str, datetime]] = {}  # account -> (network, last event)
        self._token_sources: dict[str, set[str]] = defaultdict(set)

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        # Patients read their results from anywhere, at any hour: no context rule for them.
        if (exempt(ev.actor) or ev.outcome != "allowed" or account_of(ev.actor) is None
                or ev.role == "patient"):
            return ()
        if ev.action not in DATA and ev.action != LOGIN_SUCCESS:
            return ()
        out: list[Finding] = []
        local = ev.at.astimezone(self.zone)
        hour = local.weekday() * 24 + local.hour
        known_days = len(self._days[ev.actor])
        learned = known_days >= self.learning
        if token_of(ev.actor) is not None:
            out += self._token(ev)
        else:
            net = network_of(ev.source, self.v4, self.v6)
            if learned and net not in self._networks[ev.actor]:
                out.append(Finding("new-network", Severity.MEDIUM, ev.actor, net,
                                   f"{ev.actor} used from network {net}, never seen for this "
                                   f"account in {known_days} active days",
                                   {"network": net, "known_networks": len(self._networks[
                                       ev.actor])}))
            last = self._last.get(ev.actor)
            if last is not None and last[0] != net and ev.at - last[1] <= self.concurrent:
                out.append(Finding("concurrent-networks", Severity.HIGH, ev.actor,
                                   bucket(ev.at, SPANS["1h"]),
                                   f"{ev.actor} active from {last[0]} and {net} within "
                                   f"{self.concurrent}: a shared or stolen account",
                                   {"networks": sorted({last[0], net})}))
            self._last[ev.actor] = (net, ev.at)
            self._networks[ev.actor].add(net)
        if learned and not self._open(local) and not (
                {hour, (hour - 1) % 168, (hour + 1) % 168} & self._hours[ev.actor]):
            out.append(Finding("off-hours", Severity.MEDIUM, ev.actor, local.date().isoformat(),
                               f"{ev.actor} active at {local:%a %H:%M} (laboratory time), "
                               "outside opening hours and outside its own usual hours",
                               {"local_time": f"{local:%a %H:%M}", "active_days": known_days}))
        self._days[ev.actor].add(local.date())
        self._hours[ev.actor].add(hour)
        return out

    def _open(self, local: datetime) -> bool:
        return local.weekday() in self.open_days and self.open_from <= local.time() < self.open_until

    def _token(self, ev: AuditEvent) -> list[Finding]:
        seen = self._token_sources[ev.actor]
        out = []
        if seen and ev.source not in seen:
            out.append(Finding("token-new-address", Severity.HIGH, ev.actor, ev.source,
                               f"{ev.actor} (a service token) used from {ev.source}, an address "
                               f"it was never used from ({len(seen)} known)",
                               {"address": ev.source, "known_addresses": len(seen)}))
        seen.add(ev.source)
        return out


class AuthRule:
    name = "auth"

    def __init__(self, config: WatchConfig) -> None:
        c = config["auth"]
        self.span = timedelta(minutes=c["window_minutes"])
        self.failed, self.failed_high = c["failed_logins"], c["failed_logins_high"]
        self.spray, self.mfa = c["spray_accounts"], c["mfa_failures"]
        self.after_reset = timedelta(minutes=c["after_reset_minutes"])
        ctx = config["context"]
        self.v4, self.v6 = ctx["ipv4_prefix"], ctx["ipv6_prefix"]
        self.spray_span = timedelta(minutes=c["spray_window_minutes"])
        self._failures: dict[str, Window] = {}
        self._by_source: dict[str, Window] = {}
        self._mfa: dict[str, Window] = {}
        self._reset: dict[str, datetime] = {}

    def _window(self, table: dict[str, Window], key: str) -> Window:
        w = table.get(key)
        if w is None:
            w = table[key] = Window(self.span)
        return w

    def observe(self, ev: AuditEvent, facts: Facts) -> Iterable[Finding]:
        if exempt(ev.actor):
            return ()
        if ev.action == LOGIN_FAILURE:
            return self._login_failure(ev)
        if ev.action == MFA_FAILURE and ev.outcome == "failed" and account_of(ev.actor):
            w = self._window(self._mfa, ev.actor)
            w.add(ev.at, ev.at)
            if len(w) >= self.mfa:
                return [Finding("mfa-failures", Severity.HIGH, ev.actor, bucket(ev.at, SPANS["1h"]),
                                f"{ev.actor}: {len(w)} wrong second-factor codes within "
                                f"{self.span} after a right password: the password is known "
                                "to someone", {"failures": len(w)})]
            return ()
        if ev.action == RESET and ev.outcome == "allowed" and "account_id" in ev.detail:
            self._reset[f"account:{ev.detail['account_id']}"] = ev.at
            return ()
        if ev.action in (LOGIN_PASSWORD, LOGIN_SUCCESS) and ev.outcome == "allowed":
            return self._login_success(ev)
        return ()

    def _login_failure(self, ev: AuditEvent) -> list[Finding]:
        out: list[Finding] = []
        if account_of(ev.actor) is not None:
            w = self._window(self._failures, ev.actor)
            w.add(ev.at, ev.at)
            if len(w) >= self.failed:
                severity = Severity.HIGH if len(w) >= self.failed_high else Severity.MEDIUM
                out.append(Finding("failed-logins", severity, ev.actor,
                                   f"{bucket(ev.at, SPANS['1h'])}:{severity}",
                                   f"{ev.actor}: {len(w)} failed logins within {self.span}",
                                   {"failures": len(w)}))
        net = self._net(ev.source)
        by_source = self._by_source.get(net)
        if by_source is None:
            by_source = self._by_source[net] = Window(self.spray_span)
        # Unknown e-mails count one each: a spray over made-up accounts is a spray too.
        by_source.add(ev.at, ev.actor if ev.actor != "unknown" else f"unknown@{ev.at}")
        if by_source.distinct() >= self.spray:
            out.append(Finding("password-spraying", Severity.HIGH, f"source:{net}",
                               bucket(ev.at, SPANS["1h"]),
                               f"network {net}: failed logins on {by_source.distinct()} "
                               f"accounts within {self.spray_span}",
                               {"accounts": by_source.distinct(), "failures": len(by_source)}))
        return out

    def _net(self, source: str) -> str:
        return network_of(source, self.v4, self.v6)

    def _login_success(self, ev: AuditEvent) -> list[Finding]:
        out: list[Finding] = []
        by_source = self._by_source.get(self._net(ev.source))
        if by_source is not None:
            by_source.evict(ev.at)
            # Only real accounts count here: made-up e-mails from a shared address (a NAT, a
            # proxy) must not let anyone force the lock of a colleague's account. The second
            # factor still stands between the password and the data: high, not critical.
            others = [a for a in set(by_source.items())
                      if a != ev.actor and account_of(str(a)) is not None]
            if len(others) >= self.spray:
                out.append(Finding("credential-stuffing", Severity.HIGH, ev.actor,
                                   bucket(ev.at, SPANS["1h"]),
                                   f"{ev.actor}: right password from {ev.source}, whose network "
                                   f"failed on {len(others)} other accounts within "
                                   f"{self.spray_span}",
                                   {"address": ev.source, "other_accounts": len(others)}))
        reset = self._reset.get(ev.actor)
        if ev.action == LOGIN_SUCCESS and reset is not None and ev.at - reset <= self.after_reset:
            out.append(Finding("login-after-reset", Severity.LOW, ev.actor, reset.isoformat(),
                               f"{ev.actor} logged in {int((ev.at - reset).total_seconds() // 60)}"
                               " min after its second factor was reset",
                               {"minutes": int((ev.at - reset).total_seconds() // 60)}))
        return out


def context_rules(config: WatchConfig) -> list[Any]:
    return [ContextRule(config), AuthRule(config)]


__all__ = ["AuthRule", "ContextRule", "context_rules"]
