"""Alerts to people: the channels of each severity, then escalation until someone answers.

A new alert goes at once to the channels its severity is routed to (`alerting.routes`); if it
is not acknowledged within `alerting.ack_within_minutes` of its severity, it goes again to the
next contact of `alerting.escalation` (by e-mail; the webhook and syslog get it again with its
escalation level), and so on down the list. `tick` does that; `serve` and `labvault watch` call
it every few seconds, tests call it after moving a fixed clock.

Deliveries run on a thread of their own so that a slow mail server never slows a request; each
attempt is recorded (`alert_delivery`: level, channel, outcome) — the contact by its place in
the list, not its address. A channel named in a route but not configured is recorded as
``not_configured``: a missing channel is visible, not silent.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
from datetime import datetime, timedelta

from labvault.clock import Clock
from labvault.store.alerts import AlertStore
from labvault.watch.alerts import Alert
from labvault.watch.channels import Channel, DeliveryFailed
from labvault.watch.config import WatchConfig

log = logging.getLogger("labvault.watch")
_STOP = object()


class Notifier:
    def __init__(self, store: AlertStore, channels: dict[str, Channel], config: WatchConfig,
                 clock: Clock, *, background: bool = True) -> None:
        alerting = config["alerting"]
        self.routes: dict[str, list[str]] = alerting["routes"]
        self.delays = {k: timedelta(minutes=v) for k, v in alerting["ack_within_minutes"].items()}
        self.contacts: list[str] = list(alerting["escalation"])
        self.channels = channels
        self._store = store
        self._clock = clock
        # Most severe first: a flood of high alerts (a spray from many addresses) must not hold
        # a critical one behind it. Entries are (rank, order, item).
        self._queue: queue.PriorityQueue[tuple[int, int, object]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="labvault-alerts", daemon=True)
            self._thread.start()

    def __repr__(self) -> str:
        return f"Notifier(channels={sorted(self.channels)}, contacts={len(self.contacts)})"

    def _delay(self, alert: Alert) -> timedelta | None:
        delay = self.delays.get(str(alert.severity))
        return delay if delay and self.contacts else None

    def raised(self, alert: Alert) -> None:
        delay = self._delay(alert)
        if delay is not None:
            self._store.update(alert.id, next_escalation_at=alert.raised_at + delay)
        self._submit(alert, None)

    def tick(self, now: datetime | None = None) -> int:
        """Escalate the open alerts whose delay ran out; how many were escalated."""
        from labvault.watch.engine import alert_of

        now = now or self._clock.now()
        done = 0
        for row in self._store.due(now):
            level = row.escalation_level + 1
            if level > len(self.contacts):
                self._store.update(row.id, next_escalation_at=None)
                continue
            more = level < len(self.contacts)
            if not self._store.escalate(row.id, row.escalation_level, level,
                                        now + self.delays[row.severity] if more else None):
                continue  # escalated meanwhile by another watcher
            self._submit(alert_of(self._store.alert(row.id)), self.contacts[level - 1])
            done += 1
        return done

    def _submit(self, alert: Alert, contact: str | None) -> None:
        if self._thread is None:
            self._deliver(alert, contact)
        else:
            self._queue.put((-alert.severity.rank, next(self._order), (alert, contact)))

    def _deliver(self, alert: Alert, contact: str | None) -> None:
        for name in self.routes.get(str(alert.severity), []):
            channel = self.channels.get(name)
            at = self._clock.now()
            if channel is None:
                self._store.record_delivery(alert.id, alert.escalation_level, name, at,
                                            "not_configured")
                continue
            try:
                channel.send(dataclasses.replace(alert), contact if name == "email" else None)
            except DeliveryFailed as exc:
                log.error("alert %s not delivered by %s", alert.id, name)
                self._store.record_delivery(alert.id, alert.escalation_level, name, at, "failed",
                                            str(exc)[:200])
            else:
                self._store.record_delivery(alert.id, alert.escalation_level, name, at, "sent")

    def _run(self) -> None:
        while True:
            _, _, item = self._queue.get()
            try:
                if item is _STOP:
                    return
                alert, contact = item  # type: ignore[misc]
                self._deliver(alert, contact)
            except Exception:  # a delivery thread must outlive one bad delivery
                log.exception("alert delivery failed")
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued delivery was attempted."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put((99, next(self._order), _STOP))  # after what is queued
            self._thread.join(timeout=30)
            self._thread = None


__all__ = ["Notifier"]
