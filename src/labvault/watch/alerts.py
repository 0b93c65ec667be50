"""What the watcher raises: an `Alert`, with a severity, a rule, an actor and the evidence.

An alert names the actor (``account:<id>``, ``account:<id>/token:<id>`` or ``source:<address>``)
and its evidence as internal ids and counts, never a personal value: it can travel by e-mail,
webhook and syslog, to people who are not entitled to the patients' data.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """Ordered from the review queue (one unexplained read) to an extraction in progress."""

    LOW = "low"  # the review queue: looked at by the DPO, nobody is paged
    MEDIUM = "medium"
    HIGH = "high"  # the next request of the actor needs a fresh second factor
    CRITICAL = "critical"  # sessions and tokens revoked, account locked

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __ge__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    def __gt__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __le__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __lt__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank


_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule saw on one event: the alert to raise unless one is already open for it.

    ``key`` deduplicates: one alert per rule, actor and key (a time bucket, a patient...).
    """

    rule: str
    severity: Severity
    actor: str
    key: str
    explanation: str  # names the actor and the evidence: ids and counts, never a value
    evidence: dict[str, Any] = field(default_factory=dict)
    patient_ids: tuple[uuid.UUID, ...] = ()

    @property
    def dedup_key(self) -> str:
        return f"{self.rule}|{self.actor}|{self.key}"


@dataclass(frozen=True, slots=True)
class Alert:
    id: uuid.UUID
    rule: str
    severity: Severity
    actor: str
    raised_at: datetime
    explanation: str
    evidence: dict[str, Any]
    status: str = "open"  # open | acknowledged
    occurrences: int = 1
    last_seen_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    escalation_level: int = 0
    next_escalation_at: datetime | None = None
    response: str = "none"  # none | step_up | locked | token_revoked
    patient_ids: tuple[uuid.UUID, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The alert as a channel sends it (JSON-ready): ids, counts, times, no values."""
        return {
            "id": str(self.id), "rule": self.rule, "severity": str(self.severity),
            "actor": self.actor, "raised_at": self.raised_at.isoformat(),
            "explanation": self.explanation, "evidence": self.evidence, "status": self.status,
            "occurrences": self.occurrences, "escalation_level": self.escalation_level,
            "response": self.response,
            "patient_ids": [str(p) for p in self.patient_ids],
        }

    def body(self) -> bytes:
        """The canonical JSON body (sorted keys, UTF-8): what a webhook signs."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")

    @property
    def subject(self) -> str:
        return f"[labvault {self.severity.upper()}] {self.rule}: {self.actor}"


__all__ = ["Alert", "Finding", "Severity"]
