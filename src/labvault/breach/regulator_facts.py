"""What labvault itself recorded about an incident, read for the regulator's documents: the
watcher's alerts on the accounts in scope (how the breach was detected), the responses and
administrators' acts on those accounts (measures taken), the notifications the DPO recorded
and the notices sent to people.

Read-only queries over the audit log, the alerts and the notices. They return codes, times and
counts: an audit event's detail names internal ids, never a value.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from labvault.access.permissions import Permission
from labvault.breach import regulator_labels as lb
from labvault.store.engine import guarded
from labvault.store.tables import alert, audit_event, breach_notice

# Audit actions that are a measure taken on an account, and the measure they are.
MEASURE_ACTIONS = {
    "watch:response:lock": "account-locked",
    "watch:response:token-revoke": "token-revoked",
    "watch:response:step-up": "step-up",
    "access:account:disable": "account-disabled",
    "access:token:revoke": "token-revoked",
    "access:account:reset-mfa": "mfa-reset",
}
DECISIONS = ("draft", "notified", "not-notified")
SHOWN_ALERTS = 20


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def accounts_of(actors: list[str]) -> set[str]:
    """The account ids behind scope actors (``account:<id>`` and ``account:<id>/token:…``)."""
    found = set()
    for actor in actors:
        head = actor.split("/", 1)[0]
        if head.startswith("account:"):
            try:
                found.add(str(uuid.UUID(head.removeprefix("account:"))))
            except ValueError:
                continue
    return found


class RegulatorFacts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def measures(self, actors: list[str], since: datetime | None) -> list[dict[str, Any]]:
        """Responses and administrators' acts on the accounts in scope, oldest first."""
        accounts = accounts_of(actors)
        if not accounts:
            return []
        e = audit_event.c
        q = select(e.at, e.action, e.detail).where(
            e.action.in_(list(MEASURE_ACTIONS)), e.outcome == "allowed").order_by(e.seq)
        if since is not None:
            q = q.where(e.at >= since.astimezone(UTC))
        found: list[dict[str, Any]] = []
        with guarded("reading the audit log"), self.engine.connect() as conn:
            for r in conn.execute(q):
                detail = json.loads(r.detail) if r.detail else {}
                if str(detail.get("account_id")) not in accounts:
                    continue
                code = MEASURE_ACTIONS[r.action]
                item = {"code": code, "label": lb.MEASURES[code],
                        "at": _aware(r.at).astimezone(UTC).isoformat()}
                if item not in found:
                    found.append(item)
        return found

    def alerts(self, actors: list[str]) -> list[dict[str, Any]]:
        """The watcher's alerts on the actors in scope or their accounts, oldest first."""
        names = set(actors) | {f"account:{a}" for a in accounts_of(actors)}
        if not names:
            return []
        q = select(alert.c.rule, alert.c.severity, alert.c.raised_at, alert.c.response).where(
            alert.c.actor.in_(sorted(names))).order_by(alert.c.raised_at).limit(SHOWN_ALERTS)
        with guarded("reading alerts"), self.engine.connect() as conn:
            return [{"rule": r.rule, "severity": r.severity, "response": r.response,
                     "raised_at": _aware(r.raised_at).astimezone(UTC).isoformat()}
                    for r in conn.execute(q)]

    def decisions(self, incident_id: uuid.UUID) -> list[dict[str, Any]]:
        """Drafts issued and notifications recorded for the incident, oldest first."""
        e = audit_event.c
        key = str(incident_id)
        q = select(e.at, e.actor, e.detail).where(
            e.action == str(Permission.BREACH_MANAGE), e.outcome == "allowed",
            e.detail.contains(key, autoescape=True)).order_by(e.seq)
        found = []
        with guarded("reading the audit log"), self.engine.connect() as conn:
            for r in conn.execute(q):
                detail = json.loads(r.detail) if r.detail else {}
                if detail.get("incident_id") == key and detail.get("what") in DECISIONS:
                    found.append({**detail, "recorded_at": _aware(r.at).astimezone(UTC).isoformat(),
                                  "recorded_by": r.actor})
        return found

    def notices(self, incident_id: uuid.UUID) -> dict[str, dict[str, int]]:
        """Article 34 notices of the incident, queued and done, by kind (``incident``, the
        first; ``incident-update``, what a later scope added) and state."""
        n = breach_notice.c
        q = select(n.kind, n.state, func.count()).where(
            n.incident_id == incident_id, n.kind.in_(("incident", "incident-update"))
        ).group_by(n.kind, n.state)
        out: dict[str, dict[str, int]] = {}
        with guarded("reading notices"), self.engine.connect() as conn:
            for kind, state, count in conn.execute(q):
                out.setdefault(kind, {})[state] = count
        return out


__all__ = ["MEASURE_ACTIONS", "RegulatorFacts", "accounts_of"]
