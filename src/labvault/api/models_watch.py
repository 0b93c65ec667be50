"""Request and response bodies of the alert routes.

An alert carries internal ids and counts, never a personal value. An acknowledgement's reason
is one of a fixed list (`labvault.watch.desk.ACK_REASONS`), never free text: a note typed in a
hurry would end up holding a patient's name in clear.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from labvault.api.models import Strict
from labvault.watch.alerts import Alert

AckReason = Literal["confirmed", "false-positive", "investigating", "duplicate", "unlocked"]
AlertStatus = Literal["open", "acknowledged"]


class AckIn(Strict):
    reason: AckReason


class AlertOut(BaseModel):
    id: uuid.UUID
    rule: str
    severity: Literal["low", "medium", "high", "critical"]
    actor: str
    raised_at: datetime
    last_seen_at: datetime | None
    explanation: str
    evidence: dict[str, Any]
    status: AlertStatus
    occurrences: int
    response: str
    escalation_level: int
    next_escalation_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    patient_ids: list[uuid.UUID]

    @classmethod
    def of(cls, a: Alert) -> AlertOut:
        return cls(id=a.id, rule=a.rule, severity=a.severity.value, actor=a.actor,
                   raised_at=a.raised_at, last_seen_at=a.last_seen_at,
                   explanation=a.explanation, evidence=a.evidence, status=a.status,
                   occurrences=a.occurrences, response=a.response,
                   escalation_level=a.escalation_level, next_escalation_at=a.next_escalation_at,
                   acknowledged_by=a.acknowledged_by, acknowledged_at=a.acknowledged_at,
                   patient_ids=list(a.patient_ids))


class DeliveryOut(BaseModel):
    """One attempt to send the alert: escalation level, channel, outcome (``sent``,
    ``failed``, ``not_configured``) and, on failure, its kind; never an address."""

    level: int
    channel: str
    at: datetime
    outcome: str
    reason: str | None


class AlertDetailOut(BaseModel):
    alert: AlertOut
    deliveries: list[DeliveryOut]


class UnlockOut(BaseModel):
    """True once the account is active again: an admin and the DPO have both asked."""

    unlocked: bool
