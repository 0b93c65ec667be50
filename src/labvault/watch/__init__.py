"""Supervision: detection rules over the audit stream, alerts, escalation, automatic response.

The vault's audit trail hands each event, once durable, to the `Watcher` (in process, started
by `vault.watch.start()` and by ``labvault serve``); ``labvault watch`` runs the same watcher
over the log for deployments with several API processes. See docs/watch.md.
"""

from labvault.watch.alerts import Alert, Finding, Severity
from labvault.watch.config import WatchConfig
from labvault.watch.engine import Watcher

__all__ = ["Alert", "Finding", "Severity", "WatchConfig", "Watcher"]
