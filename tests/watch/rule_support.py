"""Events and facts for rule tests: what the vault would append, built directly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from labvault.audit.sink import AuditEvent
from labvault.watch.config import WatchConfig
from labvault.watch.rules import access_rules
from labvault.watch.rules_context import context_rules
from labvault.watch.rules_public import public_rules

# Monday 2 March 2026, 09:00 in Paris.
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SITE_A, SITE_B = "750000017", "690000017"


@dataclass
class Facts:
    """The lookups of `labvault.watch.rules.Facts` over plain dictionaries."""

    decoys: set[uuid.UUID] = field(default_factory=set)
    accounts: dict[str, str] = field(default_factory=dict)  # actor -> site
    sites: dict[uuid.UUID, frozenset[str]] = field(default_factory=dict)

    def is_decoy(self, patient_id: uuid.UUID) -> bool:
        return patient_id in self.decoys

    def decoy_tag(self, patient_id: uuid.UUID) -> bytes:
        return patient_id.bytes

    def site_of(self, actor: str) -> str | None:
        return self.accounts.get(actor.split("/")[0])

    def sites_of(self, patient_id: uuid.UUID) -> frozenset[str]:
        return self.sites.get(patient_id, frozenset())


def actor() -> str:
    return f"account:{uuid.uuid4()}"


def event(who: str, action: str, at: datetime, *, role: str = "biologist",
          source: str = "10.1.0.5", outcome: str = "allowed",
          ids: tuple[uuid.UUID, ...] = (), **detail: object) -> AuditEvent:
    return AuditEvent(at=at, actor=who, role=role, source=source, purpose="care", action=action,
                      outcome=outcome, patient_ids=ids, detail=detail)


class Harness:
    """Every rule, fed events in order; the findings of the last event and of all."""

    def __init__(self, config: WatchConfig | None = None, facts: Facts | None = None) -> None:
        config = config or WatchConfig()
        self.rules = access_rules(config) + context_rules(config) + public_rules(config)
        self.facts = facts or Facts()
        self.all: list = []

    def feed(self, ev: AuditEvent) -> list:
        found = [f for r in self.rules for f in r.observe(ev, self.facts)]
        self.all += found
        return found

    def rules_fired(self) -> set[str]:
        return {f.rule for f in self.all}

    def by_rule(self, rule: str) -> list:
        return [f for f in self.all if f.rule == rule]


def workday(day: int, hour: float = 9.0) -> datetime:
    """A time on the day-th day after T0's Monday, in Paris time (UTC+1 in March)."""
    return T0.replace(hour=0) + timedelta(days=day, hours=hour - 1)
