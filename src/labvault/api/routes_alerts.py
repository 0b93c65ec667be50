"""Alerts for the data-protection officer and administrators, and unlocking an account the
watcher locked.

Thin: the vault's watch desk checks the permission and audits each call. Reading alerts needs
``watch:alert:read`` (the DPO, administrators), acknowledging ``watch:alert:ack`` (the DPO).
Unlocking needs two people: an administrator and the DPO each ask; the first request answers
``{"unlocked": false}`` and the account stays locked, the second unlocks it. Alerts name
actors and patients by internal id and hold counts, never a personal value.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from labvault.api.deps import CurrentPrincipal, vault_of
from labvault.api.models_watch import (
    AckIn,
    AlertDetailOut,
    AlertOut,
    AlertStatus,
    DeliveryOut,
    UnlockOut,
)

router = APIRouter(tags=["alerts"])


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(request: Request, principal: CurrentPrincipal,
                status: Annotated[AlertStatus | None, Query()] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AlertOut]:
    """Alerts, newest first (``status``: open or acknowledged; both by default)."""
    return [AlertOut.of(a) for a in vault_of(request).watch.alerts(principal, status=status,
                                                                   limit=limit)]


@router.get("/alerts/{alert_id}", response_model=AlertDetailOut)
def show_alert(alert_id: uuid.UUID, request: Request,
               principal: CurrentPrincipal) -> AlertDetailOut:
    """One alert and every attempt to deliver it (channel, escalation level, outcome)."""
    alert, deliveries = vault_of(request).watch.alert(principal, alert_id)
    return AlertDetailOut(alert=AlertOut.of(alert),
                          deliveries=[DeliveryOut(**d) for d in deliveries])


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut)
def acknowledge(alert_id: uuid.UUID, body: AckIn, request: Request,
                principal: CurrentPrincipal) -> AlertOut:
    """Acknowledge an alert with a reason from a fixed list: its escalation stops, and the same
    pattern seen again raises a new alert."""
    return AlertOut.of(vault_of(request).watch.acknowledge(principal, alert_id, body.reason))


@router.post("/accounts/{account_id}/unlock", response_model=UnlockOut)
def unlock(account_id: uuid.UUID, request: Request, principal: CurrentPrincipal) -> UnlockOut:
    """Ask to unlock an account locked by the automatic response. An administrator and the DPO
    must both ask (the same person twice is refused, 403); ``unlocked`` is true once the second
    has. The account's next call then needs a fresh second factor."""
    return UnlockOut(unlocked=vault_of(request).watch.unlock(principal, account_id))
